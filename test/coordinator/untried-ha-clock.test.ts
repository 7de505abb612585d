/**
 * The database server's clock steps under the coordinator lease. The lease expires on
 * PostgreSQL's now(); here that now() is skewed by a schema placed ahead of pg_catalog on the
 * database's search_path (skew.now() = pg_catalog.now() + an offset the test sets), so the lease
 * queries, unchanged, see a server clock the test steps.
 *
 * A forward step past the lease's end lets a standby take over while the old leader still trusts
 * its local deadline (for up to one renewal interval). The old leader is held in exactly that
 * window (its monotonic clock and timers are frozen, so its local deadline never passes and it
 * never renews by itself); its EC2 mutations, through the real gateway against localcloud, must be
 * refused and never reach EC2, and its store writes refused by the epoch fence.
 */
import { rmSync } from "node:fs";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAwsGateway } from "../../coordinator/cloud/aws.js";
import { TAG } from "../../coordinator/cloud/gateway.js";
import { LeaseTable } from "../../coordinator/db/lease.js";
import { leaseFence } from "../../coordinator/ha/fence.js";
import { LeaderLease } from "../../coordinator/ha/lease.js";
import { type LocalCloud, startLocalCloud } from "../../localcloud/index.js";
import { type PostgresServer, postgresUnavailable, startPostgres } from "../support/pg-server.js";

const why = postgresUnavailable();
let server: PostgresServer;
let lc: LocalCloud;
const pools: pg.Pool[] = [];
const leases: LeaderLease[] = [];

beforeAll(async () => {
  if (why) return;
  server = await startPostgres();
  lc = await startLocalCloud({ port: 0, profile: "instant", runtime: "none" });
}, 120_000);
afterAll(async () => {
  for (const l of leases) await l.stop();
  for (const p of pools) await p.end();
  server?.stop();
  await lc?.stop();
  if (lc) rmSync(lc.stateDir, { recursive: true, force: true });
});

/** A database whose sessions see now() = the server's clock + the offset in skew.clock. */
async function skewedDatabase(name: string): Promise<{ url: string; step: (ms: number) => Promise<void> }> {
  const url = server.createDatabase(name);
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query("CREATE SCHEMA skew");
    await c.query("CREATE TABLE skew.clock (offset_ms BIGINT NOT NULL)");
    await c.query("INSERT INTO skew.clock VALUES (0)");
    await c.query(`CREATE FUNCTION skew.now() RETURNS timestamptz LANGUAGE sql STABLE
      AS $$ SELECT pg_catalog.now() + pg_catalog.make_interval(secs => (SELECT offset_ms FROM skew.clock) / 1000.0) $$`);
    // pg_catalog named explicitly, after skew: otherwise it is searched first and its now() wins.
    await c.query(`ALTER DATABASE ${name} SET search_path = public, skew, pg_catalog`);
  } finally {
    await c.end();
  }
  const admin = pool(url);
  return {
    url,
    step: async (ms) => {
      await admin.query("UPDATE skew.clock SET offset_ms = offset_ms + $1", [ms]);
    },
  };
}

function pool(url: string) {
  const p = new pg.Pool({ connectionString: url, max: 4 });
  pools.push(p);
  return p;
}

/** Timers that fire only when the test says so. */
function manualTimers() {
  const due: (() => void)[] = [];
  return {
    setTimer: (_ms: number, fn: () => void) => {
      due.push(fn);
      return () => {
        const i = due.indexOf(fn);
        if (i >= 0) due.splice(i, 1);
      };
    },
    fireAll: () => {
      for (const fn of due.splice(0)) fn();
    },
  };
}

function lease(url: string, holder: string, frozen?: ReturnType<typeof manualTimers>) {
  const events: string[] = [];
  const table = new LeaseTable(pool(url));
  let confirms = 0;
  const confirm = table.confirm.bind(table);
  table.confirm = (h, e) => {
    confirms++;
    return confirm(h, e);
  };
  const l = new LeaderLease({
    table,
    url: `http://${holder}.example:7400`,
    holder,
    ttlMs: 3000,
    marginMs: 600,
    ...(frozen ? { monotonic: () => 0, setTimer: frozen.setTimer } : {}),
    onAcquired: (e) => void events.push(`acquired ${e}`),
    onLost: (r) => void events.push(`lost: ${r}`),
  });
  leases.push(l);
  return { l, events, confirms: () => confirms };
}

/** The EC2 gateway a coordinator with `ha` builds: every mutation confirms the lease first. */
function fencedGateway(l: LeaderLease, callerId: string) {
  return createAwsGateway({
    region: "us-east-1",
    endpoint: lc.endpoint,
    pacingHeadroom: 0,
    maxAttempts: 1,
    callerId,
    beforeMutation: (action) => l.confirmLeading(`EC2 ${action}`),
  });
}

const until = async (f: () => boolean, ms = 20_000) => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
};

const az = () => [...lc.world.subnets.values()].sort((a, b) => a.az.localeCompare(b.az))[0]!.az;

describe.skipIf(why !== null)(`the coordinator lease when the database server's clock steps${why ? ` (skipped: ${why})` : ""}`, () => {
  it("the skewed now() is what the lease queries see", async () => {
    const db = await skewedDatabase("clock_probe");
    await db.step(3_600_000);
    const r = await pool(db.url).query("SELECT EXTRACT(EPOCH FROM (now() - pg_catalog.now())) AS s");
    expect(Number(r.rows[0].s)).toBe(3600);
  });

  it("a forward step past the lease's end: the standby takes over, and the old leader, still trusting its local deadline, sends no EC2 mutation and writes nothing", async () => {
    const db = await skewedDatabase("clock_forward");
    const p = pool(db.url);
    await p.query("CREATE TABLE writes (what TEXT)");
    const frozen = manualTimers();
    const a = lease(db.url, "a", frozen);
    const b = lease(db.url, "b");
    await a.l.start();
    await b.l.start();
    expect(a.l.isLeading()).toBe(true);
    const gw = fencedGateway(a.l, "clock-a");
    const tags = { [TAG.workflow]: "wf-clock-1", [TAG.step]: "create-volume /dev/sdf" };
    const before = await gw.createVolume({ availabilityZone: az(), sizeGiB: 1, tags });
    expect(a.confirms()).toBe(1);

    await db.step(60_000);
    await until(() => b.l.isLeading());
    expect(b.l.epoch).toBe(2);
    // The window: by its own deadline the old leader still leads.
    expect(a.l.isLeading()).toBe(true);

    const since = Date.now();
    await expect(gw.deleteVolume(before.volumeId)).rejects.toThrow(/EC2 DeleteVolume: refused, this coordinator is not the leader/);
    await expect(gw.createVolume({ availabilityZone: az(), sizeGiB: 1, tags: { ...tags, [TAG.workflow]: "wf-clock-2" } })).rejects.toThrow(
      /not the leader/,
    );
    // Losing the lease is final and said once.
    expect(a.l.isLeading()).toBe(false);
    expect(a.events).toEqual(["acquired 1", "lost: another coordinator took the lease (epoch 2, held by b)"]);
    expect(lc.world.calls.list({ caller: "clock-a", since }).filter((c) => !c.action.startsWith("Describe"))).toEqual([]);
    expect(lc.world.volumes.get(before.volumeId)?.state).toBe("available");

    // The store fence refuses its writes as well; the new leader's go through.
    const write = async (l: LeaderLease, what: string) => {
      const c = await p.connect();
      try {
        await c.query("BEGIN");
        await leaseFence(l, 5000)(c);
        await c.query("INSERT INTO writes VALUES ($1)", [what]);
        await c.query("COMMIT");
      } catch (err) {
        await c.query("ROLLBACK");
        throw err;
      } finally {
        c.release();
      }
    };
    await expect(write(a.l, "a")).rejects.toThrow(/not the leader/);
    await write(b.l, "b");
    expect((await p.query("SELECT what FROM writes")).rows).toEqual([{ what: "b" }]);
    // The new leader's own mutations confirm and go through.
    await fencedGateway(b.l, "clock-b").deleteVolume(before.volumeId);
    expect(lc.world.volumes.get(before.volumeId)?.state ?? "deleted").toMatch(/deleting|deleted/);
  });

  it("a forward step with no standby: mutations are refused while the lease is expired by the server's clock, not final; after the next renewal they go through", async () => {
    const db = await skewedDatabase("clock_alone");
    const frozen = manualTimers();
    const a = lease(db.url, "a", frozen);
    await a.l.start();
    const gw = fencedGateway(a.l, "clock-alone");
    await db.step(60_000);
    const tags = { [TAG.workflow]: "wf-clock-3", [TAG.step]: "create-volume /dev/sdf" };
    await expect(gw.createVolume({ availabilityZone: az(), sizeGiB: 1, tags })).rejects.toThrow(
      /lease of epoch 1 has expired by the store's clock and is not renewed yet/,
    );
    expect(a.l.isLeading()).toBe(true);
    expect(a.events).toEqual(["acquired 1"]);
    expect(lc.world.calls.list({ caller: "clock-alone" }).filter((c) => c.action === "CreateVolume")).toEqual([]);
    // The renewal tick (due every ttl/3) renews on the stepped clock; the retry is sent.
    frozen.fireAll();
    for (let i = 0; i < 50; i++) {
      const ok = await gw
        .createVolume({ availabilityZone: az(), sizeGiB: 1, tags })
        .then(() => true)
        .catch(() => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(lc.world.calls.list({ caller: "clock-alone" }).filter((c) => c.action === "CreateVolume" && c.outcome === "ok")).toHaveLength(1);
    expect(a.events).toEqual(["acquired 1"]);
  });

  it("a backward step only delays a takeover: the standby does not lead while the stepped-back lease runs, and takes over once it ends", async () => {
    const db = await skewedDatabase("clock_back");
    const frozen = manualTimers();
    const a = lease(db.url, "a", frozen);
    const b = lease(db.url, "b");
    await a.l.start();
    await b.l.start();
    // a stops renewing (its timers never fire); the server's clock goes back a minute, so the lease runs a minute longer.
    await db.step(-60_000);
    // Past the lease's unstepped end (ttl 3 s): still a's.
    await new Promise((r) => setTimeout(r, 3500));
    expect(b.l.isLeading()).toBe(false);
    expect(await new LeaseTable(pool(db.url)).current()).toMatchObject({ holder: "a", epoch: 1, expired: false });
    await db.step(60_000);
    await until(() => b.l.isLeading());
    expect(b.l.epoch).toBe(2);
  });

  it("concurrent mutations share store reads: fifty confirmations at once cost two reads, each sent after its callers asked", async () => {
    const db = await skewedDatabase("clock_many");
    const a = lease(db.url, "a", manualTimers());
    await a.l.start();
    // The first caller starts a read; the 49 that ask while it is under way cannot use it (it was
    // sent before they asked) and share the one read queued behind it.
    await Promise.all(Array.from({ length: 50 }, (_, i) => a.l.confirmLeading(`EC2 CreateVolume ${i}`)));
    expect(a.confirms()).toBe(2);

    // Through the EC2 gateway every mutation is confirmed, never by more than one read of its own.
    // How many share a read depends on how the gateway spaces them (each CreateVolume first looks
    // for a volume its tags already name), so only the bounds are fixed.
    const before = a.confirms();
    const gw = fencedGateway(a.l, "clock-many");
    const made = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        gw.createVolume({ availabilityZone: az(), sizeGiB: 1, tags: { [TAG.workflow]: `wf-many-${i}`, [TAG.step]: "create-volume" } }),
      ),
    );
    expect(new Set(made.map((v) => v.volumeId)).size).toBe(50);
    expect(a.confirms() - before).toBeGreaterThanOrEqual(1);
    expect(a.confirms() - before).toBeLessThanOrEqual(50);
  });
});
