/**
 * What a coordinator with `ha` builds besides the store: the lease (its own small connection pool,
 * so renewals never queue behind store work), the store's write fence, the check every EC2
 * mutation makes (the local deadline, then the lease row), and the standby's refusals of agents and writes.
 */
import pg from "pg";
import { LeaseTable } from "../db/lease.js";
import { type HaConfig, leaseTimings } from "./config.js";
import { LeaderLease } from "./lease.js";
import { leaseFence } from "./fence.js";
import { StandbyRefusals } from "./refuse.js";

export interface Ha {
  lease: LeaderLease;
  /** The store's fence hook (PostgresStore.open's `fence`). */
  fence: ReturnType<typeof leaseFence>;
  /** The gateways' beforeMutation hook: the local deadline, then the lease row in the store. */
  beforeMutation: (action: string) => Promise<void>;
  refusals: StandbyRefusals;
  ttlMs: number;
  /** Advertise `url` and start contending for the lease; `onAcquired` starts everything a leader runs. */
  start(url: string, onAcquired: (epoch: number) => void | Promise<void>): Promise<void>;
  close(): Promise<void>;
}

export function createHa(o: { storeUrl: string; config: HaConfig; log: (line: string) => void; onLost: (reason: string) => void }): Ha {
  const { ttlMs, marginMs } = leaseTimings(o.config);
  const pool = new pg.Pool({
    connectionString: o.storeUrl,
    max: 2,
    // A renewal that cannot finish within a third of the TTL is as good as lost; the next one tries again.
    connectionTimeoutMillis: Math.max(500, Math.round(ttlMs / 3)),
    query_timeout: Math.max(500, Math.round(ttlMs / 3)),
    keepAlive: true,
  });
  // An idle connection's error (server restart, failover of the database) must not end the process.
  pool.on("error", (err) => o.log(`lease connection error: ${err.message}`));
  let acquired: (epoch: number) => void | Promise<void> = () => undefined;
  const lease = new LeaderLease({
    table: new LeaseTable(pool),
    url: "",
    ttlMs,
    marginMs,
    log: o.log,
    onAcquired: (epoch) => acquired(epoch),
    onLost: o.onLost,
  });
  return {
    lease,
    fence: leaseFence(lease, ttlMs - marginMs),
    beforeMutation: (action) => lease.confirmLeading(action),
    refusals: new StandbyRefusals(),
    ttlMs,
    async start(url, onAcquired) {
      lease.setUrl(url);
      acquired = onAcquired;
      await lease.start();
    },
    async close() {
      await lease.stop();
      this.refusals.close();
      await pool.end().catch(() => undefined);
    },
  };
}
