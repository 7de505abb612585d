/**
 * The store's write fence for coordinators sharing PostgreSQL: every store write transaction calls
 * it (after the store's global advisory lock, before its own work) and is refused (the transaction
 * rolls back) unless this process still leads: its local lease deadline has not passed, and the
 * lease row, read FOR SHARE in the same transaction, still names this process at its epoch. A
 * takeover's UPDATE of that row waits for the transaction to end, so no write lands after it
 * under the old epoch. The transaction carries this coordinator's holder id as its
 * application_name (pg_stat_activity shows whose write is in progress).
 */
import type { PoolClient } from "pg";
import { LeaseTable } from "../db/lease.js";
import { type LeaderLease, NotLeaderError } from "./lease.js";

export function leaseFence(lease: LeaderLease, idleLimitMs: number): (client: PoolClient) => Promise<void> {
  return async (client) => {
    lease.assertLeading("writing to the store");
    const row = await LeaseTable.epochForWrite(client, idleLimitMs, `spotkeep-coordinator/${lease.holder}`);
    if (row.epoch !== lease.epoch || row.holder !== lease.holder)
      throw new NotLeaderError(
        `writing to the store: refused, the lease is at epoch ${row.epoch} (held by ${row.holder ?? "nobody"}), not this coordinator's epoch ${lease.epoch}`,
      );
    // Waiting for the row lock may have taken us past the local deadline.
    lease.assertLeading("writing to the store");
  };
}
