/**
 * Downtime and recovery of replacements on localcloud (realistic profile, process runtime, real
 * agent), in model seconds (real seconds / time scale), against the profile's critical path
 * (target for reattach + same ENI: downtime <= 1.05x that path).
 *
 *   npx tsx bench/coordinator-downtime.ts [--time-scale 0.05] [--mode reattach|snapshot] [--count 1] [--root true|false]
 *                                         [--network primary|secondary]
 *
 * --network secondary: make-before-break (the stable ENI at device index 1; reattach, no root
 * persistence); the critical path is then the cutover's: detach + attach (quiesce and mount on top).
 *
 * Writes bench/reports/coordinator-downtime.json and prints a table. At small time scales fixed
 * real costs (node start-up of the agent, SQLite, HTTP) are magnified by 1/timeScale; the figure
 * of record is a run at --time-scale 1.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseSpec } from "../shared/spec.js";
import { cutoverCriticalPath, PROFILES, replacementCriticalPath } from "../localcloud/index.js";
import { ensureAgentBundle, inProcessCoordinator, startEnv, until, ROOT } from "../test/coordinator/harness.js";

const { values } = parseArgs({
  options: {
    "time-scale": { type: "string", default: "0.05" },
    mode: { type: "string", default: "reattach" },
    count: { type: "string", default: "1" },
    root: { type: "string", default: "true" },
    throttle: { type: "string", default: "true" },
    network: { type: "string", default: "primary" },
  },
});
const secondary = values.network === "secondary";
if (values.network !== "primary" && !secondary) throw new Error("--network must be primary or secondary");
if (secondary && values.mode === "snapshot") throw new Error("--network secondary needs --mode reattach");
const root = values.root !== "false" && !secondary;
const scale = Number(values["time-scale"]);
const count = Number(values.count);
const mode = values.mode === "snapshot" ? "snapshot" : "reattach";
if (!(scale > 0) || !(count >= 1)) throw new Error("--time-scale must be > 0 and --count >= 1");

ensureAgentBundle();
const dir = mkdtempSync(join(tmpdir(), "spotkeep-bench-"));
const env = await startEnv(dir, scale, { throttle: values.throttle !== "false" });
const coord = await inProcessCoordinator(env, join(dir, "coord"), scale);
const specFor = (n: string) => {
  const s = env.spec(n, { dataMethod: mode, root });
  return secondary
    ? { ...s, persistence: { ...s.persistence, network: { privateIp: "same-eni" as const, attach: "secondary" as const } } }
    : s;
};
try {
  const names = Array.from({ length: count }, (_, i) => `bench-${i}`);
  const created = await Promise.all(
    names.map(async (n) => coord.engine.wait((await coord.views.createInstance(parseSpec(specFor(n)))).workflowId)),
  );
  const bad = created.find((w) => w.status !== "succeeded");
  if (bad) throw new Error(`create failed: ${bad.error}`);
  await new Promise((r) => setTimeout(r, 500));
  const t0 = Date.now();
  await Promise.all(
    names.map(async (n) =>
      env.control("POST", `instances/${(await coord.views.getInstance(n))!.instanceId}/interrupt`, {
        action: "terminate",
        noticeSeconds: 120,
      }),
    ),
  );
  const wfs = await Promise.all(
    names.map(async (n) =>
      coord.engine.wait(
        (await until("replace", async () => (await coord.store.workflows.listFor(n)).find((w) => w.kind === "replace"), 600_000)).id,
      ),
    ),
  );
  const realSeconds = (Date.now() - t0) / 1000;
  const timelines = await Promise.all(
    names.map(async (n, i) => (await coord.views.getEvents(n))!.timelines.find((t) => t.workflowId === wfs[i]!.id)!),
  );
  const downtimes = timelines.map((t) => t.downtimeSeconds ?? NaN).sort((a, b) => a - b);
  const recoveries = timelines.map((t) => t.recoverySeconds ?? NaN).sort((a, b) => a - b);
  // the profile is in ms
  const cp = (secondary ? cutoverCriticalPath(PROFILES.realistic) : replacementCriticalPath(PROFILES.realistic)) / 1000;
  const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))]!;
  const report = {
    at: new Date().toISOString(),
    timeScale: scale,
    mode,
    network: secondary ? "secondary" : "primary",
    root,
    count,
    failed: wfs.filter((w) => w.status !== "succeeded").map((w) => `${w.instance}: ${w.error}`),
    profileCriticalPathSeconds: cp,
    downtimeSeconds: { p50: pct(downtimes, 0.5), max: pct(downtimes, 1) },
    recoverySeconds: { p50: pct(recoveries, 0.5), max: pct(recoveries, 1) },
    downtimeOverCriticalPath: pct(downtimes, 0.5) / cp,
    realSecondsForAll: realSeconds,
    firstTimeline: timelines[0],
  };
  mkdirSync(join(ROOT, "bench", "reports"), { recursive: true });
  writeFileSync(join(ROOT, "bench", "reports", "coordinator-downtime.json"), JSON.stringify(report, null, 2));
  console.log(`mode ${mode}, network ${report.network}, root ${report.root}, ${count} instance(s), time scale ${scale}`);
  console.log(
    `downtime p50 ${report.downtimeSeconds.p50} s, max ${report.downtimeSeconds.max} s (model); recovery p50 ${report.recoverySeconds.p50} s; profile critical path ${cp} s; ratio ${report.downtimeOverCriticalPath.toFixed(2)}`,
  );
  console.log("steps of the first replacement (model ms):");
  for (const s of timelines[0]!.steps)
    console.log(`  ${String(s.seq).padStart(2)} ${s.name.padEnd(22)} ${String(s.durationMs ?? "-").padStart(7)}  start ${s.startedAt}`);
  console.log(`critical path: ${timelines[0]!.criticalPath.join(" -> ")}`);
  if (report.failed.length) console.log(`FAILED: ${report.failed.join("; ")}`);
} finally {
  await coord.stop();
  await env.stop();
  rmSync(dir, { recursive: true, force: true });
}
