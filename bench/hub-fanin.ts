/**
 * Coordinator fan-in (targets: 20,000 agents with heartbeats, p99 handling <= 50 ms, the
 * coordinator within one core; RSS reported).
 *
 * A real coordinator runs as a child process (`spotkeep coordinator --config …`, so its CPU and
 * RSS are its own) on a store prepared through coordinator/db/queries.ts with --agents running
 * stateful instances, each with a live generation. This process then opens --agents WebSocket
 * sessions to its agent hub; each passes the hub's authentication like a real agent: a `hello`
 * with an identity document signed by the key whose certificate the coordinator pins
 * (identityCertificate), naming that generation's instance id. After the welcome each session
 * sends a heartbeat every welcome.config.heartbeatMs (or --heartbeat-ms), starting at a random
 * phase, and we measure heartbeat sent -> ack received (client-side, so it includes this
 * process's own event-loop delay, reported alongside), and sample the coordinator's /proc.
 *
 * Each session connects from its own loopback address (127.2.x.y: all of 127.0.0.0/8 is loopback
 * on Linux), as each instance has its own address: the hub caps sessions before hello per source,
 * and one source address has only ~28,000 ephemeral ports towards one listener.
 *
 * The coordinator's EC2 endpoint points at a closed local port and its lost-instance sweep is set
 * to an hour, so nothing leaves the host and no workflow starts during the run.
 * Writes bench/reports/hub-fanin-<agents>.json and prints a table. Not a test: nothing is asserted.
 *
 *   npx tsx bench/hub-fanin.ts [--agents 5000] [--seconds 60] [--heartbeat-ms <welcome's>] [--connect-batch 100]
 *
 * Needs --agents + 256 file descriptors in each of the two processes: the script re-runs itself
 * under `ulimit -n` when the soft limit is too low (and says so if the hard limit is too low). A
 * container without CAP_SYS_RESOURCE cannot raise its hard limit even as root: with a hard limit of
 * 20,000, 19,700 agents is the most that fits (the coordinator's /healthz then reports nearLimit).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import WebSocket from "ws";
import { newMessageId } from "../shared/protocol.js";
import { parseSpec } from "../shared/spec.js";
import { SqliteStore } from "../coordinator/db/sqlite/index.js";
import { loadOrCreateSigner } from "../localcloud/imds/identity.js";
import { ROOT } from "../test/coordinator/harness.js";
import { machine, machineAfter, type TargetResult } from "./lib/machine.js";

const { values } = parseArgs({
  options: {
    agents: { type: "string", default: "5000" },
    seconds: { type: "string", default: "60" },
    "heartbeat-ms": { type: "string" },
    "connect-batch": { type: "string", default: "100" },
  },
});
const posInt = (name: string, v: string | undefined, max: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max) throw new Error(`--${name} must be an integer 1..${max}, got ${JSON.stringify(v)}`);
  return n;
};
const agents = posInt("agents", values.agents, 20_000);
const seconds = posInt("seconds", values.seconds, 600);
const heartbeatOverride = values["heartbeat-ms"] === undefined ? null : posInt("heartbeat-ms", values["heartbeat-ms"], 300_000);
const connectBatch = posInt("connect-batch", values["connect-batch"], 1000);
const TARGET_P99_MS = 50;
const TARGET_CPU_PERCENT = 100;

// ---------- file descriptors: each side holds one socket per agent ----------
// Each process holds one socket per agent plus its own files (the coordinator about 40 at idle).
const needFds = agents + 256;
const softFds = Number(execFileSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).trim()) || 0;
if (softFds < needFds && process.env.SPOTKEEP_BENCH_ULIMIT !== "raised") {
  console.log(`raising the open-files limit from ${softFds} to ${needFds} (ulimit -n) and re-running`);
  const r = spawnSync(
    "sh",
    ["-c", `ulimit -n ${needFds} && exec "$0" "$@"`, process.execPath, ...process.execArgv, ...process.argv.slice(1)],
    { stdio: "inherit", env: { ...process.env, SPOTKEEP_BENCH_ULIMIT: "raised" } },
  );
  if (r.status !== 0 && r.status !== null)
    console.log(`(if the hard limit is below ${needFds}, run as a user allowed \`ulimit -n ${needFds}\`, or pass a smaller --agents)`);
  process.exit(r.status ?? 1);
}
if (softFds < needFds)
  throw new Error(`open-files limit is ${softFds}, ${needFds} needed for ${agents} agents: raise \`ulimit -n\` or pass a smaller --agents`);

// ---------- /proc sampling of the coordinator ----------
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
function sample(pid: number): { cpuTicks: number; rssKiB: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return { cpuTicks: Number(fields[11]) + Number(fields[12]), rssKiB: rss ? Number(rss[1]) : 0 };
  } catch {
    return null;
  }
}

// ---------- set-up: signer, store, coordinator ----------
const dir = mkdtempSync(join(tmpdir(), "spotkeep-fanin-bench-"));
const dataDir = join(dir, "coord");
mkdirSync(dataDir);
const sockets: WebSocket[] = [];
let coordinator: ChildProcess | null = null;
let cleaned = false;
async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  for (const ws of sockets) ws.terminate();
  const c = coordinator;
  if (c?.pid && c.exitCode === null && c.signalCode === null) {
    const gone = new Promise((r) => c.once("exit", r));
    try {
      process.kill(-c.pid, "SIGTERM");
    } catch {
      /* already gone */
    }
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    try {
      process.kill(-c.pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  rmSync(dir, { recursive: true, force: true });
}
process.once("SIGINT", () => void cleanup().finally(() => process.exit(130)));

interface Agent {
  instanceId: string;
  localAddress: string;
  hello: string;
  ws?: WebSocket;
  welcomed?: Promise<number>;
  timer?: NodeJS.Timeout;
  inflight: Map<string, number>;
  seq: number;
}

try {
  const signer = await loadOrCreateSigner(join(dir, "identity"));
  const instanceId = (i: number) => `i-${(0xb0000000 + i).toString(16).padStart(17, "0")}`;
  const spec = (name: string) =>
    parseSpec({ name, launch: { imageId: "ami-0123456789abcdef0", instanceTypes: ["m5.large"], subnetIds: ["subnet-0123456789abcdef0"] } });
  const store = SqliteStore.open(join(dataDir, "coordinator.sqlite"));
  await store.tx(async (t) => {
    for (let i = 0; i < agents; i++) {
      const name = `fanin-${i}`;
      await t.instances.insert(name, spec(name), "running");
      await t.generations.ensure(name, 1, "wf-fanin-bench");
      await t.generations.recordLaunch(name, 1, {
        ec2InstanceId: instanceId(i),
        instanceType: "m5.large",
        availabilityZone: "us-east-1a",
        market: "spot",
        privateIp: null,
      });
      await t.generations.markLive(name, 1);
      await t.instances.setCurrentGeneration(name, 1);
    }
  });
  await store.close();

  const configFile = join(dir, "coordinator.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      listen: "127.0.0.1:0",
      dataDir,
      identityCertificate: signer.certificatePem,
      ec2Endpoint: "http://127.0.0.1:9",
      lostCheckIntervalMs: 3_600_000,
      // Every simulated agent connects from loopback.
      agentSourceCheck: false,
      adminToken: "fanin-bench-admin-token-0123",
    }),
  );
  const child = spawn(process.execPath, [join(ROOT, "bin", "spotkeep.js"), "coordinator", "--config", configFile], {
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
  });
  coordinator = child;
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => void (stderr = (stderr + d.toString()).slice(-20_000)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`coordinator did not start within 60 s:\n${stderr}`)), 60_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once("exit", (code) => reject(new Error(`coordinator exited (${code}) before listening:\n${stderr}`)));
  });
  const wsUrl = `${url.replace(/^http/, "ws")}/agent/v1/ws`;
  const pid = child.pid!;
  await new Promise((r) => setTimeout(r, 1000));
  const idle = sample(pid);

  // ---------- sessions ----------
  const list: Agent[] = [];
  for (let i = 0; i < agents; i++) {
    const id = instanceId(i);
    const doc = JSON.stringify(
      {
        accountId: "000000000000",
        architecture: "x86_64",
        availabilityZone: "us-east-1a",
        imageId: "ami-0123456789abcdef0",
        instanceId: id,
        instanceType: "m5.large",
        pendingTime: new Date().toISOString(),
        privateIp: null,
        region: "us-east-1",
        version: "2017-09-30",
      },
      null,
      2,
    );
    const hello = JSON.stringify({
      v: 1,
      id: newMessageId("h"),
      type: "hello",
      identity: { document: doc, signature: signer.signRsaSha256(doc) },
      agentVersion: "bench",
      mode: "run",
      sessionSecret: "bench-session-secret-0123456789abcdefghijklmno",
    });
    list.push({ instanceId: id, localAddress: `127.2.${Math.floor(i / 250) % 250}.${(i % 250) + 1}`, hello, inflight: new Map(), seq: 0 });
  }

  let measuring = false;
  const latencies: number[] = [];
  let sentInWindow = 0;
  let closedEarly = 0;
  const closeReasons = new Map<string, number>();
  let heartbeatMs = heartbeatOverride ?? 0;

  const connect = (a: Agent): Promise<number> =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, { localAddress: a.localAddress });
      a.ws = ws;
      sockets.push(ws);
      let welcomed = false;
      ws.on("message", (data) => {
        const m = JSON.parse(data.toString()) as { type: string; ref?: string; config?: { heartbeatMs: number } };
        if (m.type === "ack" && m.ref) {
          const t = a.inflight.get(m.ref);
          if (t !== undefined) {
            a.inflight.delete(m.ref);
            if (t >= 0) latencies.push(performance.now() - t);
          }
        } else if (m.type === "welcome" && !welcomed) {
          welcomed = true;
          resolve(m.config!.heartbeatMs);
        } else if (m.type === "error") {
          reject(new Error(`${a.instanceId} refused: ${data.toString().slice(0, 300)}`));
        }
      });
      ws.once("open", () => ws.send(a.hello));
      ws.once("error", (err) => reject(new Error(`${a.instanceId}: ${err.message}`)));
      ws.once("close", (code, reason) => {
        if (cleaned) return;
        closedEarly++;
        const k = `${code} ${reason.toString()}`;
        closeReasons.set(k, (closeReasons.get(k) ?? 0) + 1);
        if (!welcomed) reject(new Error(`${a.instanceId}: closed before welcome (${k})`));
      });
    });

  const m0 = machine();
  const tConnect = Date.now();
  for (let i = 0; i < list.length; i += connectBatch) {
    const got = await Promise.all(list.slice(i, i + connectBatch).map(connect));
    if (!heartbeatMs) heartbeatMs = got[0]!;
  }
  const connectSeconds = (Date.now() - tConnect) / 1000;
  const afterConnect = sample(pid);
  const health = (await (await fetch(`${url}/healthz`)).json()) as { agents?: number; openFiles?: Record<string, unknown> };

  // Heartbeats like the agent's link: every heartbeatMs from a random phase.
  const beat = (a: Agent) => {
    const id = newMessageId("hb");
    a.inflight.set(id, measuring ? performance.now() : -1);
    if (measuring) sentInWindow++;
    a.ws!.send(JSON.stringify({ v: 1, id, type: "heartbeat", seq: a.seq++, uptimeMs: a.seq * heartbeatMs }));
  };
  for (const a of list) {
    a.timer = setTimeout(() => {
      beat(a);
      a.timer = setInterval(() => beat(a), heartbeatMs);
    }, Math.random() * heartbeatMs);
  }
  // Warm-up: one full heartbeat round before the window opens.
  await new Promise((r) => setTimeout(r, heartbeatMs + 1000));
  // The histogram records whole timer intervals: subtract the resolution to get the delay.
  const LOOP_RESOLUTION_MS = 5;
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  loopDelay.enable();
  measuring = true;
  const samples: Array<{ cpuTicks: number; rssKiB: number; t: number }> = [];
  const t0 = Date.now();
  while (Date.now() - t0 < seconds * 1000) {
    const s = sample(pid);
    if (!s) throw new Error(`coordinator exited during the benchmark:\n${stderr}`);
    samples.push({ ...s, t: Date.now() });
    await new Promise((r) => setTimeout(r, 1000));
  }
  measuring = false;
  for (const a of list) clearInterval(a.timer);
  // Let the last acks arrive, then count what never came back.
  await new Promise((r) => setTimeout(r, 2000));
  loopDelay.disable();
  const unacked = list.reduce((n, a) => n + [...a.inflight.values()].filter((t) => t >= 0).length, 0);

  const first = samples[0]!;
  const last = samples.at(-1)!;
  const wallS = (last.t - first.t) / 1000;
  const cpuPct = ((last.cpuTicks - first.cpuTicks) / CLK_TCK / wallS) * 100;
  const rss = samples.map((s) => s.rssKiB / 1024);
  latencies.sort((x, y) => x - y);
  const pct = (p: number) => +(latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)] ?? NaN).toFixed(2);
  const p99 = pct(0.99);
  const cpuRounded = +cpuPct.toFixed(1);
  const targets: TargetResult[] = [
    {
      what: "sessions connected and kept",
      target: `${agents} of ${agents}`,
      measured: Math.min(health.agents ?? 0, agents - closedEarly),
      pass: health.agents === agents && closedEarly === 0,
    },
    { what: "heartbeats left unacked", target: "0", measured: unacked, pass: unacked === 0 },
    { what: "heartbeat -> ack p99, ms", target: `<= ${TARGET_P99_MS}`, measured: p99, pass: p99 <= TARGET_P99_MS },
    {
      what: "coordinator CPU, % of a core",
      target: `<= ${TARGET_CPU_PERCENT}`,
      measured: cpuRounded,
      pass: cpuRounded <= TARGET_CPU_PERCENT,
    },
  ];
  const report = {
    name: `hub-fanin-${agents}`,
    description: `${agents} agents holding sessions and sending heartbeats to the built coordinator`,
    at: new Date().toISOString(),
    date: new Date().toISOString(),
    machine: machineAfter(m0),
    targets,
    pass: targets.every((t) => t.pass),
    node: process.version,
    agents,
    connected: health.agents ?? null,
    heartbeatMs,
    heartbeatsPerSecond: +(latencies.length / wallS).toFixed(1),
    seconds: +wallS.toFixed(1),
    connectSeconds,
    heartbeats: { sent: sentInWindow, acked: latencies.length, unacked },
    sessionsClosedEarly: closedEarly,
    closeReasons: Object.fromEntries(closeReasons),
    handlingMs: { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), p999: pct(0.999), max: +(latencies.at(-1) ?? NaN).toFixed(2) },
    /** The clients' own event-loop delay: it is inside every measured latency. */
    clientEventLoopDelayMs: {
      p99: +Math.max(0, loopDelay.percentile(99) / 1e6 - LOOP_RESOLUTION_MS).toFixed(2),
      max: +Math.max(0, loopDelay.max / 1e6 - LOOP_RESOLUTION_MS).toFixed(2),
    },
    /** The host is shared: a load average above its cores means other work competed for the CPU. */
    host: { cores: m0.cores, loadAverage1m: { before: m0.loadAverage1m.before, after: +loadavg()[0]!.toFixed(2) } },
    coordinator: {
      cpuPercentOfCore: cpuRounded,
      /** Descriptors open after every session connected, and the limits the coordinator ran under. */
      openFiles: health.openFiles ?? null,
      rssMiB: {
        idle: idle ? +(idle.rssKiB / 1024).toFixed(1) : null,
        afterConnect: afterConnect ? +(afterConnect.rssKiB / 1024).toFixed(1) : null,
        max: +Math.max(...rss).toFixed(1),
        avg: +(rss.reduce((x, y) => x + y, 0) / rss.length).toFixed(1),
      },
    },
    target: { p99Ms: TARGET_P99_MS, met: p99 <= TARGET_P99_MS && unacked === 0 && closedEarly === 0 },
  };
  mkdirSync(join(ROOT, "bench", "reports"), { recursive: true });
  writeFileSync(join(ROOT, "bench", "reports", `${report.name}.json`), `${JSON.stringify(report, null, 2)}\n`);
  const rows: Array<[string, string, string]> = [
    ["agent sessions", `${report.connected ?? "?"} / ${agents}`, `connected in ${connectSeconds.toFixed(1)} s`],
    ["heartbeats", `${report.heartbeatsPerSecond}/s`, `every ${heartbeatMs} ms per agent`],
    ["acked / sent (window)", `${latencies.length} / ${sentInWindow}`, unacked ? `${unacked} UNACKED` : "all acked"],
    ["handling p50", `${report.handlingMs.p50} ms`, "sent -> ack"],
    ["handling p99", `${report.handlingMs.p99} ms`, `<= ${TARGET_P99_MS} ms`],
    ["handling p99.9 / max", `${report.handlingMs.p999} / ${report.handlingMs.max} ms`, ""],
    ["client loop delay p99", `${report.clientEventLoopDelayMs.p99} ms`, "included above"],
    ["coordinator CPU", `${report.coordinator.cpuPercentOfCore}% of a core`, ""],
    ["coordinator RSS", `${report.coordinator.rssMiB.max} MiB max`, `idle ${report.coordinator.rssMiB.idle} MiB`],
    [
      "measured",
      `${report.seconds} s`,
      `host load ${report.host.loadAverage1m.before} -> ${report.host.loadAverage1m.after} on ${report.host.cores} cores`,
    ],
  ];
  console.log(`coordinator fan-in: ${agents} agents, heartbeat every ${heartbeatMs} ms`);
  for (const [a, b, c] of rows) console.log(`${a.padEnd(24)} ${b.padEnd(22)} ${c}`);
  if (closedEarly) console.log(`sessions closed during the run: ${JSON.stringify(report.closeReasons)}`);
  for (const t of targets) console.log(`${t.pass ? "PASS" : "FAIL"}  ${t.what}: ${t.measured} (target ${t.target})`);
  console.log(`report: bench/reports/${report.name}.json`);
} finally {
  await cleanup();
}
