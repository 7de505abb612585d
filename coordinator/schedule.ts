/**
 * The periodic schedule: on one timer (model time), find live generations EC2 says are gone
 * (lost without a notice) and start their replacement, then start the continuous snapshots that
 * are due, then delete what deleted instances kept once its TTL has expired, then run the health
 * checks and the recycles ahead of scheduled maintenance (`health.ts`), then the spec's scheduled
 * tasks that are due (`tasks.ts`). Each pass finishes before the next is scheduled, so passes
 * never overlap.
 */
import { perRegion, type Regions } from "./cloud/regions.js";
import type { Ec2Gateway } from "./cloud/gateway.js";
import type { Store } from "./db/store.js";
import { sweepExpiredKept } from "./kept.js";
import type { Metrics } from "./metrics.js";
import { inWeeklyWindow } from "../shared/spec.js";
import { type Operations, REVERT_TRIGGER } from "./operations.js";
import type { ScaledClock } from "../shared/clock.js";
import type { ScheduledTasks } from "./tasks.js";

export interface ScheduleDeps {
  store: Store;
  ec2: Ec2Gateway;
  /** The regions managed: each generation is looked for, and each kept resource deleted, in its instance's region. */
  regions?: Regions;
  operations: Operations;
  metrics: Metrics;
  clock: ScaledClock;
  /** Model ms between passes. */
  intervalMs: number;
  /** Model ms between attempts to move an on-demand generation back to spot. */
  revertToSpotIntervalMs: number;
  /** Disaster-recovery copies made and pruned (coordinator/region-copies.ts), once per pass. */
  regionCopies?: () => Promise<unknown>;
  /** Health checks, autohealing and scheduled maintenance (coordinator/health.ts), once per pass. */
  health?: { sweep(): Promise<string[]> };
  /** Called at the start of every pass (gauges that are cheapest to refresh on a timer). */
  onTick?: () => void;
  /** The spec's scheduled tasks (pause, resume, recycle, snapshot on a cron expression). */
  tasks?: ScheduledTasks;
  log: (line: string) => void;
}

export class Schedule {
  private cancel: (() => void) | null = null;
  private stopped = false;

  constructor(private readonly d: ScheduleDeps) {}

  start(): void {
    this.stopped = false;
    this.next();
  }

  stop(): void {
    this.stopped = true;
    this.cancel?.();
    this.cancel = null;
  }

  private next(): void {
    if (this.stopped) return;
    this.cancel = this.d.clock.setTimer(this.d.intervalMs, () => {
      this.d.onTick?.();
      this.sweepLost()
        .catch((err) => this.d.log(`lost-instance sweep: ${(err as Error).message}`))
        .then(() => this.dueSnapshots())
        .catch((err) => this.d.log(`scheduled snapshots: ${(err as Error).message}`))
        .then(() => this.revertToSpot())
        .catch((err) => this.d.log(`move back to spot: ${(err as Error).message}`))
        .then(() => sweepExpiredKept(this.d))
        .catch((err) => this.d.log(`kept-resource sweep: ${(err as Error).message}`))
        .then(() => this.d.regionCopies?.())
        .catch((err) => this.d.log(`region copies: ${(err as Error).message}`))
        .then(() => this.d.health?.sweep())
        .catch((err) => this.d.log(`health checks: ${(err as Error).message}`))
        .then(() => this.d.tasks?.pass())
        .catch((err) => this.d.log(`scheduled tasks: ${(err as Error).message}`))
        .finally(() => this.next());
    });
  }

  /** Lost without notice: one batched DescribeInstances of every live generation. Returns the workflows started. */
  async sweepLost(): Promise<string[]> {
    const live = await this.d.store.generations.live();
    if (live.length === 0) return [];
    const specs = this.d.regions ? new Map((await this.d.store.instances.list()).map((i) => [i.name, i.spec])) : null;
    const withIds = live.filter((g) => g.ec2InstanceId !== null);
    const found = await perRegion(
      this.d.regions,
      this.d.ec2,
      withIds,
      (g) => specs?.get(g.instance)?.region,
      (ec2, gs) => ec2.describeInstances(gs.map((g) => g.ec2InstanceId!)),
    );
    const seen = new Map(found.map((i) => [i.instanceId, i]));
    const started: string[] = [];
    for (const g of live) {
      if (!g.ec2InstanceId) continue;
      const i = seen.get(g.ec2InstanceId);
      if (i && i.state !== "shutting-down" && i.state !== "terminated") continue;
      // A notice may be on its way; a replacement already running is left alone by startReplace.
      const why = `${g.ec2InstanceId} found ${i?.state ?? "missing"} without a notice${i?.stateReason ? ` (${i.stateReason})` : ""}`;
      const id = await this.d.operations.startReplace(
        { name: g.instance, instanceId: g.ec2InstanceId, fromGeneration: g.generation, trigger: "lost" },
        why,
      );
      if (id) {
        this.d.metrics.interruptions.inc({ kind: "lost" });
        started.push(id);
      }
    }
    return started;
  }

  /**
   * Move back to spot: an instance whose spec wants spot and allows it (revertToSpot, within its
   * revertWindow) but whose live generation runs on-demand gets a recycle that first checks spot
   * capacity, at most once per revertToSpotIntervalMs (the last attempt is the last such workflow).
   */
  async revertToSpot(): Promise<string[]> {
    const started: string[] = [];
    for (const inst of await this.d.store.instances.list()) {
      const m = inst.spec.launch.market;
      if (inst.state !== "running" || m.type !== "spot" || !m.revertToSpot) continue;
      if (m.revertWindow && !inWeeklyWindow(m.revertWindow, this.d.clock.now())) continue;
      const g = await this.d.store.generations.get(inst.name, inst.generation);
      if (g?.market !== "on-demand") continue;
      const last = (await this.d.store.workflows.listFor(inst.name)).filter((w) => w.trigger === REVERT_TRIGGER).at(-1);
      const since = Math.max(last?.startedAt ?? 0, g.readyAt ?? 0);
      if (this.d.clock.modelMsSince(since) < this.d.revertToSpotIntervalMs) continue;
      const id = await this.d.operations.startRevertToSpot(inst.name);
      if (id) started.push(id);
    }
    return started;
  }

  /** Continuous snapshots: every `snapshots.intervalMinutes` of model time since the last snapshot or the generation's start. */
  async dueSnapshots(): Promise<string[]> {
    const started: string[] = [];
    for (const inst of await this.d.store.instances.list()) {
      if (inst.state !== "running") continue;
      const { intervalMinutes } = inst.spec.snapshots;
      if (!(intervalMinutes > 0) || inst.spec.persistence.volumes.length === 0) continue;
      const [latest] = await this.d.store.artifacts.list(inst.name, "data-snapshot");
      const g = await this.d.store.generations.get(inst.name, inst.generation);
      const last = Math.max(latest?.createdAt ?? 0, g?.readyAt ?? 0);
      if (this.d.clock.modelMsSince(last) < intervalMinutes * 60_000) continue;
      const id = await this.d.operations.startSnapshot(inst.name, `every ${intervalMinutes} min`);
      if (id) started.push(id);
    }
    return started;
  }
}
