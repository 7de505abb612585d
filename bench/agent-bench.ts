/**
 * Agent footprint benchmark (targets: average RSS <= 55 MiB, idle CPU <= 0.5% of a core, bundle <= 2 MiB).
 * Runs ONE bundled agent (dist/spotkeep-agent.js, built if missing) with the node
 * flags of its systemd unit (AGENT_NODE_FLAGS; --node-flags overrides) in run mode
 * polling a fake IMDS every 1 s, connected to a test coordinator (heartbeats every 5 s), for
 * --seconds (default 60), sampling /proc/<pid> every second. Writes bench/reports/agent.json and
 * prints a table ending with whether every target is met. Not a test: nothing is asserted. The IMDS
 * token PUTs and connections are reported beside: the agent keeps one token and one connection.
 *
 *   npx tsx bench/agent-bench.ts [--seconds 60] [--poll-ms 1000] [--node-flags "--flag ..."]
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { AGENT_NODE_FLAGS } from "../agent/deploy/bootstrap.js";
import { instancePaths, startFakeImds } from "../test/agent/fake-imds.js";
import { startFakeCoordinator } from "../test/agent/fake-coordinator.js";
import { benchSummary, commandLine } from "./summary.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  const v = i >= 0 ? Number(args[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number`);
  return v;
};
const seconds = flag("--seconds", 60);
const pollMs = flag("--poll-ms", 1000);
const nodeFlagsAt = args.indexOf("--node-flags");
/** Node flags for the agent process: those of its systemd unit unless given, e.g. --node-flags "" for none. */
const nodeFlags = (nodeFlagsAt >= 0 ? (args[nodeFlagsAt + 1] ?? "") : AGENT_NODE_FLAGS).split(" ").filter(Boolean);

const bundle = join(root, "dist", "spotkeep-agent.js");
if (!existsSync(bundle)) execFileSync(process.execPath, [join(root, "scripts", "build.mjs")], { stdio: "inherit" });
const bundleBytes = statSync(bundle).size;

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
function sample(pid: number): { cpuTicks: number; rssKiB: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpuTicks = Number(fields[11]) + Number(fields[12]); // utime + stime
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return { cpuTicks, rssKiB: rss ? Number(rss[1]) : 0 };
  } catch {
    return null;
  }
}

const imds = await startFakeImds(instancePaths());
const coord = await startFakeCoordinator();
coord.welcomeConfig.pollIntervalMs = pollMs;
const work = mkdtempSync(join(tmpdir(), "spotkeep-agent-bench-"));
mkdirSync(join(work, "dev"));
const child = spawn(process.execPath, [...nodeFlags, bundle, "run"], {
  env: {
    PATH: process.env.PATH,
    AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
    SPOTKEEP_COORDINATOR: coord.url,
    SPOTKEEP_DEV_DIR: join(work, "dev"),
    SPOTKEEP_STATE_DIR: join(work, "state"),
    SPOTKEEP_POLL_INTERVAL_MS: String(pollMs),
    SPOTKEEP_LOG_LEVEL: "warn",
  },
  stdio: "ignore",
});
const pid = child.pid!;
try {
  await coord.waitFor((m) => m.type === "ready", 30_000);
  const warmup = 3;
  await new Promise((r) => setTimeout(r, warmup * 1000));
  const samples: Array<{ t: number; cpuTicks: number; rssKiB: number }> = [];
  const reqBefore = imds.requests.length;
  const t0 = Date.now();
  while (Date.now() - t0 < seconds * 1000) {
    const s = sample(pid);
    if (!s) throw new Error("agent exited during the benchmark");
    samples.push({ t: Date.now(), ...s });
    await new Promise((r) => setTimeout(r, 1000));
  }
  const last = sample(pid) ?? samples.at(-1)!;
  const first = samples[0]!;
  const wallS = (Date.now() - first.t) / 1000;
  const cpuS = (last.cpuTicks - first.cpuTicks) / CLK_TCK;
  const rss = samples.map((s) => s.rssKiB / 1024);
  const report = {
    when: new Date().toISOString(),
    node: process.version,
    nodeFlags,
    seconds: Math.round(wallS),
    pollIntervalMs: pollMs,
    bundleBytes,
    bundleMiB: +(bundleBytes / 1024 / 1024).toFixed(3),
    rssMiB: {
      max: +Math.max(...rss).toFixed(1),
      avg: +(rss.reduce((a, b) => a + b, 0) / rss.length).toFixed(1),
      last: +(rss.at(-1) ?? 0).toFixed(1),
    },
    cpuPercentOfCore: +((cpuS / wallS) * 100).toFixed(3),
    imdsRequestsPerSecond: +((imds.requests.length - reqBefore) / wallS).toFixed(2),
    imdsTokenPuts: imds.tokenPuts,
    imdsConnections: imds.connections,
    heartbeats: coord.raw.filter((m) => m.type === "heartbeat").length,
    targets: { rssAvgMiB: 55, cpuPercentOfCore: 0.5, bundleMiB: 2 },
  };
  mkdirSync(join(root, "bench", "reports"), { recursive: true });
  const summary = benchSummary({
    benchmark: "agent",
    measures: `one bundled agent polling IMDS every ${pollMs} ms for ${report.seconds} s: bundle size, RSS, idle CPU`,
    command: commandLine("bench/agent-bench.ts"),
    results: [
      { name: "bundle", measured: report.bundleMiB, unit: "MiB", target: { op: "<=", value: report.targets.bundleMiB } },
      { name: "RSS avg", measured: report.rssMiB.avg, unit: "MiB", target: { op: "<=", value: report.targets.rssAvgMiB } },
      { name: "RSS max", measured: report.rssMiB.max, unit: "MiB", target: null },
      { name: "idle CPU", measured: report.cpuPercentOfCore, unit: "%", target: { op: "<=", value: report.targets.cpuPercentOfCore } },
      { name: "IMDS token PUTs", measured: report.imdsTokenPuts, unit: "", target: null },
      { name: "IMDS connections", measured: report.imdsConnections, unit: "", target: null },
    ],
  });
  writeFileSync(join(root, "bench", "reports", "agent.json"), `${JSON.stringify({ summary, ...report }, null, 2)}\n`);
  const rows: Array<[string, string, string]> = [
    ["bundle size", `${report.bundleMiB} MiB`, "<= 2 MiB"],
    ["RSS avg / max", `${report.rssMiB.avg} / ${report.rssMiB.max} MiB`, "avg <= 55 MiB"],
    ["CPU (idle, 1 s polling)", `${report.cpuPercentOfCore}% of a core`, "<= 0.5%"],
    ["IMDS requests/s", String(report.imdsRequestsPerSecond), "action each poll, 2 more every 5th"],
    ["IMDS token PUTs", String(report.imdsTokenPuts), "1 (cached)"],
    ["IMDS connections", String(report.imdsConnections), "1 (kept alive)"],
    ["measured", `${report.seconds} s`, ""],
  ];
  for (const [a, b, c] of rows) console.log(`${a.padEnd(26)} ${b.padEnd(24)} ${c}`);
  const missed = summary.results.filter((r) => r.met === false).map((r) => r.name);
  console.log(missed.length ? `targets NOT met: ${missed.join(", ")}` : "targets met: bundle, RSS avg, idle CPU");
  console.log(`report: bench/reports/agent.json`);
} finally {
  child.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 300));
  if (child.exitCode === null) child.kill("SIGKILL");
  await coord.close();
  await imds.close();
  rmSync(work, { recursive: true, force: true });
}
