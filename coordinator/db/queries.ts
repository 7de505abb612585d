/**
 * The coordinator's store: every SQL statement the coordinator runs lives in this file.
 * Times are stored as epoch milliseconds (the injected Clock's time) and turned into ISO
 * strings only by the read models (views.ts).
 */
import Database from "better-sqlite3";
import { migrate } from "./migrations.js";

export type InstanceStateName = "creating" | "running" | "replacing" | "paused" | "failed" | "deleting" | "deleted";

export interface InstanceRow {
  name: string;
  spec: string;
  state: InstanceStateName;
  state_reason: string | null;
  generation: number;
  created_at: number;
  updated_at: number;
}

export interface GenerationRow {
  instance: string;
  generation: number;
  instance_id: string | null;
  instance_type: string | null;
  availability_zone: string | null;
  lifecycle: "spot" | "on-demand" | null;
  private_ip: string | null;
  status: "launching" | "live" | "ended";
  launched_at: number | null;
  ready_at: number | null;
  ended_at: number | null;
  end_reason: string | null;
  workflow_id: string | null;
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
  kind: "data-snapshot" | "root-snapshot" | "image";
  device: string | null;
  source_id: string | null;
  generation: number | null;
  created_at: number;
  deleted_at: number | null;
}

export type WorkflowStatus = "running" | "succeeded" | "failed" | "cancelled";
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

export type StepStatus = "pending" | "running" | "done" | "failed";
export interface StepRow {
  workflow_id: string;
  seq: number;
  name: string;
  status: StepStatus;
  attempts: number;
  next_attempt_at: number | null;
  result: string | null;
  error: string | null;
  started_at: number | null;
  ended_at: number | null;
}

export interface EventRow {
  id: number;
  at: number;
  instance: string;
  kind: string;
  message: string;
  workflow_id: string | null;
}

export interface AgentReportRow {
  instance_id: string;
  kind: string;
  ref: string;
  data: string;
  at: number;
}

export class Store {
  readonly db: Database.Database;

  constructor(
    file: string,
    private readonly now: () => number = Date.now,
  ) {
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("busy_timeout = 5000");
    this.db.pragma("foreign_keys = ON");
    migrate(this.db, now);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** Run `fn` in one transaction (all or nothing). */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // ---------- instances ----------

  insertInstance(name: string, spec: unknown, state: InstanceStateName): void {
    const t = this.now();
    this.db
      .prepare("INSERT INTO instances (name, spec, state, generation, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)")
      .run(name, JSON.stringify(spec), state, t, t);
  }

  getInstance(name: string): InstanceRow | undefined {
    return this.db.prepare("SELECT * FROM instances WHERE name = ?").get(name) as InstanceRow | undefined;
  }

  listInstances(): InstanceRow[] {
    return this.db.prepare("SELECT * FROM instances WHERE state <> 'deleted' ORDER BY name").all() as InstanceRow[];
  }

  setInstanceState(name: string, state: InstanceStateName, reason: string | null = null): void {
    this.db.prepare("UPDATE instances SET state = ?, state_reason = ?, updated_at = ? WHERE name = ?").run(state, reason, this.now(), name);
  }

  setCurrentGeneration(name: string, generation: number): void {
    this.db.prepare("UPDATE instances SET generation = ?, updated_at = ? WHERE name = ?").run(generation, this.now(), name);
  }

  // ---------- generations ----------

  /** Insert the generation row if absent (idempotent on replay). */
  ensureGeneration(instance: string, generation: number, workflowId: string): void {
    this.db
      .prepare("INSERT OR IGNORE INTO generations (instance, generation, status, workflow_id) VALUES (?, ?, 'launching', ?)")
      .run(instance, generation, workflowId);
  }

  recordLaunch(
    instance: string,
    generation: number,
    g: { instanceId: string; instanceType: string; availabilityZone: string; lifecycle: "spot" | "on-demand"; privateIp: string | null },
  ): void {
    this.db
      .prepare(
        "UPDATE generations SET instance_id = ?, instance_type = ?, availability_zone = ?, lifecycle = ?, private_ip = ?, launched_at = COALESCE(launched_at, ?) WHERE instance = ? AND generation = ?",
      )
      .run(g.instanceId, g.instanceType, g.availabilityZone, g.lifecycle, g.privateIp, this.now(), instance, generation);
  }

  markGenerationLive(instance: string, generation: number): void {
    this.db
      .prepare("UPDATE generations SET status = 'live', ready_at = COALESCE(ready_at, ?) WHERE instance = ? AND generation = ?")
      .run(this.now(), instance, generation);
  }

  endGeneration(instance: string, generation: number, reason: string): void {
    this.db
      .prepare(
        "UPDATE generations SET status = 'ended', ended_at = COALESCE(ended_at, ?), end_reason = COALESCE(end_reason, ?) WHERE instance = ? AND generation = ?",
      )
      .run(this.now(), reason, instance, generation);
  }

  getGeneration(instance: string, generation: number): GenerationRow | undefined {
    return this.db.prepare("SELECT * FROM generations WHERE instance = ? AND generation = ?").get(instance, generation) as
      | GenerationRow
      | undefined;
  }

  generationByInstanceId(instanceId: string): GenerationRow | undefined {
    return this.db.prepare("SELECT * FROM generations WHERE instance_id = ?").get(instanceId) as GenerationRow | undefined;
  }

  listGenerations(instance: string): GenerationRow[] {
    return this.db.prepare("SELECT * FROM generations WHERE instance = ? ORDER BY generation").all(instance) as GenerationRow[];
  }

  /** Generations whose EC2 instance should be alive (for the lost-instance watcher). */
  liveGenerations(): GenerationRow[] {
    return this.db
      .prepare(
        "SELECT g.* FROM generations g JOIN instances i ON i.name = g.instance AND i.generation = g.generation WHERE g.status = 'live' AND g.instance_id IS NOT NULL AND i.state = 'running'",
      )
      .all() as GenerationRow[];
  }

  // ---------- persisted resources ----------

  upsertVolume(v: Omit<VolumeRow, "volume_id" | "availability_zone" | "latest_snapshot_id">): void {
    this.db
      .prepare("INSERT OR IGNORE INTO volumes (instance, device, mount_point, fs_type) VALUES (?, ?, ?, ?)")
      .run(v.instance, v.device, v.mount_point, v.fs_type);
  }

  setVolumeCurrent(instance: string, device: string, volumeId: string, az: string): void {
    this.db
      .prepare("UPDATE volumes SET volume_id = ?, availability_zone = ? WHERE instance = ? AND device = ?")
      .run(volumeId, az, instance, device);
  }

  setVolumeSnapshot(instance: string, device: string, snapshotId: string): void {
    this.db.prepare("UPDATE volumes SET latest_snapshot_id = ? WHERE instance = ? AND device = ?").run(snapshotId, instance, device);
  }

  listVolumes(instance: string): VolumeRow[] {
    return this.db.prepare("SELECT * FROM volumes WHERE instance = ? ORDER BY device").all(instance) as VolumeRow[];
  }

  setNetwork(n: NetworkRow): void {
    this.db
      .prepare(
        "INSERT INTO network (instance, eni_id, private_ip, subnet_id, availability_zone) VALUES (@instance, @eni_id, @private_ip, @subnet_id, @availability_zone) ON CONFLICT(instance) DO UPDATE SET eni_id = excluded.eni_id, private_ip = excluded.private_ip, subnet_id = excluded.subnet_id, availability_zone = excluded.availability_zone",
      )
      .run(n);
  }

  getNetwork(instance: string): NetworkRow | undefined {
    return this.db.prepare("SELECT * FROM network WHERE instance = ?").get(instance) as NetworkRow | undefined;
  }

  setRoot(r: RootRow): void {
    this.db
      .prepare(
        "INSERT INTO root_lineage (instance, image_id, snapshot_id, root_device_name, architecture) VALUES (@instance, @image_id, @snapshot_id, @root_device_name, @architecture) ON CONFLICT(instance) DO UPDATE SET image_id = excluded.image_id, snapshot_id = excluded.snapshot_id, root_device_name = excluded.root_device_name, architecture = excluded.architecture",
      )
      .run(r);
  }

  getRoot(instance: string): RootRow | undefined {
    return this.db.prepare("SELECT * FROM root_lineage WHERE instance = ?").get(instance) as RootRow | undefined;
  }

  recordArtifact(a: Omit<ArtifactRow, "created_at" | "deleted_at">): void {
    this.db
      .prepare(
        "INSERT OR IGNORE INTO artifacts (id, instance, kind, device, source_id, generation, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
      )
      .run(a.id, a.instance, a.kind, a.device, a.source_id, a.generation, this.now());
  }

  listArtifacts(instance: string, kind: ArtifactRow["kind"], device: string | null = null): ArtifactRow[] {
    if (device === null)
      return this.db
        .prepare("SELECT * FROM artifacts WHERE instance = ? AND kind = ? AND deleted_at IS NULL ORDER BY created_at DESC, rowid DESC")
        .all(instance, kind) as ArtifactRow[];
    return this.db
      .prepare(
        "SELECT * FROM artifacts WHERE instance = ? AND kind = ? AND device = ? AND deleted_at IS NULL ORDER BY created_at DESC, rowid DESC",
      )
      .all(instance, kind, device) as ArtifactRow[];
  }

  markArtifactDeleted(id: string): void {
    this.db.prepare("UPDATE artifacts SET deleted_at = ? WHERE id = ?").run(this.now(), id);
  }

  // ---------- workflows ----------

  insertWorkflow(w: { id: string; kind: string; instance: string; input: unknown; trigger: string | null }): void {
    this.db
      .prepare("INSERT INTO workflows (id, kind, instance, status, input, trigger, started_at) VALUES (?, ?, ?, 'running', ?, ?, ?)")
      .run(w.id, w.kind, w.instance, JSON.stringify(w.input ?? null), w.trigger, this.now());
  }

  getWorkflow(id: string): WorkflowRow | undefined {
    return this.db.prepare("SELECT * FROM workflows WHERE id = ?").get(id) as WorkflowRow | undefined;
  }

  unfinishedWorkflows(): WorkflowRow[] {
    return this.db.prepare("SELECT * FROM workflows WHERE status = 'running' ORDER BY started_at, id").all() as WorkflowRow[];
  }

  runningWorkflowsFor(instance: string): WorkflowRow[] {
    return this.db
      .prepare("SELECT * FROM workflows WHERE instance = ? AND status = 'running' ORDER BY started_at")
      .all(instance) as WorkflowRow[];
  }

  workflowsFor(instance: string): WorkflowRow[] {
    return this.db.prepare("SELECT * FROM workflows WHERE instance = ? ORDER BY started_at, id").all(instance) as WorkflowRow[];
  }

  finishWorkflow(id: string, status: Exclude<WorkflowStatus, "running">, result: unknown, error: string | null): void {
    this.db
      .prepare("UPDATE workflows SET status = ?, result = ?, error = ?, finished_at = ? WHERE id = ? AND status = 'running'")
      .run(status, result === undefined ? null : JSON.stringify(result), error, this.now(), id);
  }

  getStep(workflowId: string, seq: number): StepRow | undefined {
    return this.db.prepare("SELECT * FROM steps WHERE workflow_id = ? AND seq = ?").get(workflowId, seq) as StepRow | undefined;
  }

  listSteps(workflowId: string): StepRow[] {
    return this.db.prepare("SELECT * FROM steps WHERE workflow_id = ? ORDER BY seq").all(workflowId) as StepRow[];
  }

  /** First attempt (or re-attempt) of a step begins. */
  startStep(workflowId: string, seq: number, name: string): void {
    const t = this.now();
    this.db
      .prepare(
        "INSERT INTO steps (workflow_id, seq, name, status, attempts, started_at) VALUES (?, ?, ?, 'running', 0, ?) ON CONFLICT(workflow_id, seq) DO UPDATE SET status = 'running', next_attempt_at = NULL",
      )
      .run(workflowId, seq, name, t);
  }

  completeStep(workflowId: string, seq: number, result: unknown): void {
    this.db
      .prepare(
        "UPDATE steps SET status = 'done', attempts = attempts + 1, result = ?, error = NULL, next_attempt_at = NULL, ended_at = ? WHERE workflow_id = ? AND seq = ?",
      )
      .run(JSON.stringify(result === undefined ? null : result), this.now(), workflowId, seq);
  }

  /** A failed attempt that will be retried at `nextAt`. */
  scheduleRetry(workflowId: string, seq: number, error: string, nextAt: number): void {
    this.db
      .prepare(
        "UPDATE steps SET status = 'pending', attempts = attempts + 1, error = ?, next_attempt_at = ? WHERE workflow_id = ? AND seq = ?",
      )
      .run(error, nextAt, workflowId, seq);
  }

  failStep(workflowId: string, seq: number, error: string): void {
    this.db
      .prepare(
        "UPDATE steps SET status = 'failed', attempts = attempts + 1, error = ?, next_attempt_at = NULL, ended_at = ? WHERE workflow_id = ? AND seq = ?",
      )
      .run(error, this.now(), workflowId, seq);
  }

  // ---------- events ----------

  addEvent(instance: string, kind: string, message: string, workflowId: string | null = null): void {
    this.db
      .prepare("INSERT INTO events (at, instance, kind, message, workflow_id) VALUES (?, ?, ?, ?, ?)")
      .run(this.now(), instance, kind, message, workflowId);
  }

  listEvents(instance: string, limit = 500): EventRow[] {
    return (
      this.db.prepare("SELECT * FROM events WHERE instance = ? ORDER BY id DESC LIMIT ?").all(instance, limit) as EventRow[]
    ).reverse();
  }

  // ---------- agent reports ----------

  /** Record once: the first report for (instance, kind, ref) wins (at-least-once delivery). */
  recordAgentReport(instanceId: string, kind: string, ref: string, data: unknown): boolean {
    const r = this.db
      .prepare("INSERT OR IGNORE INTO agent_reports (instance_id, kind, ref, data, at) VALUES (?, ?, ?, ?, ?)")
      .run(instanceId, kind, ref, JSON.stringify(data), this.now());
    return r.changes > 0;
  }

  getAgentReport(instanceId: string, kind: string, ref = ""): AgentReportRow | undefined {
    return this.db.prepare("SELECT * FROM agent_reports WHERE instance_id = ? AND kind = ? AND ref = ?").get(instanceId, kind, ref) as
      | AgentReportRow
      | undefined;
  }

  latestAgentReport(instanceId: string, kind: string): AgentReportRow | undefined {
    return this.db
      .prepare("SELECT * FROM agent_reports WHERE instance_id = ? AND kind = ? ORDER BY at DESC LIMIT 1")
      .get(instanceId, kind) as AgentReportRow | undefined;
  }

  /** Counts per table, for tests asserting that a rejected input changed nothing. */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const t of [
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
    ]) {
      out[t] = (this.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
    }
    return out;
  }
}
