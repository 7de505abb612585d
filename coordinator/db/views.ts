/**
 * Read models: turn store rows into the HTTP API shapes of shared/api.ts. Times in the store are
 * wall-clock ms; durations are reported in model time (real / timeScale, design §9).
 */
import type { EventsResponse, InstanceDetail, InstanceSummary, Timeline, Workflow, WorkflowStep } from "../../shared/api.js";
import type { GenerationRow, StepRow, Store, WorkflowRow } from "./queries.js";

const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString());

export class Views {
  constructor(
    private readonly store: Store,
    private readonly timeScale = 1,
  ) {}

  private current(name: string, generation: number): GenerationRow | undefined {
    return generation > 0 ? this.store.getGeneration(name, generation) : undefined;
  }

  summary(name: string): InstanceSummary | null {
    const row = this.store.getInstance(name);
    if (!row) return null;
    const g = this.current(name, row.generation);
    const last = this.timelines(name)
      .filter((t) => t.kind === "replace" && t.downtimeSeconds !== null)
      .at(-1);
    return {
      name: row.name,
      state: row.state,
      stateReason: row.state_reason,
      generation: row.generation,
      instanceId: g?.instance_id ?? null,
      instanceType: g?.instance_type ?? null,
      availabilityZone: g?.availability_zone ?? null,
      lifecycle: g?.lifecycle ?? null,
      privateIp: g?.private_ip ?? this.store.getNetwork(name)?.private_ip ?? null,
      lastDowntimeSeconds: last?.downtimeSeconds ?? null,
    };
  }

  list(): InstanceSummary[] {
    return this.store.listInstances().map((r) => this.summary(r.name)!);
  }

  detail(name: string): InstanceDetail | null {
    const s = this.summary(name);
    const row = this.store.getInstance(name);
    if (!s || !row) return null;
    const root = this.store.getRoot(name);
    const net = this.store.getNetwork(name);
    return {
      ...s,
      spec: JSON.parse(row.spec),
      resources: {
        volumes: this.store.listVolumes(name).map((v) => ({
          device: v.device,
          mountPoint: v.mount_point,
          volumeId: v.volume_id,
          latestSnapshotId: v.latest_snapshot_id,
          availabilityZone: v.availability_zone,
        })),
        root: { imageId: root?.image_id ?? null, snapshotId: root?.snapshot_id ?? null },
        network: { eniId: net?.eni_id ?? null, privateIp: net?.private_ip ?? null },
      },
      generations: this.store.listGenerations(name).map((g) => ({
        generation: g.generation,
        instanceId: g.instance_id,
        instanceType: g.instance_type,
        availabilityZone: g.availability_zone,
        lifecycle: g.lifecycle,
        launchedAt: iso(g.launched_at),
        endedAt: iso(g.ended_at),
        endReason: g.end_reason,
      })),
    };
  }

  private step(s: StepRow): WorkflowStep {
    return {
      seq: s.seq,
      name: s.name,
      status: s.status,
      attempts: s.attempts,
      startedAt: iso(s.started_at),
      endedAt: iso(s.ended_at),
      durationMs: s.started_at != null && s.ended_at != null ? Math.round((s.ended_at - s.started_at) / this.timeScale) : null,
      error: s.error,
    };
  }

  workflow(id: string): Workflow | null {
    const w = this.store.getWorkflow(id);
    if (!w) return null;
    return {
      id: w.id,
      kind: w.kind,
      instance: w.instance,
      status: w.status,
      startedAt: iso(w.started_at)!,
      finishedAt: iso(w.finished_at),
      error: w.error,
      steps: this.store.listSteps(id).map((s) => this.step(s)),
    };
  }

  timeline(w: WorkflowRow): Timeline {
    const steps = this.store.listSteps(w.id);
    const byName = (n: string) => steps.find((s) => s.name === n);
    const ready = byName("restore")?.ended_at ?? null;
    const quiesce = byName("quiesce")?.started_at ?? null;
    const input = JSON.parse(w.input) as { trigger?: string };
    const model = (ms: number) => Math.round(ms / this.timeScale) / 1000;
    const downFrom = w.kind === "replace" ? (quiesce ?? w.started_at) : null;
    return {
      workflowId: w.id,
      kind: w.kind,
      trigger: w.trigger ?? input.trigger ?? null,
      startedAt: iso(w.started_at)!,
      finishedAt: iso(w.finished_at),
      outcome: w.status,
      downtimeSeconds: downFrom != null && ready != null ? model(ready - downFrom) : null,
      recoverySeconds: w.kind === "replace" && ready != null ? model(ready - w.started_at) : null,
      steps: steps.map((s) => this.step(s)),
      criticalPath: criticalPath(steps),
      timeScale: this.timeScale,
    };
  }

  timelines(name: string): Timeline[] {
    return this.store.workflowsFor(name).map((w) => this.timeline(w));
  }

  events(name: string): EventsResponse | null {
    if (!this.store.getInstance(name)) return null;
    return {
      name,
      timelines: this.timelines(name),
      events: this.store.listEvents(name).map((e) => ({ at: iso(e.at)!, kind: e.kind, message: e.message, workflowId: e.workflow_id })),
    };
  }
}

/**
 * The chain of steps that determined the finish time: from the last step to finish, repeatedly
 * the step that finished last before it started.
 */
export function criticalPath(steps: StepRow[]): string[] {
  const done = steps.filter((s) => s.started_at != null && s.ended_at != null);
  if (done.length === 0) return [];
  let cur = done.reduce((a, b) => (b.ended_at! > a.ended_at! || (b.ended_at === a.ended_at && b.seq > a.seq) ? b : a));
  const path = [cur];
  for (;;) {
    const start = cur.started_at!;
    const prev = done
      .filter((s) => s !== cur && s.ended_at! <= start && s.seq < cur.seq)
      .reduce<StepRow | null>((a, b) => (!a || b.ended_at! > a.ended_at! ? b : a), null);
    if (!prev) break;
    path.unshift(prev);
    cur = prev;
  }
  return path.map((s) => s.name);
}
