/**
 * The mission's acceptance scenario (issue 7): a real PostgreSQL on real filesystems (loop
 * devices), on its own private IP (localcloud's linux runtime), managed by a real coordinator and
 * agent, survives repeated spot interruptions with every acknowledged commit intact.
 *
 * Three stateful instances, each with one data volume at /var/lib/postgresql (ext4) and the same ENI:
 *   pg-reattach (dataMethod reattach): interrupted twice with notice, then lost with no notice;
 *   pg-snapshot (dataMethod snapshot): interrupted once (the data comes back on a new volume);
 *   pg-imported: PostgreSQL set up on a plain on-demand instance launched with the SDK (its
 *   user-data formats and mounts the volume itself), imported while the client writes, then
 *   interrupted once.
 *   pg-mbb (attach: secondary, reattach): interrupted once, make-before-break (the stable IP on a
 *   secondary ENI that moves between the instances' network namespaces).
 * A client on the host inserts numbered rows into each continuously, recording every row whose
 * COMMIT returned. After each recovery: every acknowledged row is present when read back at the
 * same private IP, and the server answers on that IP.
 *
 * Used by `npm run e2e:postgres` (test/e2e/postgres.e2e.ts) and test/e2e/postgres.test.ts.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { execFileSync } from "node:child_process";
import { DescribeInstancesCommand, EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { PROFILES, replacementCriticalPath, startLocalCloud, type LocalCloud } from "../../localcloud/index.js";
import { linuxRuntimeUnavailable } from "../../localcloud/runtime/linux/index.js";
import { startCoordinator, type Coordinator } from "../../coordinator/service.js";
import { parseSpec, type SpecInput } from "../../shared/spec.js";
import { leftovers } from "../linux/leftovers.js";
import { holdLinuxSuiteLock } from "./linux-suite-lock.js";
import { PgConnection } from "./pgwire.js";
import { RowWriter, WRITER_EVERY_MS, WRITER_RETRY_MS, WRITER_TIMEOUT_MS } from "./row-writer.js";
import { benchSummary } from "../../bench/summary.js";
import { AGENT_POLL_MS } from "../../coordinator/health.js";
import { type Budget, budget, explain, plus, realTime, type RunbookKind, runbookModel, runbookSteps } from "../support/budgets.js";
import { instanceEvidence, localcloudEvidence, prefixed, settled } from "../support/evidence.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const AGENT_BUNDLE = join(ROOT, "dist", "spotkeep-agent.js");
export const REPORT_PATH = join(ROOT, "bench", "reports", "postgres-e2e.json");

/** Debian's PostgreSQL server binaries, newest major first, or null. */
export function postgresBin(): string | null {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return null;
  const majors = readdirSync(base)
    .filter((d) => existsSync(join(base, d, "bin", "initdb")) && existsSync(join(base, d, "bin", "pg_ctl")))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(base, majors[0], "bin") : null;
}

/** Why the scenario cannot run here (root, runtime tools, PostgreSQL, postgres user), or null. */
export function postgresE2eUnavailable(): string | null {
  const why = linuxRuntimeUnavailable();
  if (why) return why;
  if (!postgresBin()) return "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)";
  try {
    execFileSync("id", ["-u", "postgres"], { stdio: "ignore" });
  } catch {
    return "no postgres system user (apt-get install postgresql creates it)";
  }
  return null;
}

/** Shell prelude shared by user-data and hooks: where the cluster, socket and log live in this instance. */
function prelude(bin: string): string {
  return [
    `R="$SPOTKEEP_ROOT_DIR"; PGBIN=${bin}; D="$R/var/lib/postgresql/data"; S="$R/run/postgresql"`,
    // The stable IP: on eth1 with attach: secondary (the agent configured it before user-data runs), else eth0.
    `IP=$(ip -4 -o addr show dev eth1 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -n1); [ -n "$IP" ] || IP=$(ip -4 -o addr show dev eth0 | awk ` +
      `'{print $4}' | cut -d/ -f1)`,
    `pg() { runuser -u postgres -- "$@"; }`,
    // Idempotent start: user-data and postRestore both call it. fsync and synchronous_commit on:
    // a COMMIT returns only once its WAL is on the data volume.
    `pgstart() { mkdir -p "$S"; chown postgres:postgres "$S"; pg $PGBIN/pg_ctl -D "$D" status >/dev/null 2>&1 && return 0; pg $PGBIN/pg_ctl -D "$D" -l ` +
      `"$S/server.log" -w -t 300 -o "-c listen_addresses=$IP -c unix_socket_directories=$S -c fsync=on -c synchronous_commit=on -c full_page_writes=on" start >/dev/null; }`,
  ].join("\n");
}

/** User-data: initialise a cluster on the (agent-mounted) data volume when it is empty, then start PostgreSQL. */
export function postgresUserData(bin: string): string {
  return `#!/bin/bash
set -eu
${prelude(bin)}
chown postgres:postgres "$R/var/lib/postgresql"
if [ ! -f "$D/PG_VERSION" ]; then
  pg $PGBIN/initdb -D "$D" -A trust -U postgres >/dev/null
  echo "host all all 172.31.0.0/16 trust" >> "$D/pg_hba.conf"
  pgstart
  pg ${bin}/psql -h "$S" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS acked (n bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
  echo "pg-e2e: initialised a cluster on the data volume"
fi
pgstart
echo "pg-e2e: PostgreSQL serving on $IP"
`;
}

/**
 * User-data of the plain instance that pg-imported starts as: what a user runs without spotkeep.
 * It formats (only a blank device) and mounts its data volume itself unless something (the agent,
 * on every generation after the import) already mounted it, then sets up and starts PostgreSQL.
 */
export function plainPostgresUserData(bin: string): string {
  const mount = [
    `DEV=$(readlink -f "$SPOTKEEP_DEV_DIR/sdf")`,
    `mkdir -p "$R/var/lib/postgresql"`,
    `if ! mountpoint -q "$R/var/lib/postgresql"; then`,
    `  blkid "$DEV" >/dev/null 2>&1 || mkfs.ext4 -q "$DEV"`,
    `  mount "$DEV" "$R/var/lib/postgresql"`,
    `fi`,
  ].join("\n");
  return postgresUserData(bin).replace(`${prelude(bin)}\n`, `${prelude(bin)}\n${mount}\n`);
}

/** preStop: fast shutdown (rolls back open transactions, checkpoints, exits); nothing to do when it is not running. */
export function postgresPreStop(bin: string): string {
  return `${prelude(bin)}\npg $PGBIN/pg_ctl -D "$D" status >/dev/null 2>&1 || exit 0\npg $PGBIN/pg_ctl -D "$D" -m fast -w -t 300 stop`;
}

/** postRestore: start it when the restored volume holds a cluster (the first generation has none yet). */
export function postgresPostRestore(bin: string): string {
  return `${prelude(bin)}\n[ -f "$D/PG_VERSION" ] || exit 0\npgstart`;
}

export function postgresSpec(
  name: string,
  lc: LocalCloud,
  bin: string,
  dataMethod: "reattach" | "snapshot",
  attach: "primary" | "secondary" = "primary",
): SpecInput {
  const subnets = [...lc.world.subnets.values()].sort((a, b) => a.az.localeCompare(b.az));
  return {
    name,
    launch: {
      imageId: lc.world.baseImageId,
      instanceTypes: ["m6i.large", "m5.large"],
      // Reattach pins the volume's AZ; the first subnet keeps both instances on the bridge's first gateway.
      subnetIds: subnets.map((s) => s.id),
      userData: postgresUserData(bin),
      market: { type: "spot", fallbackToOnDemand: true, revertToSpot: true },
    },
    persistence: {
      // Root persistence off: the cluster lives on the data volume; the root is scratch (faster).
      root: false,
      volumes: [{ device: "/dev/sdf", sizeGiB: 1, mountPoint: "/var/lib/postgresql", fsType: "ext4" }],
      dataMethod,
      network: { privateIp: "same-eni", attach },
    },
    hooks: { preStop: postgresPreStop(bin), postRestore: postgresPostRestore(bin), timeoutSeconds: HOOKS_TIMEOUT_SECONDS },
  };
}

/** Step durations are model time already. */
const modelSeconds = (ms: number | null | undefined) => (ms == null ? null : Math.round(ms / 10) / 100);

export interface RoundReport {
  instance: string;
  kind: "interrupt" | "lose" | "import";
  dataMethod: "reattach" | "snapshot";
  /** secondary: make-before-break (the round's downtime is the cutover's). */
  network: "primary" | "secondary";
  /** Whether the replacement took over make-before-break (false: break-before-make, or its fallback). */
  madeBeforeBreak: boolean;
  /** Why a make-before-break round fell back to break-before-make, in the coordinator's words; null when it did not. */
  fallback: string | null;
  /** Model s the replacement took to be ready beside the old instance (mbb-wait-ready); null outside make-before-break. */
  readyWaitSeconds: number | null;
  workflowId: string;
  trigger: string;
  fromInstanceId: string;
  toInstanceId: string;
  privateIp: string;
  sameIp: boolean;
  volumeBefore: string | null;
  volumeAfter: string | null;
  /** Coordinator timeline (model s): quiesce start on the old instance -> ready on the new; null without a quiesce (lose). */
  downtimeSeconds: number | null;
  recoverySeconds: number | null;
  /** What the client saw (model s): last COMMIT before -> first COMMIT after. */
  clientOutageSeconds: number | null;
  acknowledgedSoFar: number;
  missing: number[];
}

export interface ScenarioResult {
  ok: boolean;
  interruptions: number;
  acknowledged: number;
  lost: number;
  /** Per round: the coordinator's downtime, or (lose) the client-observed outage; model seconds. */
  downtimeSeconds: number[];
  sameIp: boolean;
  uncertain: number;
  timeScale: number;
  profileCriticalPathSeconds: number;
  realSeconds: number;
  rounds: RoundReport[];
  leftovers: ReturnType<typeof leftovers> | null;
  error: string | null;
}

/**
 * What a run leaves to explain itself: its own progress lines, the coordinator's and localcloud's
 * logs (the last TRACE_LINES of each), and each instance's detail, timeline and localcloud resources
 * taken at the end of the run, while its coordinator still ran.
 */
export interface ScenarioTrace {
  scenario: string[];
  coordinator: string[];
  localcloud: string[];
  /** File name → text (`<instance>-instance.json`, `-timeline.txt`, `-localcloud.json`), taken at the end of the run. */
  instances: Record<string, string>;
}

const TRACE_LINES = 20_000;

export function newTrace(): ScenarioTrace {
  return { scenario: [], coordinator: [], localcloud: [], instances: {} };
}

function keep(buf: string[], line: string): void {
  buf.push(`${new Date().toISOString()} ${line}`);
  if (buf.length > TRACE_LINES) buf.splice(0, buf.length - TRACE_LINES);
}

export interface ScenarioOptions {
  timeScale?: number;
  log?: (line: string) => void;
  /** Print coordinator/localcloud logs too. */
  verbose?: boolean;
  writeReport?: boolean;
  /** Filled as the run goes (a caller keeps it to write evidence when the run fails). */
  trace?: ScenarioTrace;
}

/** The stateful instances the scenario manages. */
const INSTANCE_NAMES = ["pg-reattach", "pg-snapshot", "pg-mbb", "pg-imported"] as const;
/** The coordinator's lost-instance check (model ms). */
const LOST_CHECK_MS = 5000;
/** The hooks' timeout (model seconds): generous, so PostgreSQL's crash recovery at start-up fits. */
const HOOKS_TIMEOUT_SECONDS = 900;
/** Instances the scenario creates side by side (the fourth is imported). */
const CREATED_SIDE_BY_SIDE = 3;
/** COMMITs the client must see at each point before the scenario goes on. */
const ROWS = 20;

type Round = { name: (typeof INSTANCE_NAMES)[number]; kind: "interrupt" | "lose" };
const ROUNDS: Round[] = [
  { name: "pg-reattach", kind: "interrupt" },
  { name: "pg-reattach", kind: "interrupt" },
  { name: "pg-snapshot", kind: "interrupt" },
  { name: "pg-mbb", kind: "interrupt" },
  { name: "pg-reattach", kind: "lose" },
  { name: "pg-imported", kind: "interrupt" },
];

/**
 * How long each wait of the scenario may take (test/support/budgets.ts): the runbooks' model
 * bounds for these specs (no root persistence except the imported instance's, 900 s hooks), the
 * real starts on the linux runtime (agent, mkfs, initdb, PostgreSQL), and the client's own
 * timeouts for the COMMITs it must see.
 */
export function scenarioBudgets(scale: number) {
  const p = PROFILES.realistic;
  const shape = { hooksTimeoutSeconds: HOOKS_TIMEOUT_SECONDS, root: false };
  const commits = realTime({
    "client reconnect": WRITER_TIMEOUT_MS + WRITER_RETRY_MS,
    [`${ROWS} COMMITs at most one timeout each`]: ROWS * (WRITER_EVERY_MS + WRITER_TIMEOUT_MS),
  });
  const round = (r: Round): { kind: RunbookKind; shape: typeof shape & { dataMethod?: "snapshot" } } => {
    if (r.kind === "lose") return { kind: "replace-lost", shape };
    if (r.name === "pg-mbb") return { kind: "replace-mbb", shape };
    if (r.name === "pg-snapshot") return { kind: "replace", shape: { ...shape, dataMethod: "snapshot" } };
    // The imported instance keeps its root (captured as an image at the import).
    return { kind: "replace", shape: { ...shape, root: r.name === "pg-imported" } };
  };
  const b = {
    /**
     * The three instances, created side by side: each its agent, a file system on its volume, initdb
     * and PostgreSQL. Their starts share the machine's two cores, so all of them count (a run under
     * load took 45 s to create them with one instance's starts allowed).
     */
    created: budget({
      scale,
      model: runbookModel("create", shape),
      steps: runbookSteps("create"),
      starts: { agent: CREATED_SIDE_BY_SIDE, mkfs: CREATED_SIDE_BY_SIDE, initdb: CREATED_SIDE_BY_SIDE, PostgreSQL: CREATED_SIDE_BY_SIDE },
    }),
    /** The client's first COMMITs on a server that may still be starting. */
    firstCommits: plus(budget({ scale, starts: { PostgreSQL: 1 } }), commits),
    /** The plain instance (launched with the SDK) runs with its data volume. */
    plain: budget({
      scale,
      model: { "launch call": p.runInstancesCall, "create volume": p.createVolume, "pending → running": p.pendingToRunning },
    }),
    /** Its own user-data formats the volume and sets PostgreSQL up; then the first COMMITs. */
    plainCommits: plus(budget({ scale, model: { boot: p.bootToUserData }, starts: { mkfs: 1, initdb: 1, PostgreSQL: 1 } }), commits),
    /** The import, generation 1 started with its agent and PostgreSQL (postRestore). */
    imported: budget({
      scale,
      model: runbookModel("import", { ...shape, root: true }),
      steps: runbookSteps("import"),
      starts: { agent: 1, PostgreSQL: 1 },
    }),
    /** COMMITs on a running server (before a round, and on the generation a round brought). */
    commits: plus(budget({ scale }), commits),
    /** The coordinator notices the round: the agent relays the spot notice at its next poll, or the lost check sees the instance gone. */
    noticed: (r: Round) =>
      budget({
        scale,
        model: r.kind === "lose" ? { "lost check": LOST_CHECK_MS } : { "agent poll": AGENT_POLL_MS },
        steps: { replace: 1 },
      }),
    /** The round's replacement, its slowest documented fallback included, with the new generation's agent and PostgreSQL. */
    replaced: (r: Round) => {
      const { kind, shape: sh } = round(r);
      return budget({ scale, model: runbookModel(kind, sh), steps: runbookSteps(kind), starts: { agent: 1, PostgreSQL: 1 } });
    },
  };
  return b;
}

/** The whole scenario's waits, one after another: what a caller allows for the run. */
export function scenarioBudget(scale: number): Budget {
  const b = scenarioBudgets(scale);
  return plus(
    b.created,
    ...Array.from({ length: 3 }, () => b.firstCommits),
    b.plain,
    b.plainCommits,
    b.imported,
    b.commits,
    ...ROUNDS.flatMap((r) => [b.commits, b.noticed(r), b.replaced(r), b.commits]),
  );
}

async function until<T>(
  what: string,
  f: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  limit: Budget,
  every = 100,
): Promise<T> {
  const end = Date.now() + limit.ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${limit.ms} ms waiting for ${what} (budget ${explain(limit)})`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Waits for a promise at most `limit`, naming what it waited for when it gives up. */
async function within<T>(what: string, p: Promise<T>, limit: Budget): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${limit.ms} ms (budget ${explain(limit)})`)), limit.ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The admin API's two instance reads, answered by the in-process coordinator's views (for instanceEvidence). */
function viewsCall(c: Coordinator) {
  return async (_method: string, path: string) => {
    const m = /^instances\/([^/]+)(\/events)?$/.exec(path);
    const name = m ? decodeURIComponent(m[1]!) : "";
    const body = m?.[2] ? await c.views.getEvents(name) : await c.views.getInstance(name);
    return body ? { status: 200, body } : { status: 404, body: { error: `no stateful instance ${name}` } };
  };
}

async function control(lc: LocalCloud, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${lc.controlUrl}/${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`localcloud control ${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Reads every row back at `ip`; also which address the server answered on. */
async function readBack(ip: string): Promise<{ rows: Set<number>; serverAddr: string }> {
  const conn = await PgConnection.connect({ host: ip, timeoutMs: 5000 });
  try {
    const addr = await conn.query("SELECT host(inet_server_addr())", 10_000);
    const r = await conn.query("SELECT n FROM acked", 30_000);
    return { rows: new Set(r.rows.map((row) => Number(row[0]))), serverAddr: addr.rows[0]?.[0] ?? "" };
  } finally {
    conn.close();
  }
}

export async function runPostgresScenario(o: ScenarioOptions = {}): Promise<ScenarioResult> {
  const timeScale = o.timeScale ?? 0.05;
  const trace = o.trace ?? newTrace();
  const out = o.log ?? ((l: string) => console.log(l));
  const log = (l: string) => {
    keep(trace.scenario, l);
    out(l);
  };
  const budgets = scenarioBudgets(timeScale);
  const bin = postgresBin();
  const why = postgresE2eUnavailable();
  if (why || !bin) throw new Error(`the PostgreSQL end-to-end run cannot run here: ${why}`);
  if (!existsSync(AGENT_BUNDLE)) execFileSync(process.execPath, [join(ROOT, "scripts", "build.mjs")], { stdio: "ignore" });

  const started = Date.now();
  const result: ScenarioResult = {
    ok: false,
    interruptions: 0,
    acknowledged: 0,
    lost: 0,
    downtimeSeconds: [],
    sameIp: true,
    uncertain: 0,
    timeScale,
    profileCriticalPathSeconds: replacementCriticalPath(PROFILES.realistic) / 1000,
    realSeconds: 0,
    rounds: [],
    leftovers: null,
    error: null,
  };
  const release = await holdLinuxSuiteLock("postgres e2e");
  const dir = mkdtempSync(join(tmpdir(), "spotkeep-pge2e-"));
  // The postgres user must traverse into the instances' folders (the runtime makes its own 0711).
  chmodSync(dir, 0o711);
  const stateDir = join(dir, "localcloud");
  let lc: LocalCloud | undefined;
  let coord: Coordinator | undefined;
  const writers = new Map<string, RowWriter>();
  /** Acknowledged rows ever found missing, per instance (counted once however often they are missed). */
  const lostRows = new Map<string, Set<number>>();
  const markLost = (name: string, rows: number[]) => {
    const s = lostRows.get(name) ?? new Set<number>();
    for (const n of rows) s.add(n);
    lostRows.set(name, s);
    result.lost = [...lostRows.values()].reduce((a, x) => a + x.size, 0);
  };
  const quiet = (sink: string[]) => (l: string) => {
    keep(sink, l);
    if (o.verbose) out(`  | ${l}`);
  };
  try {
    lc = await startLocalCloud({
      port: 0,
      profile: "realistic",
      timeScale,
      runtime: "linux",
      stateDir,
      throttle: false,
      log: quiet(trace.localcloud),
    });
    const bridge = (lc.runtime as { imdsBindAddress?: () => string }).imdsBindAddress?.() ?? "172.31.0.1";
    coord = await startCoordinator({
      config: {
        // Instances reach the host only at the bridge's gateway addresses.
        listen: `${bridge}:0`,
        dataDir: join(dir, "coordinator"),
        ec2Endpoint: lc.endpoint,
        identityCertificate: lc.certificatePem,
        timeScale,
        adminToken: "pg-e2e-admin-token-0123456789",
        agentBundlePath: AGENT_BUNDLE,
        lostCheckIntervalMs: LOST_CHECK_MS,
      },
      log: quiet(trace.coordinator),
    });
    const c = coord;
    const cloud = lc;
    log(`localcloud (linux runtime, realistic, time scale ${timeScale}) at ${cloud.endpoint}; coordinator at ${c.url}`);

    const methods = { "pg-reattach": "reattach", "pg-snapshot": "snapshot", "pg-mbb": "reattach", "pg-imported": "reattach" } as const;
    const network = (n: string) => (n === "pg-mbb" ? "secondary" : "primary");
    const names = Object.keys(methods) as Array<keyof typeof methods>;
    const createdNames = names.filter((n) => n !== "pg-imported");
    // pg-imported's original: a plain on-demand instance, launched with the SDK while the others are created.
    const plain = launchPlainPostgres(cloud, bin, budgets.plain);
    const created = await Promise.all(
      createdNames.map(async (n) => {
        const { workflowId } = await c.views.createInstance(parseSpec(postgresSpec(n, cloud, bin, methods[n], network(n))));
        return within(`${n}: create ${workflowId}`, c.engine.wait(workflowId), budgets.created);
      }),
    );
    for (const w of created) if (w.status !== "succeeded") throw new Error(`creating ${w.instance}: ${w.status}: ${w.error}`);
    const ips = new Map<string, string>();
    for (const n of createdNames) {
      const d = (await c.views.getInstance(n))!;
      if (!d.privateIp) throw new Error(`${n} has no private IP after create`);
      ips.set(n, d.privateIp);
      const w = new RowWriter(d.privateIp);
      writers.set(n, w);
      w.start();
      log(`${n}: generation ${d.generation} ${d.instanceId} at ${d.privateIp} (${methods[n]}, ${network(n)} ENI)`);
    }
    for (const n of createdNames) {
      const w = writers.get(n)!;
      await until(
        `${n}: the first acknowledged rows (last error: ${w.lastError})`,
        () => w.acked.length >= ROWS,
        budgets.firstCommits,
      ).catch(async (e) => {
        throw new Error(`${(e as Error).message}\n${consoleTail(cloud, (await c.views.getInstance(n))?.instanceId)}`);
      });
    }

    // The imported start: PostgreSQL serves on the plain instance and the client writes; then it is imported.
    {
      const n = "pg-imported";
      const original = await plain;
      ips.set(n, original.privateIp);
      const w = new RowWriter(original.privateIp);
      writers.set(n, w);
      w.start();
      await until(
        `${n}: the first acknowledged rows on the plain instance (last error: ${w.lastError})`,
        () => w.acked.length >= ROWS,
        budgets.plainCommits,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\n${consoleTail(cloud, original.instanceId)}`);
      });
      log(`${n}: PostgreSQL on plain ${original.instanceId} at ${original.privateIp}; importing with ${w.acked.length} rows acknowledged`);
      const outagesBefore = w.outages.length;
      const started = await c.views.importInstance!({
        instanceId: original.instanceId,
        name: n,
        dryRun: false,
        overrides: {
          persistence: { volumes: [{ device: "/dev/sdf", mountPoint: "/var/lib/postgresql", fsType: "ext4" }] },
          hooks: { preStop: postgresPreStop(bin), postRestore: postgresPostRestore(bin), timeoutSeconds: HOOKS_TIMEOUT_SECONDS },
        },
      });
      const done = await within(`${n}: import ${started.workflowId}`, c.engine.wait(started.workflowId!), budgets.imported);
      if (done.status !== "succeeded") throw new Error(`${n}: import ${done.id} ${done.status}: ${done.error}`);
      const after = (await c.views.getInstance(n))!;
      const ackedAtReady = w.acked.length;
      await until(
        `${n}: COMMITs on generation 1 (last client error: ${w.lastError})`,
        () => w.acked.length >= ackedAtReady + ROWS,
        budgets.commits,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\n${consoleTail(cloud, after.instanceId)}`);
      });
      const acked = [...w.acked];
      const back = await readBack(original.privateIp);
      const missing = acked.filter((x) => !back.rows.has(x));
      const outage = w.outages
        .slice(outagesBefore)
        .reduce<number | null>((m, x) => Math.max(m ?? 0, (x.firstAckAfter - x.lastAckBefore) / 1000 / timeScale), null);
      const sameIp = after.privateIp === original.privateIp && back.serverAddr === original.privateIp;
      const report: RoundReport = {
        instance: n,
        kind: "import",
        dataMethod: "reattach",
        network: "primary",
        madeBeforeBreak: false,
        fallback: null,
        readyWaitSeconds: null,
        workflowId: done.id,
        trigger: done.trigger ?? "",
        fromInstanceId: original.instanceId,
        toInstanceId: after.instanceId!,
        privateIp: after.privateIp ?? "",
        sameIp,
        volumeBefore: original.dataVolume,
        volumeAfter: after.resources.volumes[0]?.volumeId ?? null,
        downtimeSeconds: null,
        recoverySeconds: null,
        clientOutageSeconds: outage === null ? null : Math.round(outage * 100) / 100,
        acknowledgedSoFar: acked.length,
        missing: missing.slice(0, 20),
      };
      result.rounds.push(report);
      markLost(n, missing);
      result.sameIp &&= sameIp;
      if (report.clientOutageSeconds !== null) result.downtimeSeconds.push(report.clientOutageSeconds);
      log(
        `${n}: imported ${original.instanceId} -> generation 1 ${after.instanceId} (${after.lifecycle}) at ${after.privateIp} (server on ${back.serverAddr}), ` +
          `volume ${report.volumeBefore} -> ${report.volumeAfter}; client outage ${report.clientOutageSeconds ?? "-"} s (model); ${acked.length} ` +
          `acknowledged, ${missing.length} missing`,
      );
    }

    const rounds = ROUNDS;
    for (const r of rounds) {
      const w = writers.get(r.name)!;
      const before = (await c.views.getInstance(r.name))!;
      const oldId = before.instanceId!;
      const known = new Set((await c.store.workflows.listFor(r.name)).map((x) => x.id));
      const outagesBefore = w.outages.length;
      const ackedBefore = w.acked.length;
      await until(`${r.name}: rows acknowledged before the ${r.kind}`, () => w.acked.length >= ackedBefore + ROWS, budgets.commits);
      if (r.kind === "interrupt") await control(cloud, "POST", `instances/${oldId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
      else await control(cloud, "POST", `instances/${oldId}/lose`);
      log(`${r.name}: ${r.kind} ${oldId} (generation ${before.generation}) with ${w.acked.length} rows acknowledged`);
      const wf = await until(
        `${r.name}: a replace workflow after the ${r.kind}`,
        async () => (await c.store.workflows.listFor(r.name)).find((x) => x.kind === "replace" && !known.has(x.id)),
        budgets.noticed(r),
      );
      const done = await within(`${r.name}: replace ${wf.id}`, c.engine.wait(wf.id), budgets.replaced(r));
      if (done.status !== "succeeded") throw new Error(`${r.name}: replace ${wf.id} ${done.status}: ${done.error}`);
      const after = (await c.views.getInstance(r.name))!;
      if (after.instanceId === oldId || after.generation !== before.generation + 1)
        throw new Error(`${r.name}: expected a new generation after ${wf.id}, got generation ${after.generation} ${after.instanceId}`);
      // The client comes back by itself at the same address: wait for fresh COMMITs on the new generation.
      const ackedAtReady = w.acked.length;
      await until(
        `${r.name}: COMMITs on generation ${after.generation} (last client error: ${w.lastError})`,
        () => w.acked.length >= ackedAtReady + ROWS,
        budgets.commits,
      ).catch((e) => {
        throw new Error(`${(e as Error).message}\n${consoleTail(cloud, after.instanceId)}`);
      });
      // Every row acknowledged so far must be there, read back at the same private IP.
      const acked = [...w.acked];
      const back = await readBack(ips.get(r.name)!);
      const missing = acked.filter((n) => !back.rows.has(n));
      const { timelines, events } = (await c.views.getEvents(r.name))!;
      const timeline = timelines.find((t) => t.workflowId === wf.id)!;
      const outage = w.outages
        .slice(outagesBefore)
        .reduce<number | null>((m, x) => Math.max(m ?? 0, (x.firstAckAfter - x.lastAckBefore) / 1000 / timeScale), null);
      const sameIp = after.privateIp === ips.get(r.name) && back.serverAddr === ips.get(r.name);
      const report: RoundReport = {
        instance: r.name,
        kind: r.kind,
        dataMethod: methods[r.name],
        network: network(r.name),
        madeBeforeBreak: timeline.steps.some((s) => s.name === "cutover-quiesce"),
        fallback:
          events.find((e) => e.workflowId === wf.id && e.kind === "make-before-break" && /falling back/.test(e.message))?.message ?? null,
        readyWaitSeconds: modelSeconds(timeline.steps.find((s) => s.name === "mbb-wait-ready")?.durationMs),
        workflowId: wf.id,
        trigger: wf.trigger ?? "",
        fromInstanceId: oldId,
        toInstanceId: after.instanceId!,
        privateIp: after.privateIp ?? "",
        sameIp,
        volumeBefore: before.resources.volumes[0]?.volumeId ?? null,
        volumeAfter: after.resources.volumes[0]?.volumeId ?? null,
        downtimeSeconds: timeline.downtimeSeconds,
        recoverySeconds: timeline.recoverySeconds,
        clientOutageSeconds: outage === null ? null : Math.round(outage * 100) / 100,
        acknowledgedSoFar: acked.length,
        missing: missing.slice(0, 20),
      };
      result.rounds.push(report);
      result.interruptions++;
      markLost(r.name, missing);
      result.sameIp &&= sameIp;
      const down = report.downtimeSeconds ?? report.clientOutageSeconds;
      if (down !== null) result.downtimeSeconds.push(down);
      log(
        `${r.name}: ${r.kind} recovered by ${wf.id} (${wf.trigger}): ${oldId} -> ${after.instanceId} at ${after.privateIp} (server on ${back.serverAddr}), volume ${report.volumeBefore} -> ${report.volumeAfter}; ` +
          `downtime ${report.downtimeSeconds ?? "-"} s, recovery ${report.recoverySeconds ?? "-"} s, client outage ${report.clientOutageSeconds ?? "-"} s ` +
          `(model); ${acked.length} acknowledged, ${missing.length} missing` +
          (report.network === "secondary"
            ? `; replacement ready beside the old one after ${report.readyWaitSeconds ?? "-"} s (model)` +
              (report.fallback ? `, fell back: ${report.fallback}` : "")
            : ""),
      );
    }
    // Last word for every instance: everything any client was told is committed is there.
    for (const n of names) {
      const w = writers.get(n)!;
      await w.stop();
      const back = await readBack(ips.get(n)!);
      const missing = w.acked.filter((x) => !back.rows.has(x));
      if (missing.length) log(`${n}: final read-back misses ${missing.length} acknowledged rows, e.g. ${missing.slice(0, 5).join(", ")}`);
      markLost(n, missing);
      result.acknowledged += w.acked.length;
      result.uncertain += w.uncertain.length;
    }
    result.ok = result.lost === 0 && result.sameIp && result.interruptions === rounds.length;
  } catch (err) {
    result.error = (err as Error).message;
    log(`postgres e2e failed: ${result.error}`);
  } finally {
    // What the coordinator knows of each instance, while it still runs (a caller's checks of the
    // result may fail where the run did not).
    const c = coord;
    const cloud = lc;
    for (const n of INSTANCE_NAMES)
      Object.assign(
        trace.instances,
        prefixed(
          `${n}-`,
          await settled({ ...(c ? instanceEvidence(viewsCall(c), n) : {}), ...(cloud ? localcloudEvidence(cloud.world, n) : {}) }),
        ),
      );
    for (const w of writers.values()) await w.stop().catch(() => undefined);
    await coord?.stop().catch((e) => log(`stopping the coordinator: ${String(e)}`));
    await lc?.stop().catch((e) => log(`stopping localcloud: ${String(e)}`));
    try {
      result.leftovers = leftovers([stateDir]);
    } catch (e) {
      log(`listing leftovers: ${String(e)}`);
    }
    rmSync(dir, { recursive: true, force: true });
    release();
  }
  result.realSeconds = Math.round((Date.now() - started) / 100) / 10;
  if (result.leftovers && Object.values(result.leftovers).some((l) => l.length > 0)) {
    result.ok = false;
    result.error ??= `left behind: ${JSON.stringify(result.leftovers)}`;
  }
  if (o.writeReport !== false) writeReport(result);
  return result;
}

/**
 * pg-imported's original, launched the way a user would (outside spotkeep): on-demand, a 1 GiB gp3
 * data volume at /dev/sdf deleted with the instance, PostgreSQL set up by its own user-data.
 */
async function launchPlainPostgres(
  lc: LocalCloud,
  bin: string,
  limit: Budget,
): Promise<{ instanceId: string; privateIp: string; dataVolume: string }> {
  const sdk = new EC2Client({ endpoint: lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "x" } });
  try {
    const subnet = [...lc.world.subnets.values()].sort((a, b) => a.az.localeCompare(b.az))[0]!;
    const out = await sdk.send(
      new RunInstancesCommand({
        ImageId: lc.world.baseImageId,
        InstanceType: "m6i.large",
        MinCount: 1,
        MaxCount: 1,
        SubnetId: subnet.id,
        UserData: Buffer.from(plainPostgresUserData(bin)).toString("base64"),
        BlockDeviceMappings: [{ DeviceName: "/dev/sdf", Ebs: { VolumeSize: 1, VolumeType: "gp3", DeleteOnTermination: true } }],
        TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "Name", Value: "plain-postgres" }] }],
      }),
    );
    const i = out.Instances![0]!;
    const id = i.InstanceId!;
    const running = await until(
      `${id} to run with its data volume`,
      async () => {
        const r = await sdk.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
        const x = r.Reservations?.[0]?.Instances?.[0];
        return x?.State?.Name === "running" && x.BlockDeviceMappings?.some((b) => b.DeviceName === "/dev/sdf") ? x : null;
      },
      limit,
    );
    const dataVolume = running.BlockDeviceMappings!.find((b) => b.DeviceName === "/dev/sdf")!.Ebs!.VolumeId!;
    return { instanceId: id, privateIp: running.PrivateIpAddress!, dataVolume };
  } finally {
    sdk.destroy();
  }
}

function consoleTail(lc: LocalCloud, instanceId: string | null | undefined): string {
  if (!instanceId) return "";
  try {
    const rt = lc.runtime as { logPath?: (id: string) => string };
    const text = readFileSync(rt.logPath!(instanceId), "utf8");
    return `console of ${instanceId} (tail):\n${text.split("\n").slice(-40).join("\n")}`;
  } catch {
    return "";
  }
}

function writeReport(r: ScenarioResult): void {
  mkdirSync(dirname(REPORT_PATH), { recursive: true });
  const reattach = r.rounds
    .filter((x) => x.kind === "interrupt" && x.dataMethod === "reattach" && x.downtimeSeconds !== null)
    .map((x) => x.downtimeSeconds!);
  writeFileSync(
    REPORT_PATH,
    `${JSON.stringify(
      {
        summary: benchSummary({
          benchmark: "postgres-e2e",
          measures: `PostgreSQL end to end on localcloud's linux runtime (time scale ${r.timeScale}): no acknowledged row lost, same IP, downtime`,
          command: "sudo npm run e2e:postgres",
          results: [
            { name: "acknowledged rows lost", measured: r.lost, unit: "", target: { op: "<=", value: 0 } },
            { name: "private IP changes", measured: r.sameIp ? 0 : 1, unit: "", target: { op: "<=", value: 0 } },
            { name: "interruptions survived", measured: r.interruptions, unit: "", target: null },
            {
              name: "slowest reattach downtime / critical path",
              measured: reattach.length ? Math.round((Math.max(...reattach) / r.profileCriticalPathSeconds) * 1000) / 1000 : null,
              unit: "×",
              target: null,
            },
          ],
        }),
        at: new Date().toISOString(),
        what: "PostgreSQL end to end on localcloud's linux runtime (realistic profile): downtime per interruption, model seconds",
        timeScale: r.timeScale,
        profileCriticalPathSeconds: r.profileCriticalPathSeconds,
        reattachDowntimeOverCriticalPath: reattach.length ? Math.max(...reattach) / r.profileCriticalPathSeconds : null,
        ok: r.ok,
        interruptions: r.interruptions,
        acknowledged: r.acknowledged,
        lost: r.lost,
        downtimeSeconds: r.downtimeSeconds,
        rounds: r.rounds.map((x) => ({
          instance: x.instance,
          kind: x.kind,
          dataMethod: x.dataMethod,
          network: x.network,
          madeBeforeBreak: x.madeBeforeBreak,
          trigger: x.trigger,
          downtimeSeconds: x.downtimeSeconds,
          recoverySeconds: x.recoverySeconds,
          clientOutageSeconds: x.clientOutageSeconds,
        })),
        realSeconds: r.realSeconds,
        note: "At small time scales fixed real costs (agent start, PostgreSQL start, mkfs) are magnified by 1/timeScale in model seconds.",
      },
      null,
      2,
    )}\n`,
  );
}

/** The one JSON line the CLI prints (the issue's shape first). */
export function summaryLine(r: ScenarioResult): string {
  return JSON.stringify({
    interruptions: r.interruptions,
    acknowledged: r.acknowledged,
    lost: r.lost,
    downtimeSeconds: r.downtimeSeconds,
    sameIp: r.sameIp,
    uncertain: r.uncertain,
    timeScale: r.timeScale,
    profileCriticalPathSeconds: r.profileCriticalPathSeconds,
    clientOutageSeconds: r.rounds.map((x) => x.clientOutageSeconds),
    makeBeforeBreakDowntimeSeconds: r.rounds.filter((x) => x.madeBeforeBreak).map((x) => x.downtimeSeconds),
    realSeconds: r.realSeconds,
    ok: r.ok,
    ...(r.error ? { error: r.error.split("\n")[0] } : {}),
  });
}
