/**
 * How long a process-level test may wait for a state, derived from the model it runs in rather
 * than picked as a wall-clock constant:
 *
 *   budget = Σ model bounds × time scale × SCHEDULING_SLACK + process starts × PROCESS_START_MS + POLL_SLACK_MS
 *
 * - model bounds: localcloud's latency profile (what each EC2 transition takes, in model ms) and the
 *   coordinator's own documented bounds (the longest spot notice, the quiesce budget, the agent's
 *   reconnect cap), summed along the path the runbook takes, including its slowest documented
 *   fallback;
 * - process starts: real processes whose start does not scale with the model (a coordinator, an
 *   agent and its workload on a new generation), each allowed PROCESS_START_MS on a loaded 2-core
 *   machine.
 *
 * A budget carries its terms, so a test that gives up says what it allowed and why.
 */
import { CUTOVER_RESERVE_MS } from "../../coordinator/workflow/runbooks/cutover.js";
import { MAX_NOTICE_MS } from "../../coordinator/workflow/runbooks/replace.js";
import { type LatencyProfile, PROFILES, replacementCriticalPath } from "../../localcloud/profiles.js";

/**
 * Real ms one process start may take: node, the coordinator's bundle and its store, or an agent with
 * its restore. About 1 s on an idle machine of this kind; 4 s was seen with a load average of 23
 * (a full suite beside other work), so 6 s.
 */
export const PROCESS_START_MS = 6_000;
/** Model time runs on timers and polls that a busy event loop serves late: this much more real time. */
export const SCHEDULING_SLACK = 2;
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
}

export function budget(p: BudgetParts): Budget {
  const model = Object.entries(p.model ?? {});
  const starts = Object.entries(p.starts ?? {});
  const modelMs = model.reduce((a, [, ms]) => a + ms, 0);
  const startCount = starts.reduce((a, [, n]) => a + n, 0);
  const ms = Math.ceil(modelMs * p.scale * SCHEDULING_SLACK + startCount * PROCESS_START_MS + POLL_SLACK_MS);
  const terms = [
    ...(model.length
      ? [`model ${model.map(([k, v]) => `${k} ${v / 1000} s`).join(" + ")} = ${modelMs / 1000} s × scale ${p.scale} × ${SCHEDULING_SLACK}`]
      : []),
    ...(starts.length ? [`${starts.map(([k, n]) => `${n} ${k}`).join(" + ")} start(s) × ${PROCESS_START_MS / 1000} s`] : []),
    `${POLL_SLACK_MS / 1000} s polling`,
  ];
  return { ms, terms };
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

export type RunbookKind = "create" | "replace" | "replace-mbb" | "recycle" | "pause" | "resume";

/**
 * Model bounds of a whole runbook in the realistic profile, for the specs the coordinator suites
 * create (one data volume, same ENI; root persistence unless `root: false`), with its slowest
 * documented fallback.
 */
export function runbookModel(kind: RunbookKind, o: { hooksTimeoutSeconds: number; root: boolean }): Record<string, number> {
  const p = PROFILES.realistic;
  const launch = { "launch call": p.runInstancesCall, "pending → running": p.pendingToRunning, boot: p.bootToUserData };
  const capture: Record<string, number> = o.root ? { "root snapshot": snapshot(p, ROOT_GIB), image: p.image } : {};
  switch (kind) {
    case "create":
      return { "create volume": p.createVolume, "attach ENI": p.attachEni, ...launch, "attach volume": p.attachVolume };
    case "replace":
    case "recycle":
      return {
        quiesce: quiesceBound(o.hooksTimeoutSeconds),
        ...capture,
        "replacement critical path": replacementCriticalPath(p),
        "delete old root": p.deleteVolume,
      };
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
  }
}
