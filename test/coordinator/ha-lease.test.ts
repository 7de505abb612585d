/**
 * The leadership lease and the store write fence on a real PostgreSQL server: one holder at a
 * time, takeover only after expiry at the next epoch, a write of the old holder refused after
 * the takeover, and a takeover that waits for a fenced write in flight.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { LeaseTable } from "../../coordinator/db/lease.js";
import { leaseFence } from "../../coordinator/ha/fence.js";
import { LeaderLease } from "../../coordinator/ha/lease.js";
import { type PostgresServer, postgresUnavailable, startPostgres } from "../support/pg-server.js";

const why = postgresUnavailable();
let server: PostgresServer;
const pools: pg.Pool[] = [];
const leases: LeaderLease[] = [];

beforeAll(async () => {
  if (!why) server = await startPostgres();
}, 120_000);
afterAll(async () => {
  for (const l of leases) await l.stop();
  for (const p of pools) await p.end();
  server?.stop();
});

function pool(url: string) {
  const p = new pg.Pool({ connectionString: url, max: 4 });
  pools.push(p);
  return p;
}

function lease(url: string, holder: string, ttlMs = 1500) {
  const events: string[] = [];
  // kill(): every later call of this holder to the lease table fails, as for a process that died
  // (a renewal already in flight still lands, as it would). Cancelling the lease's timer instead
  // would not do: a renewal in flight when it is cancelled schedules the next one.
  const real = new LeaseTable(pool(url));
  let dead = false;
  const table = new Proxy(real, {
    get(t, k, r) {
      const v = Reflect.get(t, k, r);
      return typeof v === "function"
        ? (...args: unknown[]) => (dead ? Promise.reject(new Error(`${holder} is dead`)) : v.apply(t, args))
        : v;
    },
  });
  const l = new LeaderLease({
    table,
    url: `http://${holder}.example:7400`,
    holder,
    ttlMs,
    marginMs: 300,
    onAcquired: (e) => void events.push(`acquired ${e}`),
    onLost: (r) => void events.push(`lost: ${r}`),
  });
  leases.push(l);
  return { l, events, kill: () => void (dead = true) };
}

/** A store-like write: a transaction that runs the fence, then inserts a row. */
async function fencedWrite(p: pg.Pool, fence: (c: pg.PoolClient) => Promise<void>, what: string, hold?: Promise<void>) {
  const c = await p.connect();
  try {
    await c.query("BEGIN");
    await fence(c);
    await hold;
    await c.query("INSERT INTO writes (what) VALUES ($1)", [what]);
    await c.query("COMMIT");
  } catch (err) {
    await c.query("ROLLBACK");
    throw err;
  } finally {
    c.release();
  }
}

// Generous: a loaded machine slows the lease's renewals and queries, never the test's meaning.
const until = async (f: () => boolean, ms = 30_000) => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe.skipIf(why !== null)(`coordinator lease on PostgreSQL${why ? ` (skipped: ${why})` : ""}`, () => {
  it("one holder at a time: the other sees it, and takes over at the next epoch only after the lease expired", async () => {
    const url = server.createDatabase("lease_basic");
    const a = lease(url, "a");
    const b = lease(url, "b");
    await a.l.start();
    await b.l.start();
    expect(a.l.isLeading()).toBe(true);
    expect(b.l.isLeading()).toBe(false);
    expect(b.l.info().leader).toMatchObject({ id: "a", url: "http://a.example:7400", epoch: 1 });
    // a keeps renewing: b never gets it.
    await new Promise((r) => setTimeout(r, 2500));
    expect(b.l.isLeading()).toBe(false);
    // a stops without releasing (as a killed process would): b takes over after the TTL.
    a.kill();
    await until(() => b.l.isLeading());
    expect(b.l.epoch).toBe(2);
    expect(b.events).toEqual(["acquired 2"]);
  });

  it("a fenced write of the old leader is refused after the takeover; the takeover waits for a fenced write in flight", async () => {
    const url = server.createDatabase("lease_fence");
    const p = pool(url);
    await p.query("CREATE TABLE writes (what TEXT)");
    const a = lease(url, "a");
    const b = lease(url, "b");
    await a.l.start();
    await b.l.start();
    const fenceA = leaseFence(a.l, 5000);
    await fencedWrite(p, fenceA, "a1");

    // A write in flight holds the lease row FOR SHARE: a's lease expires meanwhile, but b's
    // acquiring UPDATE must wait for the write to commit, so the write lands before epoch 2.
    a.kill();
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const inFlight = fencedWrite(p, fenceA, "a2", hold);
    await new Promise((r) => setTimeout(r, 2000));
    expect(b.l.isLeading()).toBe(false);
    release();
    await inFlight;
    await until(() => b.l.isLeading());
    const epochs = await p.query("SELECT epoch FROM spotkeep_coordinator_lease");
    expect(Number(epochs.rows[0].epoch)).toBe(2);

    // After the takeover the old leader's writes are refused, locally and by the epoch check.
    await expect(fencedWrite(p, fenceA, "a3")).rejects.toThrow(/not the leader|not this coordinator's epoch/);
    await fencedWrite(p, leaseFence(b.l, 5000), "b1");
    const rows = await p.query("SELECT what FROM writes ORDER BY what");
    expect(rows.rows.map((r) => r.what)).toEqual(["a1", "a2", "b1"]);
  });

  it("a clean stop releases the lease: a standby takes over without waiting for the TTL", async () => {
    const url = server.createDatabase("lease_release");
    const a = lease(url, "a", 9000);
    const b = lease(url, "b", 9000);
    await a.l.start();
    await b.l.start();
    await a.l.stop();
    const t0 = Date.now();
    await until(() => b.l.isLeading(), 30_000);
    expect(Date.now() - t0).toBeLessThan(9000);
  });
});
