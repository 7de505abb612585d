/**
 * The coordinator's store, as the rest of the coordinator sees it: domain objects (camelCase, JSON
 * already parsed) grouped by aggregate, behind an asynchronous interface so that a backend on a
 * networked database fits behind it. Rows, snake_case and SQL stay inside `coordinator/db/`.
 *
 * Contract every backend keeps (the store contract suite runs one body against each):
 *  - every method is atomic on its own; `tx(fn)` makes a group of calls all-or-nothing, and
 *    while it runs no other caller observes or interleaves with its writes;
 *  - writes that are replayed (a step re-run after a crash) are idempotent where documented
 *    ("if absent", "first wins");
 *  - times are epoch milliseconds of the clock handed to the backend.
 */
import type { KeepSet } from "../../shared/deletion.js";
import type { GroupSpec } from "../../shared/group-spec.js";
import type { InstanceState } from "../../shared/operations.js";
import type { StatefulInstanceSpec } from "../../shared/spec.js";
import type { WorkflowOwner } from "./owner.js";

/** The lifecycle state of a stateful instance (not EC2's instance state). */
export type StatefulInstanceState = InstanceState;

export interface StatefulInstance {
  name: string;
  spec: StatefulInstanceSpec;
  state: StatefulInstanceState;
  stateReason: string | null;
  /** The current generation (0 before the first launch). */
  generation: number;
  createdAt: number;
  updatedAt: number;
}

export type GenerationStatus = "launching" | "live" | "ended";

/** One EC2 instance that served (or serves) a stateful instance. */
export interface Generation {
  instance: string;
  generation: number;
  ec2InstanceId: string | null;
  instanceType: string | null;
  availabilityZone: string | null;
  market: "spot" | "on-demand" | null;
  privateIp: string | null;
  status: GenerationStatus;
  launchedAt: number | null;
  readyAt: number | null;
  endedAt: number | null;
  endReason: string | null;
  workflowId: string | null;
  /** SHA-256 (hex) of the secret its agent registered at its first hello; null until then. */
  sessionSecretHash: string | null;
  /**
   * The session secret its root disk carries, recorded at launch: the one registered by the
   * generation whose root the boot image was made from. While set, the first hello must prove it
   * (`carriedSecret`) before the agent's own secret is registered; null for a fresh root (the
   * spec's image, an imported instance's root, or a source generation that never registered one).
   */
  carriedSecret: CarriedSecret | null;
}

/** A session secret carried on a root disk made from an earlier generation's root. */
export interface CarriedSecret {
  /** The hash that generation registered (same form as `sessionSecretHash`). */
  hash: string;
  /** The generation that registered it, whose root the image was made from. */
  generation: number;
}

/** The latest inventory a generation's agent sent (validated before it is recorded). */
export interface GenerationInventory {
  instance: string;
  generation: number;
  /** The EC2 instance whose agent sent it. */
  ec2InstanceId: string;
  /** When the coordinator recorded it. */
  at: number;
  /** The inventory message without its envelope, as JSON kept exactly. */
  data: unknown;
  /** The keys of the conditions the checks raised an event for and that still held at this inventory. */
  raised: string[];
}

/** A persisted data volume: the logical device and the EBS volume that currently holds it. */
export interface DataVolume {
  instance: string;
  device: string;
  /** null: attached but not mounted (an adopted volume whose spec gives no mount point). */
  mountPoint: string | null;
  fsType: string;
  volumeId: string | null;
  availabilityZone: string | null;
  latestSnapshotId: string | null;
}

/** The stable network identity (ENI and private IP) of a stateful instance. */
export interface NetworkIdentity {
  instance: string;
  eniId: string | null;
  privateIp: string | null;
  subnetId: string | null;
  availabilityZone: string | null;
}

/** Root persistence: the image the next generation boots from. */
export interface RootLineage {
  instance: string;
  imageId: string | null;
  snapshotId: string | null;
  rootDeviceName: string | null;
  architecture: string | null;
}

/** snapshot-copy / image-copy: a disaster-recovery copy in another region (`region`) of the artifact `sourceId`. */
export type ArtifactKind = "data-snapshot" | "root-snapshot" | "image" | "snapshot-copy" | "image-copy";

/** A snapshot or image spotkeep made for a stateful instance. */
export interface Artifact {
  id: string;
  instance: string;
  kind: ArtifactKind;
  device: string | null;
  sourceId: string | null;
  generation: number | null;
  /** The region it is in when not the instance's own (copies). */
  region: string | null;
  createdAt: number;
  deletedAt: number | null;
}

export type WorkflowStatus = "running" | "succeeded" | "failed" | "cancelled";

/** A durable runbook run. */
export interface WorkflowRecord {
  id: string;
  kind: string;
  /** The key its owner is stored under (an instance's name; a group's key): what `runningFor` and `listFor` take. */
  instance: string;
  /** What it works on: a stateful instance or a group. */
  owner: WorkflowOwner;
  status: WorkflowStatus;
  input: unknown;
  trigger: string | null;
  result: unknown;
  error: string | null;
  startedAt: number;
  finishedAt: number | null;
}

export type StepStatus = "pending" | "running" | "done" | "failed";

/** How a failed step (attempt) failed: kept so a replay rethrows the same kind of error. */
export interface RecordedFailure {
  /**
   * The failure's kind as recorded (a `FailureKind` of the version that wrote it; a replay reads a
   * kind it does not know as `error`).
   */
  kind: string;
  code: string | null;
  message: string;
}

/** One recorded step of a workflow, keyed by (workflow, seq). */
export interface StepRecord {
  workflowId: string;
  seq: number;
  name: string;
  status: StepStatus;
  attempts: number;
  nextAttemptAt: number | null;
  result: unknown;
  failure: RecordedFailure | null;
  startedAt: number | null;
  endedAt: number | null;
}

/** A timeline entry of a stateful instance. */
export interface TimelineEvent {
  id: number;
  at: number;
  instance: string;
  kind: string;
  message: string;
  workflowId: string | null;
}

/** What an agent reported (quiesced, restored, ready, notice), keyed by EC2 instance id, kind and ref. */
export interface AgentReport {
  ec2InstanceId: string;
  kind: string;
  ref: string;
  data: unknown;
  at: number;
}

export interface InstanceQueries {
  insert(name: string, spec: StatefulInstanceSpec, state: StatefulInstanceState): void;
  get(name: string): StatefulInstance | null;
  /** Every stateful instance except deleted ones, by name. */
  list(): StatefulInstance[];
  setState(name: string, state: StatefulInstanceState, reason?: string | null): void;
  setCurrentGeneration(name: string, generation: number): void;
  /** Replace the spec (an update); it applies from the next generation on. */
  setSpec(name: string, spec: StatefulInstanceSpec): void;
}

export interface GenerationQueries {
  /** Insert the generation if absent (idempotent on replay). */
  ensure(instance: string, generation: number, workflowId: string): void;
  /**
   * The generation's EC2 instance and where it runs. When the generation's EC2 instance changes (it
   * was launched again), the session secret registered by the previous one is forgotten.
   * `carriedSecret`, when given (the launch records it; later updates of the same launch leave it
   * out), replaces the secret the generation's root is expected to carry; when left out it is kept.
   */
  recordLaunch(
    instance: string,
    generation: number,
    g: {
      ec2InstanceId: string;
      instanceType: string;
      availabilityZone: string;
      market: "spot" | "on-demand";
      privateIp: string | null;
      carriedSecret?: CarriedSecret | null;
    },
  ): void;
  markLive(instance: string, generation: number): void;
  /** First end wins: a replay keeps the original time and reason. */
  end(instance: string, generation: number, reason: string): void;
  get(instance: string, generation: number): Generation | null;
  byEc2InstanceId(ec2InstanceId: string): Generation | null;
  list(instance: string): Generation[];
  /** Generations whose EC2 instance should be alive: live, launched, and their instance running. */
  live(): Generation[];
  /** Record the agent's session secret hash unless one is registered; true when `hash` is the registered one. */
  registerSessionSecret(ec2InstanceId: string, hash: string): boolean;
  /** Record the generation's latest inventory: it replaces the one recorded before (one row per generation). */
  recordInventory(instance: string, generation: number, ec2InstanceId: string, data: unknown, raised: string[]): void;
  /** The generation's latest inventory, or null when its agent sent none. */
  inventory(instance: string, generation: number): GenerationInventory | null;
}

export interface VolumeQueries {
  /** Declare a data volume of the spec (idempotent). */
  declare(instance: string, device: string, mountPoint: string | null, fsType: string): void;
  setCurrent(instance: string, device: string, volumeId: string, availabilityZone: string): void;
  setLatestSnapshot(instance: string, device: string, snapshotId: string): void;
  setMountPoint(instance: string, device: string, mountPoint: string | null): void;
  list(instance: string): DataVolume[];
}

export interface NetworkQueries {
  set(n: NetworkIdentity): void;
  get(instance: string): NetworkIdentity | null;
}

export interface RootQueries {
  set(r: RootLineage): void;
  get(instance: string): RootLineage | null;
}

export interface ArtifactQueries {
  /** Record once (a replayed step records the same id again harmlessly). */
  record(a: Omit<Artifact, "createdAt" | "deletedAt" | "region"> & { region?: string | null }): void;
  /** Not-deleted artifacts of a kind, newest first. */
  list(instance: string, kind: ArtifactKind, device?: string | null): Artifact[];
  markDeleted(id: string): void;
  /**
   * A disaster-recovery copy becomes the instance's own artifact (`kind`, in the instance's region:
   * its region cleared) once the instance runs in the copy's region. Only a copy changes; false
   * when `id` is not a copy (already taken, or unknown).
   */
  takeCopy(id: string, kind: "data-snapshot" | "image" | "root-snapshot", sourceId: string | null): boolean;
}

export interface WorkflowQueries {
  insert(w: { id: string; kind: string; instance: string; input: unknown; trigger: string | null }): void;
  get(id: string): WorkflowRecord | null;
  unfinished(): WorkflowRecord[];
  runningFor(instance: string): WorkflowRecord[];
  listFor(instance: string): WorkflowRecord[];
  /** Only a running workflow finishes (a replayed finish changes nothing). */
  finish(id: string, status: Exclude<WorkflowStatus, "running">, result: unknown, error: string | null): void;
  /** How many workflows are running right now, for the gauge. */
  countRunning(): number;
}

export interface StepQueries {
  get(workflowId: string, seq: number): StepRecord | null;
  list(workflowId: string): StepRecord[];
  /** A first attempt (or a re-attempt) begins. */
  start(workflowId: string, seq: number, name: string): void;
  complete(workflowId: string, seq: number, result: unknown): void;
  /** A failed attempt that will be retried at `nextAt`. */
  scheduleRetry(workflowId: string, seq: number, failure: RecordedFailure, nextAt: number): void;
  fail(workflowId: string, seq: number, failure: RecordedFailure): void;
}

export interface EventQueries {
  add(instance: string, kind: string, message: string, workflowId?: string | null): void;
  /**
   * Replace the message (not the time) of the instance's latest event of `kind` whose message starts
   * with `prefix`, provided every event of the instance after it has one of `quietKinds`; true when
   * one was replaced, false (nothing changed) otherwise. A refusal summary uses it to grow in place
   * instead of adding rows while nothing but refusals happens.
   */
  replaceLatest(instance: string, kind: string, prefix: string, message: string, quietKinds: string[]): boolean;
  /** The last `limit` events, oldest first. */
  list(instance: string, limit?: number): TimelineEvent[];
}

export interface AgentReportQueries {
  /** Record once: the first report for (instance, kind, ref) wins. Returns false for a duplicate. */
  record(ec2InstanceId: string, kind: string, ref: string, data: unknown): boolean;
  get(ec2InstanceId: string, kind: string, ref?: string): AgentReport | null;
  latest(ec2InstanceId: string, kind: string): AgentReport | null;
}

/** An EventBridge event taken from the interruption queue (recorded before its message is deleted). */
export interface QueueEvent {
  /** EventBridge's event id: the same event delivered twice has the same id. */
  eventId: string;
  /** spot-interruption, rebalance, state-change, scheduled-change. */
  kind: string;
  ec2InstanceId: string | null;
  /** The stateful instance it concerns; null for an unmanaged instance. */
  instance: string | null;
  data: unknown;
  receivedAt: number;
  /** When the decision it led to was recorded; null while it is recorded but not yet handled. */
  handledAt: number | null;
  outcome: string | null;
}

export interface QueueEventQueries {
  /** Record once by event id; false when it was recorded before (a redelivery or a duplicate). */
  record(e: { eventId: string; kind: string; ec2InstanceId: string | null; instance: string | null; data: unknown }): boolean;
  get(eventId: string): QueueEvent | null;
  /** First wins: a replayed mark keeps the original time and outcome. */
  markHandled(eventId: string, outcome: string): void;
}

export type NoticeSource = "agent" | "queue";

/** The first time a source reported a notice kind for an EC2 instance. */
export interface NoticeArrival {
  ec2InstanceId: string;
  kind: string;
  source: NoticeSource;
  at: number;
}

export interface NoticeArrivalQueries {
  /** Record the first arrival per (instance, kind, source); false when that source reported it before. */
  record(ec2InstanceId: string, kind: string, source: NoticeSource): boolean;
  /** Every source's first arrival for (instance, kind), earliest first. */
  list(ec2InstanceId: string, kind: string): NoticeArrival[];
}

/** What a delete may keep. */
export type KeptKind = "volume" | "network-interface" | "snapshot" | "image";

/** A resource a delete kept; the TTL sweep deletes it once `expiresAt` has passed. */
export interface KeptResource {
  resourceId: string;
  /** The deleted stateful instance (its archived name once the delete finished). */
  instance: string;
  kind: KeptKind;
  workflowId: string;
  keptAt: number;
  /** null: kept until deleted by hand. */
  expiresAt: number | null;
  sweepStartedAt: number | null;
  deletedAt: number | null;
  /** The stateful instance that took it over (import with adoptKept); the sweep leaves it alone. */
  adoptedBy: string | null;
  adoptedAt: number | null;
}

/** A stateful instance's claim on an EC2 resource, as the store records it. */
export interface ResourceClaim {
  instance: string;
  /** How it holds it: "volume /dev/sdf", "network interface", "root image", "snapshot", "kept". */
  as: string;
}

export interface DeletionQueries {
  /**
   * Move a stateful instance and every row that refers to it to `archivedAs` (a name no spec can
   * use), freeing its name. False when `name` does not exist (already archived: a replay). Call it
   * inside tx(): the foreign keys from generations, volumes, network and root_lineage are checked
   * at the commit.
   */
  archive(name: string, archivedAs: string): boolean;
  /** Clear the store's references to the kinds a delete did not keep, so describe shows only what is kept. */
  forgetDeleted(name: string, keep: KeepSet): void;
  /** Deleted (archived) stateful instances, by name. */
  listDeleted(): StatefulInstance[];
  /**
   * Record a kept resource once (a replay keeps the first record). A row another instance adopted
   * is taken over by this new keep (its adopter is being deleted and keeps it in turn).
   */
  keep(k: { resourceId: string; instance: string; kind: KeptKind; workflowId: string; expiresAt: number | null }): void;
  /**
   * Every claim the store holds on `resourceId`: a data volume, snapshot, network interface or
   * root image of a stateful instance that is not deleted, or a kept resource of a deleted one
   * (not yet gone, not adopted).
   */
  claims(resourceId: string): ResourceClaim[];
  /** Hand a kept resource to `instance` (its TTL no longer applies); false when it is gone or already adopted. */
  adopt(resourceId: string, instance: string): boolean;
  kept(instance: string): KeptResource[];
  /** Kept resources not yet deleted nor adopted whose expiry is at or before `at`, oldest expiry first. */
  due(at: number): KeptResource[];
  /** The sweep is about to delete it (first mark wins). */
  markSweeping(resourceId: string): void;
  /** EC2 no longer has it (first mark wins). */
  markGone(resourceId: string): void;
}

/** The synchronous query surface a backend implements; the Store wraps it. */
/** What the coordinator recorded about one scheduled task (a `schedule` entry) of a stateful instance. */
export interface TaskRun {
  instance: string;
  /** "ACTION CRON", e.g. "pause 0 20 * * 1-5". */
  taskKey: string;
  /** When the task became known: due times before it are not run. */
  baselineAt: number;
  /** The latest due time handled (run, skipped or missed); null before the first. */
  lastDueAt: number | null;
  /** started, skipped or missed, with why. */
  lastOutcome: string | null;
  lastWorkflowId: string | null;
  handledAt: number | null;
}

export interface TaskRunQueries {
  /**
   * Make the recorded tasks of `instance` exactly `taskKeys`: a new key gets `baselineAt` = `at`,
   * a known one keeps its record, a key no longer listed is dropped.
   */
  sync(instance: string, taskKeys: string[], at: number): void;
  list(instance: string): TaskRun[];
  /** Record due time `dueAt` as handled; an older due time never overwrites a newer one. Returns false when it did not apply. */
  handled(instance: string, taskKey: string, dueAt: number, outcome: string, workflowId: string | null): boolean;
}

/** A stateful group's own state; its members carry their lifecycle states as stateful instances. */
export type GroupState = "creating" | "ready" | "scaling" | "updating" | "stopped" | "deleting";

export interface StatefulGroup {
  name: string;
  spec: GroupSpec;
  state: GroupState;
  /** Why (for stopped: where a roll-out or scaling stopped and what failed). */
  stateReason: string | null;
  createdAt: number;
  updatedAt: number;
}

/** A member of a group: its ordinal, stateful instance and the pool address it owns. */
export interface GroupMember {
  group: string;
  ordinal: number;
  instance: string;
  privateIp: string;
  subnetId: string;
  availabilityZone: string;
  /** removing: a scale-down or the group's delete is deleting it. */
  status: "active" | "removing";
  createdAt: number;
}

export interface GroupQueries {
  insert(name: string, spec: GroupSpec, state: GroupState): void;
  get(name: string): StatefulGroup | null;
  list(): StatefulGroup[];
  setSpec(name: string, spec: GroupSpec): void;
  setState(name: string, state: GroupState, reason?: string | null): void;
  /** Remove a group that has no members left (its delete finished). */
  remove(name: string): void;
  /** Claim `privateIp` for a member (insert if absent: a replay keeps the first claim). */
  addMember(m: Omit<GroupMember, "status" | "createdAt">): void;
  /** Members by ordinal. */
  members(group: string): GroupMember[];
  /** The membership of a stateful instance, if it belongs to a group. */
  memberOf(instance: string): GroupMember | null;
  setMemberStatus(group: string, ordinal: number, status: GroupMember["status"]): void;
  /** The member's delete finished: its address returns to the pool. */
  removeMember(group: string, ordinal: number): void;
}

export interface Queries {
  instances: InstanceQueries;
  generations: GenerationQueries;
  volumes: VolumeQueries;
  network: NetworkQueries;
  root: RootQueries;
  artifacts: ArtifactQueries;
  workflows: WorkflowQueries;
  steps: StepQueries;
  events: EventQueries;
  agentReports: AgentReportQueries;
  queueEvents: QueueEventQueries;
  noticeArrivals: NoticeArrivalQueries;
  deletions: DeletionQueries;
  taskRuns: TaskRunQueries;
  groups: GroupQueries;
}

/** The same methods, returning promises. */
export type Async<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
};

export type StoreTx = { [K in keyof Queries]: Async<Queries[K]> };

/**
 * The `code` a backend puts on an error when its database could not be used at all (unreachable,
 * connection lost, server shutting down): the call did not happen, or its transaction did not
 * commit, and the same call may simply be made again later.
 */
export const STORE_UNAVAILABLE = "STORE_UNAVAILABLE";

/** Whether `err` (or one of its causes) says the store's database could not be used. */
export function isStoreUnavailable(err: unknown): boolean {
  let e: unknown = err;
  for (let i = 0; i < 8 && e && typeof e === "object"; i++, e = (e as { cause?: unknown }).cause)
    if ((e as { code?: unknown }).code === STORE_UNAVAILABLE) return true;
  return false;
}

/** Whether a store call failed because the database's disk is full (SQLite's SQLITE_FULL, anywhere in the cause chain). */
export function isStoreFull(err: unknown): boolean {
  let e: unknown = err;
  for (let i = 0; i < 8 && e && typeof e === "object"; i++, e = (e as { cause?: unknown }).cause)
    if ((e as { code?: unknown }).code === "SQLITE_FULL") return true;
  return false;
}

export interface Store extends StoreTx {
  /** Run `fn` as one transaction: all of its writes or none; nothing interleaves with it. */
  tx<T>(fn: (t: StoreTx) => Promise<T>): Promise<T>;
  /** Row counts per table, for tests that assert a rejected input changed nothing. */
  counts(): Promise<Record<string, number>>;
  close(): Promise<void>;
}
