/**
 * Notice → workflow start, the agent path and the EventBridge queue path side by side (targets:
 * notice in IMDS -> coordinator p99 <= 1.5 s; notice via EventBridge/SQS -> workflow start p99 <=
 * 2 s after delivery).
 *
 * localcloud (process runtime, real agent bundle, realistic profile) and a coordinator with
 * `events.queueUrl` run in this process at time scale 1. --count stateful instances per phase are
 * created, then each is interrupted once through the control API, one after another with a random
 * gap (so each notice lands at a random phase of its agent's 1 s IMDS poll):
 *
 *   agent   the events rule is removed: only the agent reports the notice (IMDS poll, WebSocket,
 *           EC2 confirms it, admission);
 *   queue   the rule delivers and every agent is stopped (SIGSTOP) first: only the queue reports it
 *           (localcloud puts the event in the queue inside the control call; long poll, parse,
 *           record, admission);
 *   both    both sources alive: which came first, and by how much (notice_arrivals).
 *
 * Latency = the workflow's startedAt - the moment the control call returned (for the queue path
 * that is also the delivery into the queue). Writes bench/reports/notice-paths.json and prints a
 * table. Not a test: nothing is asserted.
 *
 *   npx tsx bench/notice-paths.ts [--count 8] [--gap-ms 250]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Coordinator } from "../coordinator/service.js";
import { ALL_DETAIL_TYPES } from "../localcloud/world/events.js";
import { parseSpec } from "../shared/spec.js";
import { type Env, ensureAgentBundle, inProcessCoordinator, ROOT, startEnv, until } from "../test/coordinator/harness.js";
import { benchSummary, commandLine } from "./summary.js";

const { values } = parseArgs({ options: { count: { type: "string", default: "8" }, "gap-ms": { type: "string", default: "250" } } });
const count = Number(values.count);
const gapMs = Number(values["gap-ms"]);
if (!Number.isInteger(count) || count < 1 || count > 50) throw new Error(`--count must be an integer 1..50, got ${values.count}`);
if (!(gapMs >= 0) || gapMs > 10_000) throw new Error(`--gap-ms must be 0..10000, got ${values["gap-ms"]}`);
const TIME_SCALE = 1;
const POLL_MS = 1000;
const TARGETS = { agentP99Ms: 1500, queueP99Ms: 2000 };
const RULE = "spotkeep-bench";

type Phase = "agent" | "queue" | "both";
interface Sample {
  phase: Phase;
  name: string;
  instanceId: string;
  latencyMs: number | null;
  first?: string;
  otherAfterMs?: number;
}

ensureAgentBundle();
const dir = mkdtempSync(join(tmpdir(), "spotkeep-bench-paths-"));
let env: Env | undefined;
let coord: Coordinator | undefined;
let stopped = false;
const stopAll = async () => {
  if (stopped) return;
  stopped = true;
  await coord?.stop().catch(() => undefined);
  await env?.stop().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
};
process.once("SIGINT", () => void stopAll().finally(() => process.exit(130)));

const pct = (xs: number[], p: number) => (xs.length ? xs[Math.min(xs.length - 1, Math.ceil(p * xs.length) - 1)]! : Number.NaN);
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { n: s.length, min: s[0] ?? Number.NaN, p50: pct(s, 0.5), p90: pct(s, 0.9), p99: pct(s, 0.99), max: s.at(-1) ?? Number.NaN };
};

try {
  const t0 = Date.now();
  env = await startEnv(dir, TIME_SCALE, { profile: "realistic" });
  const queueUrl = env.lc.sqs.createQueue("spotkeep-events").url;
  coord = await inProcessCoordinator(env, join(dir, "coord"), TIME_SCALE, { events: { queueUrl } });
  const c = coord;
  const e = env;
  const phases: Phase[] = ["agent", "queue", "both"];
  const names = phases.flatMap((p) => Array.from({ length: count }, (_, i) => ({ phase: p, name: `${p}-${i}` })));
  const created = await Promise.all(
    names.map(async ({ name }) =>
      c.engine.wait((await c.views.createInstance(parseSpec(e.spec(name, { root: false, volumes: 0, workload: false })))).workflowId),
    ),
  );
  const bad = created.find((w) => w.status !== "succeeded");
  if (bad) throw new Error(`create failed: ${bad.error}`);
  const ids = new Map<string, string>();
  for (const { name } of names) ids.set(name, (await c.views.getInstance(name))!.instanceId!);
  await until("every agent connected", () => [...ids.values()].every((id) => c.hub.isConnected(id)), 60_000);
  const setupSeconds = (Date.now() - t0) / 1000;

  const samples: Sample[] = [];
  for (const phase of phases) {
    const group = names.filter((n) => n.phase === phase);
    if (phase === "agent") e.lc.events.deleteRule(RULE);
    else e.lc.events.putRule({ name: RULE, queue: "spotkeep-events", detailTypes: [...ALL_DETAIL_TYPES] });
    if (phase === "queue") for (const { name } of group) await e.control("POST", `instances/${ids.get(name)}/agent`, { state: "stopped" });
    await new Promise((r) => setTimeout(r, 2 * POLL_MS));
    const waits: Array<Promise<void>> = [];
    for (const { name } of group) {
      const instanceId = ids.get(name)!;
      await e.control("POST", `instances/${instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
      const visible = Date.now();
      const sample: Sample = { phase, name, instanceId, latencyMs: null };
      samples.push(sample);
      waits.push(
        until(
          `the replacement of ${name}`,
          async () => (await c.store.workflows.listFor(name)).find((w) => w.kind === "replace"),
          20_000,
          5,
        )
          .then(async (w) => {
            sample.latencyMs = w.startedAt - visible;
            if (phase !== "both") return;
            const arrivals = await until(
              `both arrivals for ${name}`,
              async () => {
                const a = await c.store.noticeArrivals.list(instanceId, "spot-interruption");
                return a.length === 2 ? a : null;
              },
              10_000,
              20,
            ).catch(() => c.store.noticeArrivals.list(instanceId, "spot-interruption"));
            sample.first = arrivals[0]?.source;
            if (arrivals.length === 2) sample.otherAfterMs = arrivals[1]!.at - arrivals[0]!.at;
          })
          .catch(() => undefined),
      );
      await new Promise((r) => setTimeout(r, gapMs + Math.random() * POLL_MS));
    }
    await Promise.all(waits);
  }

  const of = (p: Phase) => samples.filter((s) => s.phase === p && s.latencyMs !== null).map((s) => s.latencyMs!);
  const both = samples.filter((s) => s.phase === "both");
  const report = {
    at: new Date().toISOString(),
    node: process.version,
    timeScale: TIME_SCALE,
    profile: "realistic",
    runtime: "process",
    countPerPhase: count,
    agentPollIntervalMs: POLL_MS,
    /** Notice visible (control call returned) -> replace workflow recorded, ms. */
    agentPathMs: stats(of("agent")),
    queuePathMs: stats(of("queue")),
    bothAliveMs: stats(of("both")),
    bothAlive: {
      firstFromAgent: both.filter((s) => s.first === "agent").length,
      firstFromQueue: both.filter((s) => s.first === "queue").length,
      secondSourceAfterMs: stats(both.flatMap((s) => (s.otherAfterMs !== undefined ? [s.otherAfterMs] : []))),
    },
    missed: samples.filter((s) => s.latencyMs === null).map((s) => s.name),
    targets: {
      ...TARGETS,
      agentMet: stats(of("agent")).p99 <= TARGETS.agentP99Ms,
      queueMet: stats(of("queue")).p99 <= TARGETS.queueP99Ms,
    },
    setupSeconds,
    host: { cores: cpus().length, loadAverage1m: +loadavg()[0]!.toFixed(2) },
    samples,
  };
  mkdirSync(join(ROOT, "bench", "reports"), { recursive: true });
  const summary = benchSummary({
    benchmark: "notice-paths",
    measures: `notice -> workflow start, agent path and EventBridge/SQS path, ${count} per phase at time scale ${TIME_SCALE}`,
    command: commandLine("bench/notice-paths.ts"),
    results: [
      { name: "agent path p99", measured: report.agentPathMs.p99, unit: "ms", target: { op: "<=", value: TARGETS.agentP99Ms } },
      { name: "queue path p99", measured: report.queuePathMs.p99, unit: "ms", target: { op: "<=", value: TARGETS.queueP99Ms } },
      { name: "both alive p99", measured: report.bothAliveMs.p99, unit: "ms", target: null },
      { name: "notices missed", measured: report.missed.length, unit: "", target: { op: "<=", value: 0 } },
    ],
  });
  writeFileSync(join(ROOT, "bench", "reports", "notice-paths.json"), `${JSON.stringify({ summary, ...report }, null, 2)}\n`);
  const line = (label: string, s: ReturnType<typeof stats>, target: string) =>
    console.log(
      `${label.padEnd(24)} ${String(s.n).padStart(3)}  ${[s.min, s.p50, s.p90, s.p99, s.max].map((v) => String(v).padStart(6)).join(" ")}  ${target}`,
    );
  console.log(`notice -> workflow start, ${count} interruptions per path, realistic profile, process runtime, time scale ${TIME_SCALE}`);
  console.log(`${"path".padEnd(24)} ${"n".padStart(3)}  ${["min", "p50", "p90", "p99", "max"].map((h) => h.padStart(6)).join(" ")}  (ms)`);
  line("agent (IMDS, confirm)", report.agentPathMs, `p99 <= ${TARGETS.agentP99Ms} ms (notice -> coordinator)`);
  line("queue (EventBridge/SQS)", report.queuePathMs, `p99 <= ${TARGETS.queueP99Ms} ms after delivery`);
  line("both alive", report.bothAliveMs, `first: agent ${report.bothAlive.firstFromAgent}, queue ${report.bothAlive.firstFromQueue}`);
  line("  second source after", report.bothAlive.secondSourceAfterMs, "");
  if (report.bothAlive.secondSourceAfterMs.n < both.length)
    console.log(
      `both alive: ${both.length - report.bothAlive.secondSourceAfterMs.n} notice(s) reached the coordinator from one source only ` +
        "(with the queue first, the replacement can quiesce and terminate the instance before its agent's next IMDS poll)",
    );
  console.log(`host load average ${report.host.loadAverage1m} on ${report.host.cores} cores`);
  if (report.missed.length) console.log(`MISSED: ${report.missed.join(", ")}`);
  console.log("report: bench/reports/notice-paths.json");
} finally {
  await stopAll();
}
