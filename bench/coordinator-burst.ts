/**
 * Many simultaneous interruptions under AWS's API throttling, measured on the BUILT coordinator
 * (bin/spotkeep.js -> dist/cli/main.mjs as a child process, with the node flags and environment of
 * docs/systemd/spotkeep-coordinator.service, so its CPU and RSS are its own).
 * Targets: every instance recovered, none failed on throttling, no call refused by the EC2 model's
 * token buckets (the coordinator's client-side pacer keeps under them), the slowest recovery within
 * 1.03x the throttle-model bound at up to 1,000 instances and 1.1x above; at 5,000 a peak RSS
 * <= 1 GiB. CPU is reported.
 *
 *   npm run build && npx tsx bench/coordinator-burst.ts [--count 1000] [--time-scale 0.05] [--headroom 1]
 *     [--cpu-prof] [--heap-prof] [--plain]
 *
 * --headroom is the coordinator's apiHeadroom (share of AWS's buckets it paces itself to; the
 * production default is 0.8, which stretches a launch burst by 1/0.8). --cpu-prof / --heap-prof
 * run the coordinator child with node's profiler (files under bench/reports/profiles/). --plain
 * runs it with node's defaults instead of the unit's flags.
 *
 * localcloud runs in this process: the realistic profile, throttling on, no instance processes
 * (runtime none); every instance gets an in-process fake agent that speaks the real protocol
 * (identity from the instance's own IMDS, restore-plan -> restored + ready, quiesce -> quiesced),
 * so the coordinator, its pacing and the EC2 model are real and only the on-instance work is
 * skipped. Set-up (creating the N instances) runs on an in-process coordinator with throttling
 * and pacing off, on the same data directory, so only the burst is paced; then the built
 * coordinator starts on that store, the agents reconnect to it, and all N instances get a
 * terminate notice within one second (straight in the EC2 model, as AWS marks a zone's capacity).
 * Writes bench/reports/coordinator-burst-<count>.json.
 *
 * Throttle-model bound: the single-replacement critical path of the profile plus the time the
 * RunInstances request bucket (5 burst, 2/s) needs to admit N launches, (N - 5) / 2 seconds.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openSqlite } from "../coordinator/db/sqlite/driver.js";
import { parseSpec } from "../shared/spec.js";
import { PROFILES, replacementCriticalPath } from "../localcloud/index.js";
import { interrupt } from "../localcloud/world/interruptions.js";
import { SqliteStore } from "../coordinator/db/sqlite/index.js";
import { Views } from "../coordinator/views.js";
import { CLI, ensureBuilt } from "../test/cli/built.js";
import { FakeAgent } from "../test/coordinator/fake-agent.js";
import { coordinatorConfig, inProcessCoordinator, OWNER_ENV, ROOT, startEnv, until } from "../test/coordinator/harness.js";
import { hotFunctions, profileOf } from "./lib/profile.js";
import { cpuPercent, machine, machineAfter, type ProcSample, procSample, systemdUnitSettings, type TargetResult } from "./lib/machine.js";

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
const { values } = parseArgs({
  options: {
    count: { type: "string", default: "200" },
    "time-scale": { type: "string", default: "0.05" },
    headroom: { type: "string", default: "1" },
    "cpu-prof": { type: "boolean", default: false },
    "heap-prof": { type: "boolean", default: false },
    plain: { type: "boolean", default: false },
  },
});
const N = Number(values.count);
const scale = Number(values["time-scale"]);
const headroom = Number(values.headroom);
if (!Number.isInteger(N) || N < 1 || N > 20_000) throw new Error("--count must be an integer 1..20000");
if (!(scale > 0 && scale <= 1)) throw new Error("--time-scale must be in (0, 1]");
if (!(headroom > 0 && headroom <= 1)) throw new Error("--headroom must be in (0, 1]");
const BOUND_RATIO = N <= 1000 ? 1.03 : 1.1;
const TARGET_RSS_MIB = 1024;

ensureBuilt();
const m0 = machine();
const unit = values.plain ? { flags: [], env: {} } : systemdUnitSettings(ROOT);
const profDir = join(ROOT, "bench", "reports", "profiles");
const profFlags = [
  ...(values["cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []),
  ...(values["heap-prof"] ? ["--heap-prof", `--heap-prof-dir=${profDir}`] : []),
];
if (profFlags.length) mkdirSync(profDir, { recursive: true });

const dir = mkdtempSync(join(tmpdir(), "spotkeep-burst-"));
const dataDir = join(dir, "coord");
const env = await startEnv(dir, scale, { runtime: "none", throttle: true });
const log = (s: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${s}`);

const agents = new Map<string, FakeAgent>();
const conn: { target: { wsUrl: string; mode: "restore" | "run" } | null } = { target: null };
let stopAgents = false;
// Give every running instance its fake agent, talking to the current coordinator. At most 128
// start at once (each asks IMDS and opens a session; thousands at once overflow the listen
// backlogs and get connection resets), and one that failed to start is tried again.
const MAX_STARTING = 128;
const SETUP_WAVE = 500;
let starting = 0;
let agentSeq = 0;
const spawner = (async () => {
  while (!stopAgents) {
    // White-box: read the world directly (the HTTP state dump of thousands of instances every
    // 100 ms would cost this process more CPU than the coordinator under test).
    const target = conn.target;
    if (target)
      for (const i of env.lc.world.instances.values()) {
        if (starting >= MAX_STARTING) break;
        if (i.state !== "running" || agents.has(i.id)) continue;
        // Each from its own loopback address, as instances have their own (the hub caps sessions
        // before hello per source address).
        const k = ++agentSeq;
        const localAddress = `127.1.${Math.floor(k / 250) % 250}.${(k % 250) + 1}`;
        const a = new FakeAgent(i.id, env, { wsUrl: target.wsUrl }, { mode: target.mode, localAddress });
        agents.set(i.id, a);
        starting++;
        a.start()
          .catch((err) => {
            log(`fake agent ${i.id}: ${(err as Error).message}; starting it again`);
            a.close();
            if (agents.get(i.id) === a) agents.delete(i.id);
          })
          .finally(() => starting--);
      }
    await new Promise((r) => setTimeout(r, starting >= MAX_STARTING ? 10 : 100));
  }
})();

let child: ChildProcess | null = null;
try {
  // ---------- set-up: N instances, unthrottled and unpaced ----------
  env.lc.throttle.enabled = false;
  const setup = await inProcessCoordinator(env, dataDir, scale, {
    maxConcurrentWorkflows: Math.max(64, N),
    lostCheckIntervalMs: 3_600_000,
    apiHeadroom: 0,
  });
  conn.target = { wsUrl: setup.wsUrl, mode: "restore" };
  const names = Array.from({ length: N }, (_, i) => `burst-${String(i).padStart(4, "0")}`);
  const tCreate = Date.now();
  // Spread across the three AZs' subnets (a /20 each, as AWS's default subnets): the first subnet
  // listed is an instance's home, and 5,000 addresses do not fit in one /20.
  const specOf = (n: string, i: number) => {
    const spec = env.spec(n, { workload: false, root: false });
    const ids = spec.launch.subnetIds;
    return parseSpec({ ...spec, launch: { ...spec.launch, subnetIds: [...ids.slice(i % ids.length), ...ids.slice(0, i % ids.length)] } });
  };
  // In waves, so the fake agents (started 128 at a time) answer each create's restore within its budget.
  const creates = [];
  for (let w = 0; w < N; w += SETUP_WAVE)
    creates.push(
      ...(await Promise.all(
        names
          .slice(w, w + SETUP_WAVE)
          .map(async (n, i) => setup.engine.wait((await setup.views.createInstance(specOf(n, w + i))).workflowId)),
      )),
    );
  const createFailed = creates.filter((w) => w.status !== "succeeded");
  if (createFailed.length) throw new Error(`${createFailed.length} creates failed, first: ${createFailed[0]!.error}`);
  const olds = await Promise.all(names.map(async (n) => (await setup.views.getInstance(n))!.instanceId!));
  log(`set-up: ${N} instances created in ${((Date.now() - tCreate) / 1000).toFixed(1)} s`);
  conn.target = null;
  for (const a of agents.values()) a.close();
  agents.clear();
  await setup.stop();

  // ---------- the built coordinator on that store, throttling on ----------
  env.lc.throttle.reset();
  env.lc.throttle.enabled = true;
  const cfgFile = join(dir, "coordinator.json");
  writeFileSync(
    cfgFile,
    JSON.stringify(
      coordinatorConfig(env, dataDir, scale, {
        maxConcurrentWorkflows: Math.max(64, N),
        lostCheckIntervalMs: 60_000,
        apiHeadroom: headroom,
      }),
    ),
  );
  const out: string[] = [];
  const c = spawn(process.execPath, [...unit.flags, ...profFlags, CLI, "coordinator", "--config", cfgFile], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...unit.env, [OWNER_ENV]: dir },
  });
  child = c;
  c.stdout!.on("data", (d) => out.push(String(d)));
  c.stderr!.on("data", (d) => out.push(String(d)));
  const exited = new Promise<void>((r) => c.once("exit", () => r()));
  const url = await until("the coordinator to listen", () => {
    if (c.exitCode !== null) throw new Error(`the coordinator exited with ${c.exitCode}:\n${out.join("").slice(-4000)}`);
    return /coordinator listening on (http:\/\/\S+)/.exec(out.join(""))?.[1];
  });
  const health = async () => (await (await fetch(`${url}/healthz`)).json()) as { agents: number; openFiles: unknown };
  conn.target = { wsUrl: `${url.replace(/^http/, "ws")}/agent/v1/ws`, mode: "run" };
  await until(`${N} agents to connect`, async () => (await health()).agents >= N, 300_000, 500);
  log(`built coordinator (pid ${c.pid}) up, ${N} agents connected`);
  conn.target.mode = "restore";

  // ---------- the burst ----------
  const samples: ProcSample[] = [];
  const before = procSample(c.pid!)!;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const s = procSample(c.pid!);
      if (s) samples.push(s);
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  const tBurst = Date.now();
  for (const id of olds) {
    const notice = interrupt(env.lc.world, env.lc.world.instances.get(id)!, "terminate", 120);
    agents.get(id)!.notice(notice.action, notice.time);
  }
  const interruptMs = Date.now() - tBurst;
  const cp = replacementCriticalPath(PROFILES.realistic) / 1000;
  const bound = cp + Math.max(0, N - 5) / 2;
  // Progress from the store, read-only (WAL: the coordinator's writes are not blocked).
  const db = openSqlite(join(dataDir, "coordinator.sqlite"), { readonly: true, fileMustExist: true });
  const progress = db.prepare("SELECT status, count(*) AS n FROM workflows WHERE kind = 'replace' GROUP BY status");
  const deadline = tBurst + Math.max(600_000, bound * scale * 4 * 1000);
  let lastLog = 0;
  for (;;) {
    const by = Object.fromEntries((progress.all() as Array<{ status: string; n: number }>).map((r) => [r.status, r.n]));
    const done = (by.succeeded ?? 0) + (by.failed ?? 0) + (by.cancelled ?? 0);
    if (Date.now() - lastLog > 10_000) {
      const s = samples.at(-1);
      log(`replace ${JSON.stringify(by)}; coordinator RSS ${s ? (s.rssKiB / 1024).toFixed(0) : "?"} MiB`);
      lastLog = Date.now();
    }
    if (done >= N) break;
    if (c.exitCode !== null) throw new Error(`the coordinator exited with ${c.exitCode}:\n${out.join("").slice(-4000)}`);
    if (Date.now() > deadline) throw new Error(`timed out: replace workflows ${JSON.stringify(by)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  db.close();
  const allReal = (Date.now() - tBurst) / 1000;
  sampling = false;
  await sampler;
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const finalHealth = await health();
  const last = procSample(c.pid!) ?? samples.at(-1)!;
  c.kill("SIGTERM");
  await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
  const m1 = machineAfter(m0);

  // ---------- results, from the store the coordinator left ----------
  const store = SqliteStore.open(join(dataDir, "coordinator.sqlite"));
  const views = new Views(store, scale);
  const wfs = await Promise.all(names.map(async (n) => (await store.workflows.listFor(n)).find((w) => w.kind === "replace")!));
  const failed = wfs.filter((w) => w.status !== "succeeded");
  const recoveries = (await Promise.all(wfs.map(async (w) => (await views.timeline(w)).recoverySeconds ?? Number.NaN))).sort(
    (a, b) => a - b,
  );
  const maxRecovery = recoveries.at(-1)!;
  // Median and max model seconds per step across all replacements: where the time went.
  const perStep = new Map<string, number[]>();
  for (const w of wfs)
    for (const st of (await views.workflow(w.id))!.steps)
      if (st.durationMs != null) perStep.set(st.name, [...(perStep.get(st.name) ?? []), st.durationMs / 1000]);
  await store.close();
  const stepStats = Object.fromEntries(
    [...perStep].map(([k, v]) => {
      v.sort((a, b) => a - b);
      return [k, { p50: v[Math.floor((v.length - 1) / 2)], max: v.at(-1) }];
    }),
  );
  const throttles = [...metrics.matchAll(/^spotkeep_ec2_api_throttles_total\{action="(\w+)"\} (\d+)/gm)].map((m) => `${m[1]}=${m[2]}`);
  const callsBy = Object.fromEntries(
    [...metrics.matchAll(/^spotkeep_ec2_api_calls_total\{action="(\w+)"\} (\d+)/gm)].map((m) => [m[1]!, Number(m[2])]),
  );
  const calls = Object.values(callsBy).reduce((a, b) => a + b, 0);
  const refused = Object.fromEntries(env.lc.throttle.refused);
  const refusedTotal = Object.values(refused).reduce((a, b) => a + b, 0);
  const throttleFailures = failed.filter((w) => /RequestLimitExceeded|Throttl/i.test(w.error ?? ""));
  const peakRssMiB = +(Math.max(last.hwmKiB, ...samples.map((s) => s.hwmKiB)) / 1024).toFixed(1);
  const cpuWindow = cpuPercent(before, last);
  const cpuPeak = Math.max(0, ...samples.slice(1).map((s, i) => cpuPercent(samples[i]!, s)));
  const ratio = maxRecovery / bound;
  const targets: TargetResult[] = [
    { what: "instances recovered", target: `${N} of ${N}`, measured: N - failed.length, pass: failed.length === 0 },
    { what: "workflows failed on throttling", target: "0", measured: throttleFailures.length, pass: throttleFailures.length === 0 },
    { what: "EC2 calls refused by the throttle model", target: "0", measured: refusedTotal, pass: refusedTotal === 0 },
    {
      what: "slowest recovery / throttle-model bound",
      target: `<= ${BOUND_RATIO}`,
      measured: +ratio.toFixed(3),
      pass: ratio <= BOUND_RATIO,
    },
    ...(N >= 5000
      ? [{ what: "coordinator peak RSS, MiB", target: `<= ${TARGET_RSS_MIB}`, measured: peakRssMiB, pass: peakRssMiB <= TARGET_RSS_MIB }]
      : []),
  ];
  const report = {
    name: `coordinator-burst-${N}`,
    description: `${N} stateful instances interrupted within one second under EC2's API token buckets, built coordinator`,
    at: new Date().toISOString(),
    date: new Date().toISOString(),
    machine: m1,
    entry: "bin/spotkeep.js coordinator (dist/cli/main.mjs)",
    nodeFlags: [...unit.flags, ...profFlags],
    environment: unit.env,
    count: N,
    apiHeadroom: headroom,
    timeScale: scale,
    targets,
    pass: targets.every((t) => t.pass),
    failed: failed.map((w) => `${w.instance}: ${w.error}`),
    recoverySeconds: { p50: recoveries[Math.floor((N - 1) / 2)], max: maxRecovery },
    criticalPathSeconds: cp,
    throttleModelBoundSeconds: bound,
    maxRecoveryOverBound: ratio,
    realSeconds: { create: (tBurst - tCreate) / 1000, interrupt: interruptMs / 1000, replaceAll: allReal },
    ec2Calls: calls,
    ec2CallsByAction: callsBy,
    throttledCalls: throttles,
    refusedByThrottleModel: refused,
    coordinator: {
      pid: c.pid,
      peakRssMiB,
      rssMiB: {
        beforeBurst: +(before.rssKiB / 1024).toFixed(1),
        max: +(Math.max(...samples.map((s) => s.rssKiB)) / 1024).toFixed(1),
        end: +(last.rssKiB / 1024).toFixed(1),
      },
      cpu: {
        seconds: +((last.cpuMs - before.cpuMs) / 1000).toFixed(1),
        percentOfCoreAvg: cpuWindow,
        percentOfCorePeak: cpuPeak,
      },
      openFiles: finalHealth.openFiles,
    },
    stepSeconds: stepStats,
    /** With --cpu-prof: the coordinator's hottest functions (self time) over its whole run. */
    cpuProfile: (() => {
      const f = values["cpu-prof"] ? profileOf(profDir, c.pid!) : null;
      return f ? { file: f.slice(ROOT.length + 1), ...hotFunctions(f) } : null;
    })(),
  };
  mkdirSync(join(ROOT, "bench", "reports"), { recursive: true });
  writeFileSync(join(ROOT, "bench", "reports", `${report.name}.json`), `${JSON.stringify(report, null, 2)}\n`);
  console.log(JSON.stringify(report, null, 2));
  for (const t of targets) console.log(`${t.pass ? "PASS" : "FAIL"}  ${t.what}: ${t.measured} (target ${t.target})`);
} finally {
  stopAgents = true;
  await spawner.catch(() => undefined);
  for (const a of agents.values()) a.close();
  if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await env.stop();
  rmSync(dir, { recursive: true, force: true });
}
