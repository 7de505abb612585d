/**
 * Two coordinators (`spotkeep coordinator` processes) on one PostgreSQL database and one
 * localcloud, for the HA suite, `npm run e2e:ha` and bench/failover.ts:
 *  - kill: the leader is SIGKILLed right after step n of a replacement (the crash hook); the
 *    standby takes over and must finish it with one live generation, no duplicate launch, no
 *    orphan, and every acknowledged record intact;
 *  - pause: the leader is SIGSTOPped during a replacement, the lease expires, the standby takes
 *    over, the leader is SIGCONTed: it must make no EC2 mutation (localcloud's call log, by caller)
 *    and no store write (an audit trigger, by application_name) after the takeover, and exit.
 */
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import type { PostgresServer } from "../support/pg-server.js";
import { adminApi, type CoordinatorChild, coordinatorCommand, freePort, spawnCoordinator } from "../coordinator/coordinator-process.js";
import { coordinatorConfig, type Env, liveInstances, readAcks, readRecords, until } from "../coordinator/harness.js";

export const LEASE_SECONDS = 2;
const LEASE_LOST_EXIT_CODE = 75;

export interface HaNode {
  port: number;
  url: string;
  cfgFile: string;
  proc: CoordinatorChild | null;
}

export interface HaPair {
  db: string;
  a: HaNode;
  b: HaNode;
}

export interface ScenarioResult {
  scenario: string;
  ok: boolean;
  completed: boolean;
  duplicateLaunches: number;
  orphans: string[];
  lostRecords: number;
  /** Replace workflows the notice started (the agent's outbox is resent to the new leader: must stay 1). */
  replaceWorkflows: number;
  mutationsAfterLosingLease: number;
  writesAfterLosingLease: number;
  failoverSeconds: number | null;
  /** Pause scenario: the old leader's EC2 mutations and store writes before the takeover (the instruments see it at all). */
  leaderMutationsBefore?: number;
  leaderWritesBefore?: number;
  error?: string;
}

/** A pair of coordinator configs on database `db`: both advertise their own URL and give agents both. */
export async function haPair(
  env: Env,
  pgs: PostgresServer,
  dir: string,
  id: string,
  timeScale: number,
  leaseSeconds = LEASE_SECONDS,
): Promise<HaPair> {
  const db = `ha_${id.replace(/[^a-z0-9_]/g, "_")}`;
  const url = pgs.createDatabase(db);
  const ports = [await freePort(), await freePort()];
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  const node = (i: number): HaNode => {
    const cfgFile = join(dir, `ha-${id}-${i}.json`);
    writeFileSync(
      cfgFile,
      JSON.stringify(
        coordinatorConfig(env, join(dir, `ha-${id}-${i}`), timeScale, {
          listen: `127.0.0.1:${ports[i]}`,
          publicUrl: urls[i],
          lostCheckIntervalMs: 3000,
          store: { url },
          ha: { leaseSeconds, agentUrls: urls },
          // Each pair has a database of its own beside one localcloud that earlier cases' resources
          // still occupy, so its empty store must start although EC2 holds what spotkeep tagged.
          acceptEmptyStore: true,
        }),
      ),
    );
    return { port: ports[i]!, url: urls[i]!, cfgFile, proc: null };
  };
  return { db: url, a: node(0), b: node(1) };
}

export async function startNode(
  n: HaNode,
  o: { ownerDir: string; children: Set<ChildProcess>; crash?: { kind: string; n: number } },
): Promise<CoordinatorChild> {
  n.proc = await spawnCoordinator([...coordinatorCommand(o.crash), "--config", n.cfgFile], {
    ownerDir: o.ownerDir,
    children: o.children,
  });
  return n.proc;
}

export async function healthz(n: HaNode): Promise<{ role?: string; leader?: string | null; epoch?: number; coordinator?: string } | null> {
  try {
    const r = await fetch(`${n.url}/healthz`, { signal: AbortSignal.timeout(2000) });
    return (await r.json()) as { role?: string; epoch?: number; coordinator?: string };
  } catch {
    return null;
  }
}

export const waitLeader = (n: HaNode, ms = 30_000) =>
  until(`${n.url} to lead`, async () => ((await healthz(n))?.role === "leader" ? true : null), ms);

/** Wall-clock ms (the database server's clock, on this host) when the lease was last acquired, and its epoch. */
export async function leaseAcquired(dbUrl: string): Promise<{ at: number; epoch: number; holder: string }> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    const r = await c.query("SELECT holder, epoch, acquired_at FROM spotkeep_coordinator_lease");
    const row = r.rows[0] as { holder: string; epoch: string; acquired_at: Date };
    return { at: row.acquired_at.getTime(), epoch: Number(row.epoch), holder: row.holder };
  } finally {
    await c.end();
  }
}

/** Records every row written to the store's tables with the writer's application_name and the time. */
export async function installWriteAudit(dbUrl: string): Promise<void> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    await c.query(`CREATE TABLE IF NOT EXISTS ha_write_audit (at TIMESTAMPTZ NOT NULL, app TEXT, tbl TEXT)`);
    await c.query(`CREATE OR REPLACE FUNCTION ha_audit() RETURNS trigger AS $$
      BEGIN INSERT INTO ha_write_audit VALUES (clock_timestamp(), current_setting('application_name'), TG_TABLE_NAME); RETURN NULL; END
      $$ LANGUAGE plpgsql`);
    const tables = await c.query(
      `SELECT table_name FROM information_schema.tables
        WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name NOT IN ('ha_write_audit', 'spotkeep_coordinator_lease')`,
    );
    for (const { table_name: t } of tables.rows as { table_name: string }[])
      await c.query(
        `CREATE OR REPLACE TRIGGER ha_audit AFTER INSERT OR UPDATE OR DELETE ON "${t}" FOR EACH ROW EXECUTE FUNCTION ha_audit()`,
      );
  } finally {
    await c.end();
  }
}

async function replaceWorkflows(dbUrl: string, name: string): Promise<number> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    const r = await c.query("SELECT count(*)::int AS n FROM workflows WHERE instance = $1 AND kind = 'replace'", [name]);
    return (r.rows[0] as { n: number }).n;
  } finally {
    await c.end();
  }
}

export async function writesBy(dbUrl: string, holder: string, since: number): Promise<number> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    const r = await c.query("SELECT count(*)::int AS n FROM ha_write_audit WHERE app = $1 AND at >= $2", [
      // application_name is cut at 63 bytes.
      `spotkeep-coordinator/${holder}`.slice(0, 63),
      new Date(since),
    ]);
    return (r.rows[0] as { n: number }).n;
  } finally {
    await c.end();
  }
}

export async function reach(n: HaNode, name: string, state: string, generation: number, ms = 90_000) {
  const api = adminApi(n.url);
  return until(
    `${name} to be ${state} at generation ${generation} (via ${n.url})`,
    async () => {
      const r = await api.call("GET", `instances/${name}`).catch(() => null);
      const d = r?.body;
      if (d?.state === "failed") throw new Error(`${name} failed: ${d.stateReason}`);
      return d?.state === state && d.generation === generation ? d : null;
    },
    ms,
  );
}

const running = (p: CoordinatorChild) => p.child.exitCode === null && p.child.signalCode === null;

/** What the scenario's instance left behind that no record knows (settled: a workflow's cleanup can lag its end). */
async function orphansOf(env: Env, name: string, live: { instanceId: string; volumeId: string; eniId: string }): Promise<string[]> {
  const w = env.lc.world;
  const mine = (tags: Map<string, string>) => tags.get("spotkeep:instance") === name;
  const out: string[] = [];
  for (const i of w.instances.values())
    if (mine(i.tags) && i.id !== live.instanceId && ["pending", "running", "stopping", "stopped"].includes(i.state))
      out.push(`${i.id} (${i.state})`);
  for (const v of w.volumes.values())
    if (mine(v.tags) && v.state === "available" && v.id !== live.volumeId) out.push(`${v.id} (unattached volume)`);
  for (const e of w.enis.values()) if (mine(e.tags) && e.id !== live.eniId) out.push(`${e.id} (ENI)`);
  return out;
}

/** Instances launched for `name` at `generation` (a duplicate launch makes this more than one). */
function launchedAt(env: Env, name: string, generation: number): number {
  return [...env.lc.world.instances.values()].filter(
    (i) => i.tags.get("spotkeep:instance") === name && i.tags.get("spotkeep:generation") === String(generation),
  ).length;
}

interface Ctx {
  env: Env;
  pgs: PostgresServer;
  dir: string;
  children: Set<ChildProcess>;
  timeScale: number;
  log?: (line: string) => void;
}

/** Starts the pair (a first, so it leads; the crash hook, if any, on a), creates `name` and waits until records are acknowledged. */
async function prepare(c: Ctx, id: string, crash?: { kind: string; n: number }) {
  const pair = await haPair(c.env, c.pgs, c.dir, id, c.timeScale);
  const a = await startNode(pair.a, { ownerDir: c.dir, children: c.children, crash });
  await waitLeader(pair.a);
  const b = await startNode(pair.b, { ownerDir: c.dir, children: c.children });
  const name = `ha-${id}`.replace(/_/g, "-");
  const acks = join(c.dir, `${name}.acks`);
  await adminApi(pair.a.url).ok("POST", "instances", c.env.spec(name, { acks }));
  const created = await reach(pair.a, name, "running", 1);
  await until("records to be acknowledged", () => readAcks(acks).length > 10, 60_000);
  await installWriteAudit(pair.db);
  return { pair, a, b, name, acks, created };
}

async function verify(
  c: Ctx,
  pair: HaPair,
  name: string,
  acks: string,
  created: { resources: { volumes: { volumeId: string }[]; network: { eniId: string } } },
) {
  const after = await reach(pair.b, name, "running", 2);
  const volumeId: string = after.resources.volumes[0].volumeId;
  const eniId: string = after.resources.network.eniId;
  const live = await liveInstances(c.env, name);
  const duplicateLaunches = launchedAt(c.env, name, 2) - 1;
  // Cleanup steps (old root volume) finish after `running`: give them a moment before calling anything an orphan.
  let orphans: string[] = [];
  await until(
    "no orphaned resources",
    async () => {
      orphans = await orphansOf(c.env, name, { instanceId: after.instanceId, volumeId, eniId });
      return orphans.length === 0 ? true : null;
    },
    30_000,
  ).catch(() => undefined);
  // Acks first: a record is on disk before its ack is written, so every ack read here has its record.
  const acked = readAcks(acks);
  const records = readRecords(join(c.env.rootDir(after.instanceId), "data", "records.log"));
  const lostRecords = acked.filter((x) => !records.has(x)).length;
  const sameIdentity = volumeId === created.resources.volumes[0]!.volumeId && eniId === created.resources.network.eniId;
  if (!sameIdentity) orphans.push(`identity changed: volume ${volumeId}, ENI ${eniId}`);
  if (live.length !== 1) orphans.push(`${live.length} live instances: ${live.map((i) => i.instanceId).join(", ")}`);
  return { completed: true, duplicateLaunches, orphans, lostRecords, replaceWorkflows: await replaceWorkflows(pair.db, name) };
}

/** SIGKILL the leader after step `n` of a replacement; the standby must finish it. */
export async function killScenario(c: Ctx, n: number): Promise<ScenarioResult> {
  const id = `kill_${n}_${process.pid % 10_000}`;
  const base: ScenarioResult = {
    scenario: `kill after replace step ${n}`,
    ok: false,
    completed: false,
    duplicateLaunches: 0,
    orphans: [],
    lostRecords: 0,
    replaceWorkflows: 0,
    mutationsAfterLosingLease: 0,
    writesAfterLosingLease: 0,
    failoverSeconds: null,
  };
  let pair: HaPair | null = null;
  try {
    const p = await prepare(c, id, { kind: "replace", n });
    pair = p.pair;
    await c.env.control("POST", `instances/${p.created.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const how = await Promise.race([p.a.exited, new Promise((r) => setTimeout(() => r("no-crash"), 90_000))]);
    if ((how as { signal?: string }).signal !== "SIGKILL")
      throw new Error(`the leader did not crash after step ${n}: ${JSON.stringify(how)}`);
    const killedAt = Date.now();
    await waitLeader(pair.b);
    const failoverSeconds = (Date.now() - killedAt) / 1000;
    c.log?.(`kill after step ${n}: standby leads after ${failoverSeconds.toFixed(2)} s`);
    const v = await verify(c, pair, p.name, p.acks, p.created);
    return {
      ...base,
      ...v,
      failoverSeconds,
      ok: v.duplicateLaunches === 0 && v.orphans.length === 0 && v.lostRecords === 0 && v.replaceWorkflows === 1,
    };
  } catch (err) {
    return { ...base, error: `${(err as Error).message}\n--- a:\n${tail(pair?.a)}\n--- b:\n${tail(pair?.b)}` };
  } finally {
    stopPair(pair);
  }
}

/** SIGSTOP the leader mid-replacement, let the standby take over, SIGCONT it: it must not act again. */
export async function pauseScenario(c: Ctx): Promise<ScenarioResult> {
  const id = `pause_${process.pid % 10_000}`;
  const base: ScenarioResult = {
    scenario: "pause the leader mid-replacement",
    ok: false,
    completed: false,
    duplicateLaunches: 0,
    orphans: [],
    lostRecords: 0,
    replaceWorkflows: 0,
    mutationsAfterLosingLease: 0,
    writesAfterLosingLease: 0,
    failoverSeconds: null,
  };
  let pair: HaPair | null = null;
  try {
    const p = await prepare(c, id);
    pair = p.pair;
    const holder = (await healthz(pair.a))?.coordinator;
    if (!holder) throw new Error("the leader did not name itself in /healthz");
    await c.env.control("POST", `instances/${p.created.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    // Stop it while the replacement is under way: once it has begun mutating EC2 for it (snapshot or terminate).
    const interruptedAt = Date.now();
    await until(
      "the leader to start mutating EC2 for the replacement",
      () =>
        c.env.lc.world.calls
          .list({ caller: holder, since: interruptedAt })
          .some((call) => call.action === "CreateSnapshot" || call.action === "TerminateInstances"),
      60_000,
    );
    const pid = p.a.child.pid!;
    process.kill(pid, "SIGSTOP");
    const stoppedAt = Date.now();
    await waitLeader(pair.b);
    const failoverSeconds = (Date.now() - stoppedAt) / 1000;
    const takeover = await leaseAcquired(pair.db);
    // Let it sleep past the takeover a little, as a long pause would, then wake it.
    await new Promise((r) => setTimeout(r, 500));
    process.kill(pid, "SIGCONT");
    const exit = await Promise.race([p.a.exited, new Promise((r) => setTimeout(() => r("still running"), 30_000))]);
    if ((exit as { code?: number }).code !== LEASE_LOST_EXIT_CODE)
      throw new Error(`the old leader did not exit with ${LEASE_LOST_EXIT_CODE} after waking: ${JSON.stringify(exit)}`);
    c.log?.(`pause: standby leads after ${failoverSeconds.toFixed(2)} s (epoch ${takeover.epoch}); the old leader exited`);
    const v = await verify(c, pair, p.name, p.acks, p.created);
    const mutations = c.env.lc.world.calls
      .list({ caller: holder, since: takeover.at })
      .filter((call) => !call.action.startsWith("Describe"));
    const writes = await writesBy(pair.db, holder, takeover.at);
    const leaderMutationsBefore = c.env.lc.world.calls
      .list({ caller: holder })
      .filter((call) => !call.action.startsWith("Describe")).length;
    const leaderWritesBefore = (await writesBy(pair.db, holder, 0)) - writes;
    return {
      ...base,
      ...v,
      failoverSeconds,
      mutationsAfterLosingLease: mutations.length,
      writesAfterLosingLease: writes,
      leaderMutationsBefore,
      leaderWritesBefore,
      ok:
        v.duplicateLaunches === 0 &&
        v.orphans.length === 0 &&
        v.lostRecords === 0 &&
        v.replaceWorkflows === 1 &&
        mutations.length === 0 &&
        writes === 0 &&
        leaderMutationsBefore > 0 &&
        leaderWritesBefore > 0,
      ...(mutations.length ? { error: `mutations after the takeover: ${JSON.stringify(mutations.slice(0, 5))}` } : {}),
    };
  } catch (err) {
    return { ...base, error: `${(err as Error).message}\n--- a:\n${tail(pair?.a)}\n--- b:\n${tail(pair?.b)}` };
  } finally {
    stopPair(pair);
  }
}

function tail(n: HaNode | undefined): string {
  return n?.proc?.log.join("").slice(-3000) ?? "";
}

function stopPair(pair: HaPair | null): void {
  for (const n of [pair?.a, pair?.b]) {
    const p = n?.proc;
    if (!p || !running(p)) continue;
    try {
      process.kill(-p.child.pid!, "SIGCONT");
      process.kill(-p.child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** The e2e:ha summary: one JSON line. */
export function summarise(results: ScenarioResult[]) {
  return {
    failovers: results.filter((r) => r.failoverSeconds !== null).length,
    completed: results.filter((r) => r.completed).length,
    duplicateLaunches: results.reduce((s, r) => s + r.duplicateLaunches, 0),
    orphans: results.reduce((s, r) => s + r.orphans.length, 0),
    mutationsAfterLosingLease: results.reduce((s, r) => s + r.mutationsAfterLosingLease, 0),
    writesAfterLosingLease: results.reduce((s, r) => s + r.writesAfterLosingLease, 0),
    lostRecords: results.reduce((s, r) => s + r.lostRecords, 0),
    failoverSeconds: results.flatMap((r) => (r.failoverSeconds === null ? [] : [Math.round(r.failoverSeconds * 100) / 100])),
  };
}
