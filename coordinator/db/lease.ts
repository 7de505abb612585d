/**
 * The coordinators' leadership lease in PostgreSQL: one row in a table of its own, holding the
 * holder's id, the API URL it advertises, an epoch that grows by one with every new holder, and an
 * expiry on the PostgreSQL server's clock (the coordinators' clocks are never compared).
 *
 * - acquire: only an expired lease is taken, in one UPDATE … WHERE expires_at < now() (epoch + 1);
 * - renew: only by the holder of the current epoch;
 * - confirm: an EC2 mutation reads the row first, so a takeover after a server clock step is seen;
 * - fence: a store write reads the epoch FOR SHARE inside its own transaction, so an acquiring
 *   UPDATE waits for writes in flight, and a write after the takeover sees the new epoch.
 * The table is created idempotently (two coordinators starting at once serialise on an advisory lock).
 */
import type { Pool, PoolClient } from "pg";

export const LEASE_TABLE = "spotkeep_coordinator_lease";
const LEASE_NAME = "coordinator";
/** pg_advisory_xact_lock key for creating the table ("spotkeep-lease" folded into an int4). */
const CREATE_LOCK = 0x73_6b_6c_73;

export interface LeaseRow {
  holder: string | null;
  holderUrl: string | null;
  epoch: number;
  /** Whether the lease has expired by the server's clock. */
  expired: boolean;
  /** Milliseconds left before it expires by the server's clock (0 when expired). */
  remainingMs: number;
}

export class LeaseTable {
  constructor(private readonly pool: Pool) {}

  async ensure(): Promise<void> {
    const c = await this.pool.connect();
    try {
      await c.query("BEGIN");
      await c.query("SELECT pg_advisory_xact_lock($1)", [CREATE_LOCK]);
      await c.query(
        `CREATE TABLE IF NOT EXISTS ${LEASE_TABLE} (
           name TEXT PRIMARY KEY,
           holder TEXT,
           holder_url TEXT,
           epoch BIGINT NOT NULL,
           expires_at TIMESTAMPTZ NOT NULL,
           acquired_at TIMESTAMPTZ,
           renewed_at TIMESTAMPTZ
         )`,
      );
      await c.query(`INSERT INTO ${LEASE_TABLE} (name, epoch, expires_at) VALUES ($1, 0, '-infinity') ON CONFLICT (name) DO NOTHING`, [
        LEASE_NAME,
      ]);
      await c.query("COMMIT");
    } catch (err) {
      await c.query("ROLLBACK").catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  /** Takes the lease when it has expired; the new epoch, or null when someone else holds it. */
  async acquire(holder: string, holderUrl: string, ttlMs: number): Promise<number | null> {
    const r = await this.pool.query<{ epoch: string }>(
      `UPDATE ${LEASE_TABLE}
          SET holder = $2, holder_url = $3, epoch = epoch + 1,
              expires_at = now() + make_interval(secs => $4), acquired_at = now(), renewed_at = now()
        WHERE name = $1 AND expires_at < now()
        RETURNING epoch`,
      [LEASE_NAME, holder, holderUrl, ttlMs / 1000],
    );
    return r.rows[0] ? Number(r.rows[0].epoch) : null;
  }

  /** Extends the holder's lease; false when it is no longer the holder of `epoch`. */
  async renew(holder: string, epoch: number, ttlMs: number): Promise<boolean> {
    const r = await this.pool.query(
      `UPDATE ${LEASE_TABLE}
          SET expires_at = now() + make_interval(secs => $4), renewed_at = now()
        WHERE name = $1 AND holder = $2 AND epoch = $3`,
      [LEASE_NAME, holder, epoch, ttlMs / 1000],
    );
    return r.rowCount === 1;
  }

  /** Lets the lease expire now (a clean stop), so a standby takes over without waiting for the TTL. */
  async release(holder: string, epoch: number): Promise<void> {
    await this.pool.query(`UPDATE ${LEASE_TABLE} SET expires_at = now() WHERE name = $1 AND holder = $2 AND epoch = $3`, [
      LEASE_NAME,
      holder,
      epoch,
    ]);
  }

  async current(): Promise<LeaseRow> {
    const r = await this.pool.query<{ holder: string | null; holder_url: string | null; epoch: string; remaining_ms: string | null }>(
      `SELECT holder, holder_url, epoch,
              GREATEST(0, EXTRACT(EPOCH FROM (expires_at - now())) * 1000) AS remaining_ms
         FROM ${LEASE_TABLE} WHERE name = $1`,
      [LEASE_NAME],
    );
    const row = r.rows[0];
    if (!row) return { holder: null, holderUrl: null, epoch: 0, expired: true, remainingMs: 0 };
    const remainingMs = row.remaining_ms === null ? 0 : Number(row.remaining_ms);
    return { holder: row.holder, holderUrl: row.holder_url, epoch: Number(row.epoch), expired: remainingMs <= 0, remainingMs };
  }

  /**
   * Whether `holder` still holds the lease at `epoch` and it has not expired by the server's
   * clock: what an EC2 mutation checks just before it is sent.
   */
  async confirm(holder: string, epoch: number): Promise<{ held: boolean; expired: boolean; holder: string | null; epoch: number }> {
    const r = await this.pool.query<{ holder: string | null; epoch: string; expired: boolean }>(
      `SELECT holder, epoch, expires_at <= now() AS expired FROM ${LEASE_TABLE} WHERE name = $1`,
      [LEASE_NAME],
    );
    const row = r.rows[0];
    if (!row) return { held: false, expired: true, holder: null, epoch: 0 };
    const rowEpoch = Number(row.epoch);
    return { held: row.holder === holder && rowEpoch === epoch, expired: row.expired, holder: row.holder, epoch: rowEpoch };
  }

  /**
   * The epoch as seen inside a store write's transaction, read FOR SHARE: the row stays locked
   * until that transaction ends, so an acquiring UPDATE cannot pass a write in flight. The
   * session is cut if it then idles inside the transaction for `idleLimitMs` (a paused process
   * must not hold the lease row, and with it the takeover, for longer than that).
   */
  static async epochForWrite(
    client: PoolClient,
    idleLimitMs: number,
    applicationName: string,
  ): Promise<{ holder: string | null; epoch: number }> {
    await client.query("SELECT set_config('idle_in_transaction_session_timeout', $1, true), set_config('application_name', $2, true)", [
      String(Math.max(1, Math.round(idleLimitMs))),
      applicationName.slice(0, 63),
    ]);
    const r = await client.query<{ holder: string | null; epoch: string }>(
      `SELECT holder, epoch FROM ${LEASE_TABLE} WHERE name = $1 FOR SHARE`,
      [LEASE_NAME],
    );
    const row = r.rows[0];
    return { holder: row?.holder ?? null, epoch: row ? Number(row.epoch) : 0 };
  }
}
