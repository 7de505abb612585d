/**
 * How long a process-level test may wait for a state, derived from the model it runs in rather
 * than picked as a wall-clock constant:
 *
 *   budget = Σ model bounds × time scale × SCHEDULING_SLACK + process starts × PROCESS_START_MS
 *            + workflow steps × STEP_MS + POLL_SLACK_MS
 *
 * - model bounds: localcloud's latency profile (what each EC2 transition takes, in model ms) and the
 *   coordinator's own documented bounds (the longest spot notice, the quiesce budget, the agent's
 *   reconnect cap), summed along the path the runbook takes, including its slowest documented
 *   fallback;
 * - process starts: real processes whose start does not scale with the model (a coordinator, an
 *   agent and its workload on a new generation), each allowed PROCESS_START_MS on a loaded 2-core
 *   machine;
 * - workflow steps: each step's store transaction and API round trips, which do not scale with the
 *   model either (given where a path has many steps and the model time alone would be a fraction
 *   of a second).
 *
 * A budget carries its terms, so a test that gives up says what it allowed and why.
 */
import { stepCount } from "./crash-matrix.js";
import { CUTOVER_RESERVE_MS } from "../../coordinator/workflow/runbooks/cutover.js";
import { MAX_NOTICE_MS } from "../../coordinator/workflow/runbooks/replace.js";
import { type LatencyProfile, PROFILES, replacementCriticalPath } from "../../localcloud/profiles.js";

/**
 * Real ms one process start may take on a loaded 2-core machine: node with the coordinator's bundle
 * and its store, an agent's bootstrap (download, SHA-256 check, start, hello), a workload, a hook's
 * shell. Under a second when the machine is idle; a coordinator took 4 s and an agent's first
 * hello over 10 s with a load average of 20 (a full suite beside four other test runs).
 */
export const PROCESS_START_MS = 15_000;
/** Model time runs on timers and polls that a busy event loop serves late: this much more real time. */
export const SCHEDULING_SLACK = 3;
/**
 * Real ms a workflow step costs beyond its model time: its store transaction and its EC2 API round
 * trips (localcloud answering from the same loaded machine). Near 0.1 s on an idle machine; 1 to
 * 3 s per step were seen with a load average of 16 and several cases side by side, so 1.5 s on
 * average along a path.
 */
export const STEP_MS = 1_500;
/** Polling granularity of the test and the coordinator, and the API round trips around it. */
export const POLL_SLACK_MS = 5_000;

/** The agent's reconnect backoff cap (model ms): how long a running agent may take to find a restarted coordinator. */
export const AGENT_RECONNECT_CAP_MS = 30_000;
/** The quiesce budget the runbooks give an agent: the hooks' timeout plus 30 s for sync, freeze and the reply. */
export const quiesceBound = (hooksTimeoutSeconds: number) => (hooksTimeoutSeconds + 30) * 1000;

export interface Budget {
  /** Real ms. */
  ms: number;
  /** The terms it is made of, for the message of a test that gives up. */
  terms: string[];
}

export interface BudgetParts {
  scale: number;
  /** Model-time bounds (model ms) along the path. */
  model?: Record<string, number>;
  /** Real process starts along the path, by what starts. */
  starts?: Record<string, number>;
  /** Workflow steps along the path, by runbook (each costs STEP_MS of real time on top of its model time). */
  steps?: Record<string, number>;
}

export function budget(p: BudgetParts): Budget {
  const model = Object.entries(p.model ?? {});
  const starts = Object.entries(p.starts ?? {});
  const modelMs = model.reduce((a, [, ms]) => a + ms, 0);
  const startCount = starts.reduce((a, [, n]) => a + n, 0);
  const steps = Object.entries(p.steps ?? {});
  const stepCount = steps.reduce((a, [, n]) => a + n, 0);
  const ms = Math.ceil(modelMs * p.scale * SCHEDULING_SLACK + startCount * PROCESS_START_MS + stepCount * STEP_MS + POLL_SLACK_MS);
  const terms = [
    ...(model.length
      ? [`model ${model.map(([k, v]) => `${k} ${v / 1000} s`).join(" + ")} = ${modelMs / 1000} s × scale ${p.scale} × ${SCHEDULING_SLACK}`]
      : []),
    ...(starts.length ? [`${starts.map(([k, n]) => `${n} ${k}`).join(" + ")} start(s) × ${PROCESS_START_MS / 1000} s`] : []),
    ...(steps.length ? [`${steps.map(([k, n]) => `${n} ${k}`).join(" + ")} step(s) × ${STEP_MS / 1000} s`] : []),
    `${POLL_SLACK_MS / 1000} s polling`,
  ];
  return { ms, terms };
}

/**
 * Real ms that do not scale with the model: a client's own timeouts and pacing (a test's writer
 * reconnecting and committing rows), each named.
 */
export function realTime(terms: Record<string, number>): Budget {
  const entries = Object.entries(terms);
  const ms = entries.reduce((a, [, v]) => a + v, 0);
  return { ms, terms: [`real ${entries.map(([k, v]) => `${k} ${v / 1000} s`).join(" + ")}`] };
}

/** Adds budgets (phases one after another). */
export function plus(...bs: Budget[]): Budget {
  return { ms: bs.reduce((a, b) => a + b.ms, 0), terms: bs.flatMap((b) => b.terms) };
}

export const explain = (b: Budget) => `${Math.round(b.ms / 100) / 10} s = ${b.terms.join("; ")}`;

/** Snapshot of a volume of `gib` GiB in the profile (pending → completed). */
const snapshot = (p: LatencyProfile, gib: number) => p.snapshotBase + p.snapshotPerGiB * gib;
/** The root volume of localcloud's images. */
const ROOT_GIB = 8;

export type RunbookKind =
  | "create"
  | "replace"
  | "replace-lost"
  | "replace-mbb"
  | "recycle"
  | "pause"
  | "resume"
  | "delete"
  | "import"
  | "snapshot"
  | "group-scale"
  | "group-update";

export interface RunbookShape {
  hooksTimeoutSeconds: number;
  root: boolean;
  /** How data volumes come back on a replacement: reattached (the default) or restored from a snapshot. */
  dataMethod?: "reattach" | "snapshot";
  /** Size of the data volume (GiB) a snapshot-mode replacement snapshots; 1 unless given. */
  dataGiB?: number;
  /** Members of a group (group-scale, group-update); 2 unless given. */
  members?: number;
}

/** The same bounds `n` times over (work done one after another `n` times), named so. */
function times(n: number, m: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [`${k} ×${n}`, v * n]));
}

/**
 * Model bounds of a whole runbook in the realistic profile, for the specs the coordinator suites
 * create (one data volume, same ENI; root persistence unless `root: false`), with its slowest
 * documented fallback.
 */
export function runbookModel(kind: RunbookKind, o: RunbookShape): Record<string, number> {
  const p = PROFILES.realistic;
  const launch = { "launch call": p.runInstancesCall, "pending → running": p.pendingToRunning, boot: p.bootToUserData };
  const capture: Record<string, number> = o.root ? { "root snapshot": snapshot(p, ROOT_GIB), image: p.image } : {};
  // Snapshot mode captures each data volume and creates its successor from the snapshot.
  const data: Record<string, number> =
    o.dataMethod === "snapshot" ? { "data snapshot": snapshot(p, o.dataGiB ?? 1), "volume from snapshot": p.createVolume } : {};
  const members = o.members ?? 2;
  switch (kind) {
    case "create":
      return { "create volume": p.createVolume, "attach ENI": p.attachEni, ...launch, "attach volume": p.attachVolume };
    case "replace":
    case "recycle":
      return {
        quiesce: quiesceBound(o.hooksTimeoutSeconds),
        ...capture,
        ...data,
        "replacement critical path": replacementCriticalPath(p),
        "delete old root": p.deleteVolume,
      };
    case "replace-lost": {
      // Lost without notice: no quiesce (its instance is gone), the rest as a replacement.
      const { quiesce: _q, ...rest } = runbookModel("replace", o);
      return rest;
    }
    case "replace-mbb":
      // Make-before-break waits for its replacement at most until the notice deadline less the
      // cutover reserve; past that it falls back to the break-before-make path.
      return {
        "ready-by (longest notice)": MAX_NOTICE_MS - CUTOVER_RESERVE_MS,
        "terminate unready": p.shuttingDownToTerminated,
        ...runbookModel("replace", o),
      };
    case "pause":
      return {
        quiesce: quiesceBound(o.hooksTimeoutSeconds),
        ...capture,
        terminate: p.shuttingDownToTerminated,
        "delete root": p.deleteVolume,
      };
    case "resume":
      return { ...launch, "ENI free": p.eniFree, "attach volume": p.attachVolume, "delete old root": p.deleteVolume };
    case "delete":
      // A running instance quiesces first (at most the quiesce budget: an agent that does not
      // answer is waited for that long); then terminate, and the root, the data volume and the ENI
      // (once free) go; images and snapshots are deregistered and deleted by calls that answer at once.
      return {
        quiesce: quiesceBound(o.hooksTimeoutSeconds),
        terminate: p.shuttingDownToTerminated,
        "delete root": p.deleteVolume,
        "ENI free": p.eniFree,
        "delete volume": p.deleteVolume,
      };
    case "import":
      // A clean stop, the root captured as an image, the original terminated and its ENI freed,
      // generation 1 launched on the ENI with the volumes attached, the original root deleted
      // (retention then has nothing to delete: the imported root is the only image).
      return {
        stop: p.stoppingToStopped,
        "root snapshot": snapshot(p, ROOT_GIB),
        image: p.image,
        terminate: p.shuttingDownToTerminated,
        "ENI free": p.eniFree,
        ...launch,
        "attach volume": p.attachVolume,
        "delete old root": p.deleteVolume,
      };
    case "snapshot":
      // The agent's freeze (the runbook waits 10 s for it at most), then each data volume's snapshot.
      return { freeze: 10_000, "data snapshot": snapshot(p, o.dataGiB ?? 1) };
    case "group-scale":
      // Members are created side by side: one create's bounds.
      return runbookModel("create", o);
    case "group-update":
      // Members are recycled one after another (at most one down at a time).
      return times(members, runbookModel("recycle", o));
  }
}

/**
 * Workflow steps along a whole runbook, for the same specs as runbookModel (each step's real cost
 * is STEP_MS); the step lists are the ones the crash suites enumerate.
 */
export function runbookSteps(kind: RunbookKind, o: Pick<RunbookShape, "members"> = {}): Record<string, number> {
  const members = o.members ?? 2;
  switch (kind) {
    case "create":
      return { create: stepCount("create") };
    case "replace":
    case "replace-lost":
    case "recycle":
      return { [kind === "recycle" ? "recycle" : "replace"]: stepCount("replace") };
    case "replace-mbb":
      // The make-before-break steps, then the break-before-make fallback's.
      return { "make-before-break": stepCount("replace-mbb"), replace: stepCount("replace") };
    case "pause":
      return { pause: stepCount("pause") };
    case "resume":
      return { resume: stepCount("resume") };
    case "delete":
      return { delete: stepCount("delete") };
    case "import":
      return { import: stepCount("import") };
    case "snapshot":
      return { snapshot: stepCount("snapshot") };
    case "group-scale":
      // The group's steps; its members' creates run side by side.
      return { "group-scale": 1 + 3 * members, create: stepCount("create") };
    case "group-update":
      return { "group-update": 1 + 2 * members, recycle: stepCount("recycle") * members };
  }
}

/**
 * Real process starts of a whole runbook for the same specs: a new generation starts its agent and
 * the workload, a quiesce runs the preStop hook's shell, and make-before-break may boot a
 * replacement it then gives up on.
 */
export function runbookStarts(kind: RunbookKind): Record<string, number> {
  switch (kind) {
    case "create":
    case "resume":
      return { agent: 1, workload: 1 };
    case "replace":
    case "recycle":
      return { hook: 1, agent: 1, workload: 1 };
    case "replace-lost":
      return { agent: 1, workload: 1 };
    case "replace-mbb":
      return { "unready agent": 1, hook: 1, agent: 1, workload: 1 };
    case "pause":
      return { hook: 1 };
    case "delete":
      return { hook: 1 };
    case "import":
      return { agent: 1, workload: 1 };
    case "snapshot":
      // The freeze runs in the agent already running: nothing starts.
      return {};
    case "group-scale":
      // Members start side by side: one member's starts.
      return { agent: 1, workload: 1 };
    case "group-update":
      return { hook: 2, agent: 2, workload: 2 };
  }
}
