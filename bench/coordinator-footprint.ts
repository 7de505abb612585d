/**
 * The coordinator's footprint as an operator runs it: the BUILT coordinator (bin/spotkeep.js ->
 * dist/cli/main.mjs) as a child process. Targets: start-up (process start -> /healthz answers)
 * <= 300 ms, idle RSS <= 100 MiB after 60 s, with 0 and with 50 managed instances.
 *
 *   npx tsx bench/coordinator-footprint.ts [--runs 5] [--idle-seconds 60] [--instances 50] [--plain] [--node-flags=...]
 *
 * The coordinator runs with the node flags and the environment of the systemd unit
 * (docs/systemd/spotkeep-coordinator.service: a capped young generation, MALLOC_ARENA_MAX), as it
 * would in production; --plain runs it with node's defaults instead, --node-flags adds flags.
 * Start-up is measured on a fresh data dir (first start: creates the store) and on the same data
 * dir again (a restart), each --runs times; the CPU time the process used until it was ready is
 * reported beside the wall time, since wall time on a shared machine includes waiting for a core.
 * The managed instances live on an in-process localcloud (instant profile, runtime none); each
 * gets an in-process fake agent that speaks the real protocol (see test/coordinator/fake-agent.ts),
 * so the coordinator holds 50 live sessions, generations and workflows' history while it idles.
 * Writes bench/reports/coordinator-footprint.json.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Coordinator } from "../coordinator/service.js";
import { parseSpec } from "../shared/spec.js";
import { CLI, ensureBuilt } from "../test/cli/built.js";
import { FakeAgent } from "../test/coordinator/fake-agent.js";
import { coordinatorConfig, type Env, OWNER_ENV, ROOT, startEnv, until } from "../test/coordinator/harness.js";
import { benchSummary, commandLine } from "./summary.js";

// The AWS SDK warns about Node 20's end of support on every client; it is noise in the table.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
const TARGET_STARTUP_MS = 300;
const TARGET_RSS_MIB = 100;

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    "idle-seconds": { type: "string", default: "60" },
    instances: { type: "string", default: "50" },
    /** Extra node flags for the coordinator process (e.g. "--max-semi-space-size=4"), to compare. */
    "node-flags": { type: "string", default: "" },
    plain: { type: "boolean", default: false },
  },
});
const runs = Number(values.runs);
const idleSeconds = Number(values["idle-seconds"]);
const instances = Number(values.instances);
const unit = values.plain ? { flags: [], env: {} } : systemdUnitSettings();
const nodeFlags = [...unit.flags, ...values["node-flags"].split(" ").filter(Boolean)];

/** The node flags of the unit's ExecStart and its Environment= settings. */
function systemdUnitSettings(): { flags: string[]; env: Record<string, string> } {
  const text = readFileSync(join(ROOT, "docs", "systemd", "spotkeep-coordinator.service"), "utf8");
  const exec = /^ExecStart=.*?\bnode((?:\s+--\S+)*)\s+\S*bin\/spotkeep\.js/m.exec(text);
  if (!exec) throw new Error("docs/systemd/spotkeep-coordinator.service: no ExecStart running node bin/spotkeep.js");
  const env = Object.fromEntries([...text.matchAll(/^Environment=(\w+)=(\S*)$/gm)].map((m) => [m[1]!, m[2]!]));
  return { flags: exec[1]!.split(/\s+/).filter(Boolean), env };
}
if (!(runs >= 1) || !(idleSeconds >= 0) || !(instances >= 1)) throw new Error("--runs and --instances must be >= 1, --idle-seconds >= 0");

ensureBuilt();
const dir = mkdtempSync(join(tmpdir(), "spotkeep-bench-footprint-"));
const env = await startEnv(dir, 1, { runtime: "none", profile: "instant" });
const token = "test-admin-token-0123456789";

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** /proc/<pid>/status fields in KiB. */
function procStatus(pid: number): { rssKiB: number; hwmKiB: number } {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? NaN);
  return { rssKiB: field("VmRSS"), hwmKiB: field("VmHWM") };
}

/** CPU time (user + system) the process has used, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat, counted from the state field (3) here.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

interface Running {
  child: ChildProcess;
  url: string;
  readyMs: number;
  readyCpuMs: number;
  stop(): Promise<void>;
}

/** Start the built coordinator on `dataDir` and time it until /healthz answers 200. */
async function startBuilt(dataDir: string): Promise<Running> {
  const port = await freePort();
  const cfg = join(dir, `coordinator-${port}.json`);
  writeFileSync(cfg, JSON.stringify(coordinatorConfig(env, dataDir, 1, { listen: `127.0.0.1:${port}`, lostCheckIntervalMs: 15_000 })));
  const url = `http://127.0.0.1:${port}`;
  const log: string[] = [];
  const t0 = performance.now();
  const child = spawn(process.execPath, [...nodeFlags, CLI, "coordinator", "--config", cfg], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...unit.env, [OWNER_ENV]: dir },
  });
  child.stdout!.on("data", (d) => log.push(String(d)));
  child.stderr!.on("data", (d) => log.push(String(d)));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the coordinator exited with ${child.exitCode}:\n${log.join("")}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      /* not listening yet */
    }
    if (performance.now() - t0 > 30_000) throw new Error(`the coordinator did not answer /healthz within 30 s:\n${log.join("")}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  const readyMs = performance.now() - t0;
  const readyCpuMs = cpuMs(child.pid!);
  return {
    child,
    url,
    readyMs,
    readyCpuMs,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}

async function api(url: string, method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}/api/v1/${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const r = (v: number) => Math.round(v);
  return { min: r(s[0]!), p50: r(s[Math.floor((s.length - 1) / 2)]!), max: r(s.at(-1)!) };
};
const mib = (kib: number) => Math.round((kib / 1024) * 10) / 10;

async function idleFootprint(label: string, managed: number, e: Env) {
  const coord = await startBuilt(join(dir, `idle-${managed}`));
  const agents = new Map<string, FakeAgent>();
  let stopAgents = false;
  // FakeAgent needs only the coordinator's WebSocket URL; this coordinator is a child process.
  const wsTarget = { wsUrl: `${coord.url.replace(/^http/, "ws")}/agent/v1/ws` } as Coordinator;
  const spawner = (async () => {
    while (!stopAgents) {
      for (const i of e.lc.world.instances.values()) {
        if (i.state !== "running" || agents.has(i.id)) continue;
        const a = new FakeAgent(i.id, e, wsTarget);
        agents.set(i.id, a);
        a.start().catch((err) => console.error(`fake agent ${i.id}: ${(err as Error).message}`));
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    if (managed > 0) {
      const names = Array.from({ length: managed }, (_, i) => `idle-${String(i).padStart(3, "0")}`);
      for (const n of names) await api(coord.url, "POST", "instances", parseSpec(e.spec(n, { workload: false, root: false })));
      await until(
        `${managed} instances to be running`,
        async () =>
          (await api(coord.url, "GET", "instances")).instances.filter((i: { state: string }) => i.state === "running").length === managed,
        600_000,
        500,
      );
    }
    const t = Date.now();
    process.stderr.write(`${label}: idling ${idleSeconds} s\n`);
    await new Promise((r) => setTimeout(r, idleSeconds * 1000));
    const health = await (await fetch(`${coord.url}/healthz`)).json();
    const { rssKiB, hwmKiB } = procStatus(coord.child.pid!);
    return {
      managedInstances: managed,
      agentsConnected: (health as { agents?: number }).agents ?? null,
      idleSeconds: Math.round((Date.now() - t) / 1000),
      rssMiB: mib(rssKiB),
      peakRssMiB: mib(hwmKiB),
      cpuMsDuringRun: Math.round(cpuMs(coord.child.pid!)),
    };
  } finally {
    stopAgents = true;
    await spawner.catch(() => undefined);
    for (const a of agents.values()) a.close();
    await coord.stop();
  }
}

try {
  const fresh: Running[] = [];
  const restart: Running[] = [];
  for (let i = 0; i < runs; i++) {
    const dataDir = join(dir, `startup-${i}`);
    const a = await startBuilt(dataDir);
    fresh.push(a);
    await a.stop();
    const b = await startBuilt(dataDir);
    restart.push(b);
    await b.stop();
  }
  const startup = {
    freshDataDir: { wallMs: stats(fresh.map((r) => r.readyMs)), cpuMs: stats(fresh.map((r) => r.readyCpuMs)) },
    restart: { wallMs: stats(restart.map((r) => r.readyMs)), cpuMs: stats(restart.map((r) => r.readyCpuMs)) },
  };
  const idle0 = await idleFootprint("0 instances", 0, env);
  const idleN = await idleFootprint(`${instances} instances`, instances, env);
  const baselineNode = await new Promise<number>((resolve) => {
    const c = spawn(process.execPath, ["-e", "setTimeout(() => {}, 2000)"], { stdio: "ignore" });
    setTimeout(() => {
      const { rssKiB } = procStatus(c.pid!);
      c.kill();
      resolve(mib(rssKiB));
    }, 1000);
  });
  const report = {
    at: new Date().toISOString(),
    node: process.version,
    entry: "bin/spotkeep.js coordinator (dist/cli/main.mjs)",
    nodeFlags,
    environment: unit.env,
    targets: { startupMs: TARGET_STARTUP_MS, idleRssMiB: TARGET_RSS_MIB },
    startup,
    idle: [idle0, idleN],
    baselineNodeRssMiB: baselineNode,
    met: {
      startup: startup.restart.wallMs.p50 <= TARGET_STARTUP_MS && startup.freshDataDir.wallMs.p50 <= TARGET_STARTUP_MS,
      idleRss: idle0.rssMiB <= TARGET_RSS_MIB && idleN.rssMiB <= TARGET_RSS_MIB,
    },
  };
  mkdirSync(join(ROOT, "bench", "reports"), { recursive: true });
  const summary = benchSummary({
    benchmark: "coordinator-footprint",
    measures: `the built coordinator: start-up to /healthz (p50), idle RSS after ${idle0.idleSeconds} s with 0 and ${instances} instances`,
    command: commandLine("bench/coordinator-footprint.ts"),
    results: [
      {
        name: "start-up, fresh data dir",
        measured: startup.freshDataDir.wallMs.p50,
        unit: "ms",
        target: { op: "<=", value: TARGET_STARTUP_MS },
      },
      { name: "start-up, restart", measured: startup.restart.wallMs.p50, unit: "ms", target: { op: "<=", value: TARGET_STARTUP_MS } },
      ...[idle0, idleN].map((r) => ({
        name: `idle RSS, ${r.managedInstances} instances`,
        measured: r.rssMiB,
        unit: "MiB",
        target: { op: "<=" as const, value: TARGET_RSS_MIB },
      })),
    ],
  });
  writeFileSync(join(ROOT, "bench", "reports", "coordinator-footprint.json"), JSON.stringify({ summary, ...report }, null, 2));
  const row = (what: string, value: string, target: string, ok: boolean) => [what, value, target, ok ? "ok" : "MISSED"];
  const rows = [
    ["MEASURE", "VALUE", "TARGET", ""],
    row(
      "start-up, fresh data dir (p50/min/max)",
      `${startup.freshDataDir.wallMs.p50}/${startup.freshDataDir.wallMs.min}/${startup.freshDataDir.wallMs.max} ms (cpu ${startup.freshDataDir.cpuMs.p50} ms)`,
      `<= ${TARGET_STARTUP_MS} ms`,
      startup.freshDataDir.wallMs.p50 <= TARGET_STARTUP_MS,
    ),
    row(
      "start-up, restart (p50/min/max)",
      `${startup.restart.wallMs.p50}/${startup.restart.wallMs.min}/${startup.restart.wallMs.max} ms (cpu ${startup.restart.cpuMs.p50} ms)`,
      `<= ${TARGET_STARTUP_MS} ms`,
      startup.restart.wallMs.p50 <= TARGET_STARTUP_MS,
    ),
    ...[idle0, idleN].map((r) =>
      row(
        `idle RSS after ${r.idleSeconds} s, ${r.managedInstances} instances`,
        `${r.rssMiB} MiB (peak ${r.peakRssMiB}, ${r.agentsConnected} agents)`,
        `<= ${TARGET_RSS_MIB} MiB`,
        r.rssMiB <= TARGET_RSS_MIB,
      ),
    ),
    ["empty node process RSS (for scale)", `${baselineNode} MiB`, "", ""],
    [
      "coordinator runs with",
      [...nodeFlags, ...Object.entries(unit.env).map(([k, v]) => `${k}=${v}`)].join(" ") || "node's defaults",
      "",
      "",
    ],
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows)
    console.log(
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    );
  console.log(`wrote bench/reports/coordinator-footprint.json`);
} finally {
  await env.stop();
  rmSync(dir, { recursive: true, force: true });
}
