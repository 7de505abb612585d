/**
 * Read models: turn the store's domain objects into the HTTP API shapes of shared/api.ts. Times in
 * the store are wall-clock ms; durations are reported in model time (real / timeScale).
 */
import type { EventsResponse, InstanceDetail, InstanceSummary, InventoryView, Timeline, Workflow, WorkflowStep } from "../shared/api.js";
import { STEP } from "../shared/steps.js";
import type { GenerationInventory, StatefulInstance, StepRecord, Store, WorkflowRecord } from "./db/store.js";
import { type InventoryData, usedRatio } from "./inventory.js";
import { allowedActions, factsOf } from "./lifecycle.js";
import { taskViews } from "./tasks.js";

const iso = (ms: number | null | undefined) => (ms == null ? null : new Date(ms).toISOString());

export class Views {
  constructor(
    private readonly store: Store,
    private readonly timeScale = 1,
    /** The wall clock scheduled tasks are read on (their next runs). */
    private readonly calendar: () => number = Date.now,
  ) {}

  private async summaryOf(inst: StatefulInstance): Promise<InstanceSummary> {
    const g = inst.generation > 0 ? await this.store.generations.get(inst.name, inst.generation) : null;
    const facts = await factsOf(this.store, inst, g);
    const last = (await this.timelines(inst.name)).filter((t) => t.kind === "replace" && t.downtimeSeconds !== null).at(-1);
    return {
      name: inst.name,
      state: inst.state,
      stateReason: inst.stateReason,
      generation: inst.generation,
      instanceId: g?.ec2InstanceId ?? null,
      instanceType: g?.instanceType ?? null,
      availabilityZone: g?.availabilityZone ?? null,
      lifecycle: g?.market ?? null,
      // attach: secondary: clients use the stable ENI's address, not the generation's own primary one.
      privateIp:
        (inst.spec.persistence.network.attach === "secondary" ? (await this.store.network.get(inst.name))?.privateIp : null) ??
        g?.privateIp ??
        (await this.store.network.get(inst.name))?.privateIp ??
        null,
      lastDowntimeSeconds: last?.downtimeSeconds ?? null,
      liveSince: g && g.endedAt == null ? iso(g.launchedAt) : null,
      lastInterruptionAt: last?.startedAt ?? null,
      allowedActions: allowedActions(facts),
      // A deleted instance's kept resources, and what a relocate left in the old region (kept until deleted by hand).
      ...(await this.keptOf(inst)),
    };
  }

  private async keptOf(inst: StatefulInstance): Promise<Pick<InstanceSummary, "kept">> {
    const kept = await this.store.deletions.kept(inst.name);
    if (inst.state !== "deleted" && kept.length === 0) return {};
    return { kept: kept.map((k) => ({ resourceId: k.resourceId, kind: k.kind, expiresAt: iso(k.expiresAt), gone: k.deletedAt !== null })) };
  }

  async summary(name: string): Promise<InstanceSummary | null> {
    const inst = await this.store.instances.get(name);
    return inst ? this.summaryOf(inst) : null;
  }

  /** Every stateful instance; with includeDeleted, the deleted ones too (under their archived names, after the others). */
  async list(o: { includeDeleted?: boolean } = {}): Promise<InstanceSummary[]> {
    const out: InstanceSummary[] = [];
    const deleted = o.includeDeleted ? await this.store.deletions.listDeleted() : [];
    for (const inst of [...(await this.store.instances.list()), ...deleted]) out.push(await this.summaryOf(inst));
    return out;
  }

  async detail(name: string): Promise<InstanceDetail | null> {
    const inst = await this.store.instances.get(name);
    if (!inst) return null;
    const [s, root, net, volumes, generations, taskRuns, inventory, ...artifacts] = await Promise.all([
      this.summaryOf(inst),
      this.store.root.get(name),
      this.store.network.get(name),
      this.store.volumes.list(name),
      this.store.generations.list(name),
      this.store.taskRuns.list(name),
      inst.generation > 0 ? this.store.generations.inventory(name, inst.generation) : Promise.resolve(null),
      this.store.artifacts.list(name, "data-snapshot"),
      this.store.artifacts.list(name, "root-snapshot"),
      this.store.artifacts.list(name, "image"),
      this.store.artifacts.list(name, "snapshot-copy"),
      this.store.artifacts.list(name, "image-copy"),
    ]);
    return {
      ...s,
      spec: inst.spec,
      resources: {
        volumes: volumes.map((v) => ({
          device: v.device,
          mountPoint: v.mountPoint,
          volumeId: v.volumeId,
          latestSnapshotId: v.latestSnapshotId,
          availabilityZone: v.availabilityZone,
        })),
        root: { imageId: root?.imageId ?? null, snapshotId: root?.snapshotId ?? null },
        network: { eniId: net?.eniId ?? null, privateIp: net?.privateIp ?? null },
        artifacts: artifacts
          .flat()
          .sort((a, b) => b.createdAt - a.createdAt)
          .map((a) => ({
            id: a.id,
            kind: a.kind,
            device: a.device,
            generation: a.generation,
            ...(a.region ? { region: a.region, sourceId: a.sourceId } : {}),
            createdAt: iso(a.createdAt) ?? "",
          })),
      },
      generations: generations.map((g) => ({
        generation: g.generation,
        instanceId: g.ec2InstanceId,
        instanceType: g.instanceType,
        availabilityZone: g.availabilityZone,
        lifecycle: g.market,
        launchedAt: iso(g.launchedAt),
        endedAt: iso(g.endedAt),
        endReason: g.endReason,
      })),
      schedule: taskViews(inst.spec.schedule ?? [], taskRuns, this.calendar()).map((t) => ({
        action: t.action,
        cron: t.cron,
        nextRunAt: iso(t.nextRunAt),
        lastDueAt: iso(t.lastDueAt),
        lastOutcome: t.lastOutcome,
        lastWorkflowId: t.lastWorkflowId,
      })),
      inventory: inventory ? inventoryView(inventory) : null,
    };
  }

  private step(s: StepRecord): WorkflowStep {
    return {
      seq: s.seq,
      name: s.name,
      status: s.status,
      attempts: s.attempts,
      startedAt: iso(s.startedAt),
      endedAt: iso(s.endedAt),
      durationMs: s.startedAt != null && s.endedAt != null ? Math.round((s.endedAt - s.startedAt) / this.timeScale) : null,
      error: s.failure?.message ?? null,
    };
  }

  async workflow(id: string): Promise<Workflow | null> {
    const w = await this.store.workflows.get(id);
    if (!w) return null;
    return {
      id: w.id,
      kind: w.kind,
      instance: w.instance,
      status: w.status,
      startedAt: iso(w.startedAt) ?? "",
      finishedAt: iso(w.finishedAt),
      error: w.error,
      steps: (await this.store.steps.list(id)).map((s) => this.step(s)),
    };
  }

  async timeline(w: WorkflowRecord): Promise<Timeline> {
    const steps = await this.store.steps.list(w.id);
    const byName = (n: string) => steps.find((s) => s.name === n);
    const ready = byName(STEP.restore)?.endedAt ?? null;
    // Make-before-break quiesces in its cutover quiesce step (the replacement was ready before it).
    const quiesce = (byName(STEP.quiesce) ?? byName(STEP.cutoverQuiesce))?.startedAt ?? null;
    const inputTrigger = (w.input as { trigger?: unknown } | null)?.trigger;
    const model = (ms: number) => Math.round(ms / this.timeScale) / 1000;
    const downFrom = w.kind === "replace" ? (quiesce ?? w.startedAt) : null;
    return {
      workflowId: w.id,
      kind: w.kind,
      trigger: w.trigger ?? (typeof inputTrigger === "string" ? inputTrigger : null),
      startedAt: iso(w.startedAt) ?? "",
      finishedAt: iso(w.finishedAt),
      outcome: w.status,
      downtimeSeconds: downFrom != null && ready != null ? model(ready - downFrom) : null,
      downtimeFrom: iso(downFrom),
      recoverySeconds: w.kind === "replace" && ready != null ? model(ready - w.startedAt) : null,
      steps: steps.map((s) => this.step(s)),
      criticalPath: criticalPath(steps),
      timeScale: this.timeScale,
    };
  }

  async timelines(name: string): Promise<Timeline[]> {
    const out: Timeline[] = [];
    for (const w of await this.store.workflows.listFor(name)) out.push(await this.timeline(w));
    return out;
  }

  async events(name: string): Promise<EventsResponse | null> {
    if (!(await this.store.instances.get(name))) return null;
    return {
      name,
      timelines: await this.timelines(name),
      events: (await this.store.events.list(name)).map((e) => ({
        at: iso(e.at) ?? "",
        kind: e.kind,
        message: e.message,
        workflowId: e.workflowId,
      })),
    };
  }
}

/**
 * The chain of steps that determined the finish time: from the last step to finish, repeatedly
 * the step that finished last before it started.
 */
export function criticalPath(steps: StepRecord[]): string[] {
  const done = steps.filter((s): s is StepRecord & { startedAt: number; endedAt: number } => s.startedAt != null && s.endedAt != null);
  if (done.length === 0) return [];
  let cur = done.reduce((a, b) => (b.endedAt > a.endedAt || (b.endedAt === a.endedAt && b.seq > a.seq) ? b : a));
  const path = [cur];
  for (;;) {
    const start = cur.startedAt;
    const prev = done
      .filter((s) => s !== cur && s.endedAt <= start && s.seq < cur.seq)
      .reduce<(typeof done)[number] | null>((a, b) => (!a || b.endedAt > a.endedAt ? b : a), null);
    if (!prev) break;
    path.unshift(prev);
    cur = prev;
  }
  return path.map((s) => s.name);
}

/** The recorded inventory as the API shows it (it was validated before it was recorded). */
function inventoryView(r: GenerationInventory): InventoryView {
  const d = r.data as InventoryData;
  return {
    generation: r.generation,
    instanceId: r.ec2InstanceId,
    receivedAt: iso(r.at) ?? "",
    instanceType: d.instanceType,
    availabilityZone: d.availabilityZone,
    imageId: d.imageId,
    devices: d.devices,
    filesystems: (d.filesystems ?? []).map((f) => ({ ...f, usedRatio: usedRatio(f) })),
    networkInterfaces: d.networkInterfaces ?? [],
  };
}
