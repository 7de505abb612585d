/**
 * Rows as both store backends read them (snake_case columns, JSON as text, times as epoch ms) and
 * their mapping to the domain objects of store.ts. The SQLite and PostgreSQL schemas have the same
 * tables and columns, so one mapping serves both.
 */
import type { GroupSpec } from "../../shared/group-spec.js";
import type { StatefulInstanceSpec } from "../../shared/spec.js";
import { ownerOf } from "./owner.js";
import type {
  AgentReport,
  Artifact,
  ArtifactKind,
  DataVolume,
  Generation,
  GenerationInventory,
  GenerationStatus,
  GroupMember,
  GroupState,
  KeptKind,
  KeptResource,
  QueueEvent,
  StatefulGroup,
  StatefulInstance,
  StatefulInstanceState,
  StepRecord,
  StepStatus,
  TaskRun,
  WorkflowRecord,
  WorkflowStatus,
} from "./store.js";

/** The store's tables (every row of the domain lives in one of them), as both backends count them. */
export const TABLES = [
  "instances",
  "generations",
  "volumes",
  "network",
  "root_lineage",
  "artifacts",
  "workflows",
  "steps",
  "events",
  "agent_reports",
  "queue_events",
  "notice_arrivals",
  "kept_resources",
  "task_runs",
  "stateful_groups",
  "stateful_group_members",
  "inventories",
] as const;

/** A JSON column: null stays null. */
export function parseJson(text: string | null): unknown {
  return text == null ? null : JSON.parse(text);
}

export interface KeptRow {
  resource_id: string;
  instance: string;
  kind: KeptKind;
  workflow_id: string;
  kept_at: number;
  expires_at: number | null;
  sweep_started_at: number | null;
  deleted_at: number | null;
  adopted_by: string | null;
  adopted_at: number | null;
}

export const toKept = (r: KeptRow): KeptResource => ({
  resourceId: r.resource_id,
  instance: r.instance,
  kind: r.kind,
  workflowId: r.workflow_id,
  keptAt: r.kept_at,
  expiresAt: r.expires_at,
  sweepStartedAt: r.sweep_started_at,
  deletedAt: r.deleted_at,
  adoptedBy: r.adopted_by,
  adoptedAt: r.adopted_at,
});

export interface EventRow {
  id: number;
  at: number;
  instance: string;
  kind: string;
  message: string;
  workflow_id: string | null;
}

export interface ReportRow {
  instance_id: string;
  kind: string;
  ref: string;
  data: string;
  at: number;
}

export const toReport = (r: ReportRow): AgentReport => ({
  ec2InstanceId: r.instance_id,
  kind: r.kind,
  ref: r.ref,
  data: parseJson(r.data),
  at: r.at,
});

export interface GenerationRow {
  instance: string;
  generation: number;
  instance_id: string | null;
  instance_type: string | null;
  availability_zone: string | null;
  lifecycle: "spot" | "on-demand" | null;
  private_ip: string | null;
  status: GenerationStatus;
  launched_at: number | null;
  ready_at: number | null;
  ended_at: number | null;
  end_reason: string | null;
  workflow_id: string | null;
  session_secret_hash: string | null;
  carried_secret_hash: string | null;
  carried_secret_generation: number | null;
}

export interface InventoryRow {
  instance: string;
  generation: number;
  instance_id: string;
  received_at: number;
  body: string;
  raised: string;
}

export const toInventory = (r: InventoryRow): GenerationInventory => ({
  instance: r.instance,
  generation: r.generation,
  ec2InstanceId: r.instance_id,
  at: r.received_at,
  data: JSON.parse(r.body),
  raised: JSON.parse(r.raised) as string[],
});

export const toGeneration = (r: GenerationRow): Generation => ({
  instance: r.instance,
  generation: r.generation,
  ec2InstanceId: r.instance_id,
  instanceType: r.instance_type,
  availabilityZone: r.availability_zone,
  market: r.lifecycle,
  privateIp: r.private_ip,
  status: r.status,
  launchedAt: r.launched_at,
  readyAt: r.ready_at,
  endedAt: r.ended_at,
  endReason: r.end_reason,
  workflowId: r.workflow_id,
  sessionSecretHash: r.session_secret_hash,
  carriedSecret:
    r.carried_secret_hash !== null && r.carried_secret_generation !== null
      ? { hash: r.carried_secret_hash, generation: Number(r.carried_secret_generation) }
      : null,
});

export interface GroupRow {
  name: string;
  spec: string;
  state: string;
  state_reason: string | null;
  created_at: number;
  updated_at: number;
}

export interface MemberRow {
  group_name: string;
  ordinal: number;
  instance: string;
  private_ip: string;
  subnet_id: string;
  availability_zone: string;
  status: string;
  created_at: number;
}

export const toGroup = (r: GroupRow): StatefulGroup => ({
  name: r.name,
  spec: JSON.parse(r.spec) as GroupSpec,
  state: r.state as GroupState,
  stateReason: r.state_reason,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export const toMember = (r: MemberRow): GroupMember => ({
  group: r.group_name,
  ordinal: r.ordinal,
  instance: r.instance,
  privateIp: r.private_ip,
  subnetId: r.subnet_id,
  availabilityZone: r.availability_zone,
  status: r.status as GroupMember["status"],
  createdAt: r.created_at,
});

export interface InstanceRow {
  name: string;
  spec: string;
  state: StatefulInstanceState;
  state_reason: string | null;
  generation: number;
  created_at: number;
  updated_at: number;
}

export const toInstance = (r: InstanceRow): StatefulInstance => ({
  name: r.name,
  spec: JSON.parse(r.spec) as StatefulInstanceSpec,
  state: r.state,
  stateReason: r.state_reason,
  generation: r.generation,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export interface QueueEventRow {
  event_id: string;
  kind: string;
  ec2_instance_id: string | null;
  instance: string | null;
  data: string;
  received_at: number;
  handled_at: number | null;
  outcome: string | null;
}

export const toEvent = (r: QueueEventRow): QueueEvent => ({
  eventId: r.event_id,
  kind: r.kind,
  ec2InstanceId: r.ec2_instance_id,
  instance: r.instance,
  data: parseJson(r.data),
  receivedAt: r.received_at,
  handledAt: r.handled_at,
  outcome: r.outcome,
});

export interface ArrivalRow {
  ec2_instance_id: string;
  kind: string;
  source: string;
  at: number;
}

export interface VolumeRow {
  instance: string;
  device: string;
  mount_point: string;
  fs_type: string;
  volume_id: string | null;
  availability_zone: string | null;
  latest_snapshot_id: string | null;
}

export const toVolume = (r: VolumeRow): DataVolume => ({
  instance: r.instance,
  device: r.device,
  // The column is NOT NULL: "" stands for no mount point (an adopted volume, attached only).
  mountPoint: r.mount_point === "" ? null : r.mount_point,
  fsType: r.fs_type,
  volumeId: r.volume_id,
  availabilityZone: r.availability_zone,
  latestSnapshotId: r.latest_snapshot_id,
});

export interface NetworkRow {
  instance: string;
  eni_id: string | null;
  private_ip: string | null;
  subnet_id: string | null;
  availability_zone: string | null;
}

export interface RootRow {
  instance: string;
  image_id: string | null;
  snapshot_id: string | null;
  root_device_name: string | null;
  architecture: string | null;
}

export interface ArtifactRow {
  id: string;
  instance: string;
  kind: ArtifactKind;
  device: string | null;
  source_id: string | null;
  generation: number | null;
  region: string | null;
  created_at: number;
  deleted_at: number | null;
}

export const toArtifact = (r: ArtifactRow): Artifact => ({
  id: r.id,
  instance: r.instance,
  kind: r.kind,
  device: r.device,
  sourceId: r.source_id,
  generation: r.generation,
  region: r.region ?? null,
  createdAt: r.created_at,
  deletedAt: r.deleted_at,
});

export interface TaskRunRow {
  instance: string;
  task_key: string;
  baseline_at: number;
  last_due_at: number | null;
  last_outcome: string | null;
  last_workflow_id: string | null;
  handled_at: number | null;
}

export const toRun = (r: TaskRunRow): TaskRun => ({
  instance: r.instance,
  taskKey: r.task_key,
  baselineAt: r.baseline_at,
  lastDueAt: r.last_due_at,
  lastOutcome: r.last_outcome,
  lastWorkflowId: r.last_workflow_id,
  handledAt: r.handled_at,
});

export interface WorkflowRow {
  id: string;
  kind: string;
  instance: string;
  status: WorkflowStatus;
  input: string;
  trigger: string | null;
  result: string | null;
  error: string | null;
  started_at: number;
  finished_at: number | null;
}

export const toWorkflow = (r: WorkflowRow): WorkflowRecord => ({
  id: r.id,
  kind: r.kind,
  instance: r.instance,
  owner: ownerOf(r.instance),
  status: r.status,
  input: parseJson(r.input),
  trigger: r.trigger,
  result: parseJson(r.result),
  error: r.error,
  startedAt: r.started_at,
  finishedAt: r.finished_at,
});

export interface StepRow {
  workflow_id: string;
  seq: number;
  name: string;
  status: StepStatus;
  attempts: number;
  next_attempt_at: number | null;
  result: string | null;
  error: string | null;
  error_kind: string | null;
  error_code: string | null;
  started_at: number | null;
  ended_at: number | null;
}

export const toStep = (r: StepRow): StepRecord => ({
  workflowId: r.workflow_id,
  seq: r.seq,
  name: r.name,
  status: r.status,
  attempts: r.attempts,
  nextAttemptAt: r.next_attempt_at,
  result: parseJson(r.result),
  failure: r.error == null ? null : { kind: r.error_kind ?? "error", code: r.error_code, message: r.error },
  startedAt: r.started_at,
  endedAt: r.ended_at,
});
