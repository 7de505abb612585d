/**
 * Downtime and recovery of replacements on localcloud (realistic profile, process runtime, real
 * agent), in model seconds (real seconds / time scale), against the profile's critical path
 * (target for reattach + same ENI: downtime <= 1.05x that path).
 *
 *   npx tsx bench/coordinator-downtime.ts [--time-scale 0.05] [--mode reattach|snapshot] [--count 1] [--root true|false]
 *                                         [--network primary|secondary] [--baseline <git ref>]
 *
 * --network secondary: make-before-break (the stable ENI at device index 1; reattach, no root
 * persistence); the critical path is then the cutover's: detach + attach (quiesce and mount on top).
 *
 * --baseline REF: first runs the same measurement on the build of commit REF (its tree from
 * `git archive`, built into a temporary directory: its coordinator, agent and test workload,
 * measured by this file), then on this tree, one after the other, and prints both side by side.
 *
 * For the first replacement the report breaks the downtime into phases on one timeline (quiesce,
 * the old instance going, launch, boot, the agent in restore mode, user-data and the agent's run
 * mode, the coordinator seeing `ready`), each against what the profile allows for it, so fixed
 * overheads show where they are.
 *
 * Writes bench/reports/coordinator-downtime.json (-secondary / -snapshot in the name for those
 * variants, so each keeps its own last figures; or --report-out) and prints a table. At small
 * time scales fixed real costs (node start-up of the agent, SQLite, HTTP) are magnified by
 * 1/timeScale; the figure of record is a run at --time-scale 1.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { parseSpec } from "../shared/spec.js";
import { cutoverCriticalPath, PROFILES, replacementCriticalPath } from "../localcloud/index.js";
import { ensureAgentBundle, inProcessCoordinator, startEnv, until, ROOT } from "../test/coordinator/harness.js";
import { benchSummary, commandLine } from "./summary.js";

const { values } = parseArgs({
  options: {
    "time-scale": { type: "string", default: "0.05" },
    mode: { type: "string", default: "reattach" },
    count: { type: "string", default: "1" },
    root: { type: "string", default: "true" },
    throttle: { type: "string", default: "true" },
    network: { type: "string", default: "primary" },
    baseline: { type: "string" },
    "report-out": { type: "string" },
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
if (values.baseline !== undefined && !/^[\w./~^-]{1,100}$/.test(values.baseline))
  throw new Error(`--baseline must be a git ref (a commit, branch or tag), got ${JSON.stringify(values.baseline)}`);
/** One report per variant, so bench:report shows the last figures of each. */
const benchmarkName = `coordinator-downtime${secondary ? "-secondary" : ""}${mode === "snapshot" ? "-snapshot" : ""}`;
const reportOut = values["report-out"] ?? join(ROOT, "bench", "reports", `${benchmarkName}.json`);
const P = PROFILES.realistic;
// the profile is in ms
const cp = (secondary ? cutoverCriticalPath(P) : replacementCriticalPath(P)) / 1000;

/** One phase of the first replacement's downtime, model ms, against what the profile allows for it. */
interface Phase {
  phase: string;
  ms: number | null;
  profileMs: number;
  overMs: number | null;
  detail?: string;
}

interface Report {
  at: string;
  build: { commit: string | null; changedFiles: number | null };
  timeScale: number;
  mode: string;
  network: string;
  root: boolean;
  count: number;
  failed: string[];
  profileCriticalPathSeconds: number;
  downtimeSeconds: { p50: number; max: number };
  recoverySeconds: { p50: number; max: number };
  downtimeOverCriticalPath: number;
  realSecondsForAll: number;
  /** Load average (1 min) before and after the run: the host is shared. */
  loadAverage1m: { before: number; after: number };
  breakdown: Phase[] | null;
  firstTimeline: unknown;
}

const gitOut = (args: string[], cwd = ROOT) => {
  try {
    return execFileSync("git", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
};

async function measure(): Promise<Report> {
  const loadBefore = +loadavg()[0]!.toFixed(2);
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
    const oldIds = await Promise.all(names.map(async (n) => (await coord.views.getInstance(n))!.instanceId!));
    const t0 = Date.now();
    await Promise.all(oldIds.map((id) => env.control("POST", `instances/${id}/interrupt`, { action: "terminate", noticeSeconds: 120 })));
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
    const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((xs.length - 1) * p))]!;
    const newId = (await coord.views.getInstance(names[0]!))?.instanceId ?? null;
    const breakdown = secondary || !newId ? null : await phases(coord, env, wfs[0]!.id, oldIds[0]!, newId);
    return {
      at: new Date().toISOString(),
      build: { commit: gitOut(["rev-parse", "--short", "HEAD"]), changedFiles: changedFiles() },
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
      loadAverage1m: { before: loadBefore, after: +loadavg()[0]!.toFixed(2) },
      breakdown,
      firstTimeline: timelines[0],
    };
  } finally {
    await coord.stop();
    await env.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Files that differ from HEAD in this tree (null outside git): a figure from a dirty tree says so. */
function changedFiles(): number | null {
  const s = gitOut(["status", "--porcelain", "--untracked-files=no"]);
  return s === null ? null : s.split("\n").filter(Boolean).length;
}

/**
 * The first replacement's downtime as consecutive phases on one timeline (the coordinator's step
 * times, the agents' reports as the coordinator recorded them, and the instant localcloud booted
 * the replacement, from its console log). The phases add up to the downtime.
 */
async function phases(
  coord: Awaited<ReturnType<typeof inProcessCoordinator>>,
  env: Awaited<ReturnType<typeof startEnv>>,
  workflowId: string,
  oldId: string,
  newId: string,
): Promise<Phase[]> {
  const steps = await coord.store.steps.list(workflowId);
  const step = (n: string) => steps.find((s) => s.name === n);
  const reports = coord.store.agentReports;
  const at = async (id: string, kind: string, ref?: string) =>
    (ref === undefined ? await reports.latest(id, kind) : await reports.get(id, kind, ref))?.at ?? null;
  let boot: number | null = null;
  try {
    const line = readFileSync(env.lc.runtime.logPath(newId), "utf8").match(/^\[localcloud\] (\S+) booting /m);
    if (line) boot = Date.parse(line[1]!);
  } catch {
    /* no console log: the boot phases stay unknown */
  }
  const quiesced = (await reports.latest(oldId, "quiesced"))?.data as { steps?: Array<{ name: string; ms: number }> } | undefined;
  const agentSteps = (quiesced?.steps ?? []).map((s) => `${s.name} ${Math.round(s.ms / scale)}`).join(", ");
  // Wall-clock instants, in timeline order.
  const t = {
    quiesceStart: step("quiesce")?.startedAt ?? null,
    quiesceEnd: step("quiesce")?.endedAt ?? null,
    waitOldStart: step("wait-old-terminated")?.startedAt ?? null,
    waitOldEnd: step("wait-old-terminated")?.endedAt ?? null,
    launchEnd: step("launch")?.endedAt ?? null,
    boot,
    helloRestore: await at(newId, "hello", "restore"),
    restored: await at(newId, "restored"),
    helloRun: await at(newId, "hello", "run"),
    ready: await at(newId, "ready"),
    restoreEnd: step("restore")?.endedAt ?? null,
  };
  const span = (a: number | null, b: number | null) => (a === null || b === null ? null : Math.round((b - a) / scale));
  const phase = (name: string, a: number | null, b: number | null, profileMs: number, detail?: string): Phase => {
    const ms = span(a, b);
    return { phase: name, ms, profileMs, overMs: ms === null ? null : ms - profileMs, ...(detail ? { detail } : {}) };
  };
  return [
    phase(
      "quiesce (preStop, sync, freeze) and its report",
      t.quiesceStart,
      t.quiesceEnd,
      0,
      agentSteps ? `agent: ${agentSteps}` : undefined,
    ),
    phase("capture the root, TerminateInstances", t.quiesceEnd, t.waitOldStart, 0),
    phase("old instance terminated, ENI free (seen)", t.waitOldStart, t.waitOldEnd, P.shuttingDownToTerminated + P.eniFree),
    phase("subnets, RunInstances", t.waitOldEnd, t.launchEnd, P.runInstancesCall),
    phase("pending -> running -> user-data starts", t.launchEnd, t.boot, P.pendingToRunning + Math.max(P.bootToUserData, P.attachVolume)),
    phase("bootstrap -> agent (restore mode) says hello", t.boot, t.helloRestore, 0),
    phase("restore plan -> volumes mounted -> restored", t.helloRestore, t.restored, 0),
    phase("user-data, agent (run mode) says hello", t.restored, t.helloRun, 0),
    phase("welcome -> ready", t.helloRun, t.ready, 0),
    phase("ready recorded -> restore step ends", t.ready, t.restoreEnd, 0),
  ];
}

/** Run this file on the build of `ref` (a temporary tree from git archive) and return its report. */
function measureBaseline(ref: string): Report & { ref: string } {
  const commit = gitOut(["rev-parse", "--short", `${ref}^{commit}`]);
  if (!commit) throw new Error(`--baseline ${ref}: not a commit in ${ROOT}`);
  const tree = mkdtempSync(join(tmpdir(), "spotkeep-baseline-tree-"));
  try {
    const tar = execFileSync("git", ["archive", "--format=tar", commit], { cwd: ROOT, maxBuffer: 1 << 30 });
    execFileSync("tar", ["-x", "-C", tree], { input: tar });
    symlinkSync(join(ROOT, "node_modules"), join(tree, "node_modules"));
    // The same measuring code on both builds.
    for (const f of ["bench/coordinator-downtime.ts", "bench/summary.ts"]) {
      mkdirSync(dirname(join(tree, f)), { recursive: true });
      copyFileSync(join(ROOT, f), join(tree, f));
    }
    const out = join(tree, "baseline-report.json");
    const args = ["--time-scale", String(scale), "--mode", mode, "--count", String(count), "--root", String(root)];
    args.push("--throttle", String(values.throttle !== "false"), "--network", secondary ? "secondary" : "primary", "--report-out", out);
    console.log(`baseline: the build of ${ref} (${commit}) in ${tree}`);
    execFileSync(process.execPath, [join(ROOT, "node_modules", "tsx", "dist", "cli.mjs"), "bench/coordinator-downtime.ts", ...args], {
      cwd: tree,
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
    });
    const report = JSON.parse(readFileSync(out, "utf8")) as Report;
    return { ...report, ref, build: { commit, changedFiles: 0 } };
  } finally {
    rmSync(tree, { recursive: true, force: true });
  }
}

const baseline = values.baseline !== undefined ? measureBaseline(values.baseline) : null;
if (baseline) console.log(`\nthis tree (${gitOut(["rev-parse", "--short", "HEAD"])}${changedFiles() ? ", with uncommitted changes" : ""})`);
const report = await measure();
const target = secondary ? null : 1.05;
const summary = benchSummary({
  benchmark: benchmarkName,
  measures: secondary
    ? "make-before-break downtime (quiesce start -> ready) on localcloud's realistic profile, model seconds"
    : "break-before-make downtime (quiesce start -> ready) on localcloud's realistic profile, over its critical path",
  command: commandLine("bench/coordinator-downtime.ts"),
  results: [
    secondary
      ? { name: "downtime p50", measured: report.downtimeSeconds.p50, unit: "s", target: { op: "<=", value: 15 } }
      : {
          name: "downtime / critical path",
          measured: round(report.downtimeOverCriticalPath, 3),
          unit: "×",
          target: { op: "<=", value: 1.05 },
        },
    ...(secondary ? [] : [{ name: "downtime p50", measured: report.downtimeSeconds.p50, unit: "s", target: null }]),
    { name: "recovery p50", measured: report.recoverySeconds.p50, unit: "s", target: null },
    { name: "failed replacements", measured: report.failed.length, unit: "", target: { op: "<=", value: 0 } },
    ...(baseline
      ? [
          {
            name: `baseline ${baseline.build.commit}: downtime${secondary ? " p50" : " / critical path"}`,
            measured: secondary ? baseline.downtimeSeconds.p50 : round(baseline.downtimeOverCriticalPath, 3),
            unit: secondary ? "s" : "×",
            target: null,
          },
        ]
      : []),
  ],
});
mkdirSync(dirname(reportOut), { recursive: true });
writeFileSync(reportOut, `${JSON.stringify({ summary, ...report, ...(baseline ? { baseline } : {}) }, null, 2)}\n`);
print(report, baseline, target);

function round(x: number, digits: number): number {
  return Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : x;
}

function print(r: Report, b: (Report & { ref: string }) | null, target: number | null): void {
  const tl = (x: Report) =>
    x.firstTimeline as { steps: Array<{ seq: number; name: string; durationMs: number | null }>; criticalPath: string[] };
  console.log(`\nmode ${r.mode}, network ${r.network}, root ${r.root}, ${r.count} instance(s), time scale ${r.timeScale}`);
  const cols = b ? [`${b.build.commit} (baseline)`, `${r.build.commit}${r.build.changedFiles ? "+changes" : ""}`] : ["this build"];
  const runs = b ? [b, r] : [r];
  const row = (label: string, cells: Array<string | number | null>) =>
    console.log(`  ${label.padEnd(52)}${cells.map((c) => String(c ?? "-").padStart(22)).join("")}`);
  row("", cols);
  row(
    "downtime p50 / max (model s)",
    runs.map((x) => `${x.downtimeSeconds.p50} / ${x.downtimeSeconds.max}`),
  );
  row(
    `downtime / critical path (${cp} s)${target ? `, target <= ${target}` : ""}`,
    runs.map((x) => x.downtimeOverCriticalPath.toFixed(3)),
  );
  row(
    "recovery p50 (model s)",
    runs.map((x) => x.recoverySeconds.p50),
  );
  row(
    "load average 1 min, before / after",
    runs.map((x) => `${x.loadAverage1m?.before ?? "-"} / ${x.loadAverage1m?.after ?? "-"}`),
  );
  console.log(
    r.breakdown
      ? "\n  downtime by phase, first replacement, model ms (in brackets: beyond what the profile allows for the phase):"
      : "\n  (downtime by phase: only for the break-before-make path, --network primary)",
  );
  const phasesOf = runs.map((x) => x.breakdown ?? []);
  for (let i = 0; i < (phasesOf.at(-1)?.length ?? 0); i++) {
    const name = phasesOf.at(-1)![i]!.phase;
    row(
      name,
      phasesOf.map((ps) => {
        const p = ps.find((x) => x.phase === name);
        return p?.ms == null ? "-" : `${p.ms} (${p.overMs! >= 0 ? "+" : ""}${p.overMs})`;
      }),
    );
  }
  runs.forEach((x, i) => {
    for (const p of x.breakdown ?? []) if (p.detail) console.log(`    ${cols[i]}: ${p.phase}: ${p.detail}`);
  });
  console.log("\n  steps of the first replacement (model ms):");
  const names = tl(r).steps.map((s) => s.name);
  for (const n of names)
    row(
      `${n}`,
      runs.map((x) => tl(x).steps.find((s) => s.name === n)?.durationMs ?? null),
    );
  console.log(`  critical path: ${tl(r).criticalPath.join(" -> ")}`);
  for (const x of runs) if (x.failed.length) console.log(`FAILED (${x.build.commit}): ${x.failed.join("; ")}`);
  console.log(`\nreport: ${reportOut}`);
}
