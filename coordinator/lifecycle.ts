/**
 * The lifecycle of a stateful instance, in one place: which start is admitted from which state
 * (operator, scheduled and system starts alike), the state each workflow holds the instance in
 * while it runs and where it leaves it, and what a finished or failed workflow means for it.
 * Admission (operations.ts), scheduled tasks (tasks.ts) and the API's `allowedActions` read the
 * table below; states are written only through `enterState`/`leaveState`/`workflowEnded` here.
 *
 *   creating ──create──▶ running ◀──────────────┐
 *   importing ──import──▶ running (a rollback archives the record: the instance is as it was)
 *   running ──notice/lost──▶ replacing ──▶ running
 *   running ──pause──▶ pausing ──▶ paused ──resume──▶ resuming ──▶ running
 *   running ──recycle──▶ recycling ──▶ running
 *   running, paused, failed ──delete──▶ deleting ──▶ deleted
 *   running ──grow──▶ running (volumes grow or join live; the instance serves throughout)
 *   paused, failed ──relocate──▶ relocating ──▶ running (in another region, from its copies there)
 *   a workflow that fails before its new generation serves leaves `failed`; resume, recycle and
 *   delete start from it. A failure after that (retention, an old root's deletion) is an event.
 */
import { INSTANCE_ACTIONS, INSTANCE_STATES, type InstanceAction, type InstanceState, type Operation } from "../shared/operations.js";
import { STEP } from "../shared/steps.js";
import type { Generation, StatefulInstance, Store, StoreTx, WorkflowRecord } from "./db/store.js";

/** The workflow kinds that move one stateful instance (group workflows move a group). */
export type InstanceWorkflowKind =
  | "create"
  | "import"
  | "replace"
  | "recycle"
  | "pause"
  | "resume"
  | "delete"
  | "snapshot"
  | "grow"
  | "relocate";

/** Who asks for a start: an operator (API, CLI, console), a spec's scheduled task, or the coordinator itself. */
export type Starter = "operator" | "schedule" | "system";

export interface StartRule {
  by: Starter;
  /** The workflow it runs; null for a spec update, which runs none by itself. */
  runs: InstanceWorkflowKind | null;
  /** States it may start from. */
  from: readonly InstanceState[];
  /** Workflows that may already be moving the instance ("any": it does not wait for them). Default: none. */
  alongside?: readonly InstanceWorkflowKind[] | "any";
  /** The live generation's EC2 instance must be known (what a pause, snapshot or replacement acts on). */
  needsLiveInstance?: boolean;
  /** The instance must have data volumes (a snapshot). */
  needsDataVolumes?: boolean;
  /** A group member is changed through its group instead (its template, its size). */
  notForGroupMembers?: string;
  /** Planned work: a group may ask it to wait while other members are down (groups/admission.ts). */
  planned?: boolean;
}

/** Every state but deleting and deleted. */
const UNTIL_DELETED: readonly InstanceState[] = INSTANCE_STATES.filter((s) => s !== "deleting" && s !== "deleted");

/** Every start the coordinator admits for a stateful instance. */
export const STARTS = {
  // Operators: the API, the CLI and the console.
  pause: { by: "operator", runs: "pause", from: ["running"], needsLiveInstance: true, planned: true },
  resume: { by: "operator", runs: "resume", from: ["paused", "failed"] },
  /** From failed without a running EC2 instance there is nothing to quiesce: it runs a resume from what is kept. */
  recycle: { by: "operator", runs: "recycle", from: ["running", "failed"], planned: true },
  snapshot: { by: "operator", runs: "snapshot", from: ["running"], needsLiveInstance: true, needsDataVolumes: true },
  delete: {
    by: "operator",
    runs: "delete",
    from: ["running", "paused", "failed"],
    notForGroupMembers: "scale the group down (spotkeep group scale) or delete the group",
  },
  /**
   * Back in another region from its disaster-recovery copies there (spotkeep restore --region): the
   * usual case is a regional outage, where the generation is lost and the instance failed, or paused.
   */
  relocate: {
    by: "operator",
    runs: "relocate",
    from: ["paused", "failed"],
    notForGroupMembers: "a group's members stay in the group's region",
  },
  /** A new spec is stored whatever moves the instance (it applies at the next generation). */
  update: {
    by: "operator",
    runs: null,
    from: UNTIL_DELETED,
    alongside: "any",
    notForGroupMembers: "update the group's template (spotkeep group update)",
  },
  /**
   * An update that grows data volumes or adds new ones runs them live on the serving generation:
   * from running only, and never alongside a pause, recycle or another change (a replacement may
   * start alongside it: runbooks/grow.ts converges either way).
   */
  "update volumes": {
    by: "operator",
    runs: "grow",
    from: ["running"],
    needsLiveInstance: true,
    notForGroupMembers: "update the group's template (spotkeep group update)",
  },
  // A spec's scheduled tasks: only from the state the task is meant for.
  "scheduled pause": { by: "schedule", runs: "pause", from: ["running"], needsLiveInstance: true, planned: true },
  "scheduled resume": { by: "schedule", runs: "resume", from: ["paused"] },
  "scheduled recycle": { by: "schedule", runs: "recycle", from: ["running"], needsLiveInstance: true, planned: true },
  "scheduled snapshot": { by: "schedule", runs: "snapshot", from: ["running"], needsLiveInstance: true, needsDataVolumes: true },
  // The coordinator itself.
  /** A spot interruption or a lost instance: never delayed, and a snapshot in flight does not hold it up. */
  replace: { by: "system", runs: "replace", from: ["running"], alongside: ["snapshot", "grow"], needsLiveInstance: true },
  /** Autohealing and scheduled maintenance recycle the live generation. */
  heal: { by: "system", runs: "recycle", from: ["running"], alongside: ["snapshot"], needsLiveInstance: true, planned: true },
  /** A group's update rolls its new template over a serving member. */
  "group roll": { by: "system", runs: "recycle", from: ["running"], alongside: ["snapshot"], planned: true },
  /** A group's update brings a failed member back (a recycle when its EC2 instance still runs, else a resume). */
  "group revival": { by: "system", runs: "recycle", from: ["failed"] },
  /** An on-demand generation moves back to spot when spot has capacity. */
  "revert-to-spot": { by: "system", runs: "recycle", from: ["running"], needsLiveInstance: true, planned: true },
  /** snapshots.intervalMinutes and a rebalance recommendation with onRebalance: snapshot. */
  "periodic snapshot": { by: "system", runs: "snapshot", from: ["running"], needsLiveInstance: true, needsDataVolumes: true },
} as const satisfies Record<string, StartRule>;

export type StartName = keyof typeof STARTS;

/** The start a scheduled task of `op` is admitted as. */
export const scheduledStart = (op: Operation): StartName => `scheduled ${op}`;

/** What admission needs to know of an instance, read in the transaction that starts the work. */
export interface InstanceFacts {
  name: string;
  state: InstanceState;
  /** Workflows moving it now. */
  running: ReadonlyArray<{ id: string; kind: string }>;
  /** The live generation's EC2 instance (null when no generation is live). */
  liveInstanceId: string | null;
  dataVolumes: number;
  /** Its group, when it is a member of one. */
  group: { group: string; ordinal: number } | null;
}

/**
 * What the lifecycle table needs to know of `name`, read in the transaction that starts the work,
 * with the instance and its current generation; null when there is no such instance.
 */
export async function admission(
  t: Pick<StoreTx, "instances" | "generations" | "workflows" | "volumes" | "groups">,
  name: string,
): Promise<{ inst: StatefulInstance; g: Generation | null; facts: InstanceFacts } | null> {
  const inst = await t.instances.get(name);
  if (!inst) return null;
  const g = inst.generation > 0 ? await t.generations.get(name, inst.generation) : null;
  return { inst, g, facts: await factsOf(t, inst, g) };
}

/** The facts of a stateful instance already read, with its current generation. */
export async function factsOf(
  t: Pick<StoreTx, "workflows" | "volumes" | "groups">,
  inst: StatefulInstance,
  g: Generation | null,
): Promise<InstanceFacts> {
  const { name } = inst;
  const running = await t.workflows.runningFor(name);
  const volumes = await t.volumes.list(name);
  const member = await t.groups.memberOf(name);
  const facts: InstanceFacts = {
    name,
    state: inst.state,
    running: running.map((w) => ({ id: w.id, kind: w.kind })),
    liveInstanceId: g?.status === "live" ? g.ec2InstanceId : null,
    dataVolumes: volumes.length,
    group: member ? { group: member.group, ordinal: member.ordinal } : null,
  };
  return facts;
}

/** Why `start` cannot begin now: `conflict` (try later or from another state); null when admitted. */
export function refusalOf(start: StartName, f: InstanceFacts): string | null {
  const rule: StartRule = STARTS[start];
  const what = rule.by === "operator" ? start : `a ${start}`;
  if (rule.notForGroupMembers && f.group)
    return `${f.name} is member ${f.group.ordinal} of group ${f.group.group}: ${rule.notForGroupMembers}`;
  if (rule.alongside !== "any") {
    const alongside: readonly string[] = rule.alongside ?? [];
    const busy = f.running.find((w) => !alongside.includes(w.kind));
    if (busy) return `${f.name} is busy with ${busy.kind} ${busy.id}`;
  }
  if (!rule.from.includes(f.state))
    return rule.by === "schedule"
      ? `${f.name} is ${f.state}; a ${start} applies when it is ${rule.from.join(" or ")}`
      : `${f.name} is ${f.state}; ${what} is allowed from ${rule.from.join(", ")}`;
  if (rule.needsDataVolumes && f.dataVolumes === 0) return `${f.name} has no data volumes to snapshot`;
  // A failed instance's recycle runs from what is kept when nothing is live.
  if (rule.needsLiveInstance && !f.liveInstanceId) return `${f.name} has no live EC2 instance to ${rule.runs ?? start}`;
  return null;
}

/**
 * What the API lists as an instance's allowed actions: each operator start that `refusalOf`
 * admits now. A deleted instance allows none.
 */
export function allowedActions(f: InstanceFacts): InstanceAction[] {
  return INSTANCE_ACTIONS.filter((a) => refusalOf(a, f) === null);
}

interface WorkflowStates {
  /** While it runs (null: it leaves the state alone). */
  during: InstanceState | null;
  /** When it succeeds: its new generation serves, the pause is done, the record is deleted. */
  succeeded: InstanceState | null;
  /** When it is rolled back instead (an import that did not happen: the record is archived). */
  rolledBack?: InstanceState;
  /**
   * When it fails before its new generation serves; null: the failure is an event only. A failure
   * after the generation serves (a retention or old-root step) is an event too (`workflowEnded`).
   */
  failed: InstanceState | null;
}

/** Where each workflow kind holds the instance while it runs, and where it leaves it. */
export const WORKFLOW_STATES: Readonly<Record<InstanceWorkflowKind, WorkflowStates>> = {
  create: { during: "creating", succeeded: "running", failed: "failed" },
  import: { during: "importing", succeeded: "running", rolledBack: "deleted", failed: "failed" },
  replace: { during: "replacing", succeeded: "running", failed: "failed" },
  recycle: { during: "recycling", succeeded: "running", failed: "failed" },
  pause: { during: "pausing", succeeded: "paused", failed: "failed" },
  resume: { during: "resuming", succeeded: "running", failed: "failed" },
  delete: { during: "deleting", succeeded: "deleted", failed: "failed" },
  /** A snapshot leaves the instance serving: it has no state of its own, and its failure is an event. */
  snapshot: { during: null, succeeded: null, failed: null },
  /**
   * A live volume change leaves the instance serving; its failure is an event: the stored spec is
   * still the one before the update, and the volumes are as large as EC2 made them.
   */
  grow: { during: null, succeeded: null, failed: null },
  /** The new spec (the other region) is stored as it starts: a failure leaves the instance failed there. */
  relocate: { during: "relocating", succeeded: "running", failed: "failed" },
};

export function isInstanceWorkflowKind(kind: string): kind is InstanceWorkflowKind {
  return Object.hasOwn(WORKFLOW_STATES, kind);
}

/** `kind` as an instance workflow kind; a group workflow kind here is a programming error. */
export function instanceWorkflowKind(kind: string): InstanceWorkflowKind {
  if (!isInstanceWorkflowKind(kind)) throw new Error(`${kind} is not a workflow of a stateful instance`);
  return kind;
}

/** The state a new record starts in: the workflow that creates it holds it there. */
export const insertedAs = (kind: "create" | "import"): InstanceState => WORKFLOW_STATES[kind].during ?? "creating";

type StateWriter = { instances: Pick<StoreTx["instances"], "setState"> };

/**
 * Record that workflow `kind` reached `phase` for instance `name`: the one place an instance's
 * state is written (a check in lifecycle.test.ts keeps it so). A phase the kind has no state for
 * writes nothing.
 */
export async function moveState(
  w: StateWriter,
  kind: InstanceWorkflowKind,
  name: string,
  phase: "during" | "succeeded" | "rolledBack" | "failed",
  reason: string | null,
): Promise<void> {
  const state = WORKFLOW_STATES[kind][phase];
  if (state) await w.instances.setState(name, state, reason);
}

/** How a workflow ended, as the engine reports it. */
export type Ending = { ok: true } | { ok: false; error: string };

/**
 * What a finished workflow of an instance means for it: a success is a timeline event (its
 * runbook already moved the state); a failure after its new generation served (`finish` done) is
 * an event, not `failed`; a rolled-back import archived its record already; any other failure
 * leaves the instance `failed` (a snapshot's only an event), unless another workflow moves it by now.
 */
export async function workflowEnded(
  d: { store: Store; log: (line: string) => void },
  wf: Pick<WorkflowRecord, "id" | "kind" | "instance">,
  outcome: Ending,
): Promise<void> {
  const { store, log } = d;
  const kind = instanceWorkflowKind(wf.kind);
  if (outcome.ok) {
    await store.events.add(wf.instance, "workflow-succeeded", `${wf.kind} ${wf.id} succeeded`, wf.id);
    return;
  }
  const served = (await store.steps.list(wf.id)).some((s) => s.name === STEP.finish && s.status === "done");
  if (served) {
    const why = `serving, but a later step failed: ${outcome.error}`;
    await store.events.add(wf.instance, "after-ready-error", `${wf.kind} ${wf.id}: ${why}`, wf.id);
    log(`${wf.kind} ${wf.id} for ${wf.instance}: ${why}`);
    return;
  }
  const rolledBack = WORKFLOW_STATES[kind].rolledBack;
  if (rolledBack && (await store.instances.get(wf.instance))?.state === rolledBack) {
    log(`${wf.kind} ${wf.id} for ${wf.instance} failed and was rolled back: ${outcome.error}`);
    return;
  }
  await store.tx(async (t) => {
    const later = (await t.workflows.runningFor(wf.instance)).length > 0;
    if (!later) await moveState(t, kind, wf.instance, "failed", `${wf.kind} failed: ${outcome.error}`);
    await t.events.add(wf.instance, "workflow-failed", `${wf.kind} ${wf.id} failed: ${outcome.error}`, wf.id);
  });
  log(`${wf.kind} ${wf.id} for ${wf.instance} failed: ${outcome.error}`);
}
