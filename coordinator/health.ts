/**
 * Health checks, autohealing and scheduled maintenance: on the schedule's timer, one batched
 * DescribeInstanceStatus of every live generation, and for each running stateful instance:
 *  - `health.type: agent`: the agent's heartbeats; silent while EC2 lists the instance as running
 *    = failing, from its last heartbeat;
 *  - `ec2`: EC2's system or instance status check `impaired` = failing;
 *  - `http`: the agent's last probe of the application (in its heartbeat) failed, or no fresh
 *    report arrives (the agent itself is silent) = failing.
 * Failing observations before the end of the grace period (from the generation's ready time)
 * count from its end; failing for `unhealthyDurationSeconds` after that = unhealthy: an event,
 * the `spotkeep_instances_unhealthy` gauge and, with autoHealing, a recycle (quiesce skipped when
 * the agent is silent, so the capture is crash-consistent). An EC2 scheduled event (from the same
 * DescribeInstanceStatus, or sooner when the agent relays IMDS events/maintenance/scheduled and
 * EC2 confirms it) starts a recycle `maintenance.leadSeconds` before its NotBefore.
 *
 * What is observed lives in memory: after a coordinator restart, the agent's silence and failed
 * probes count again from the restart (never from before it), so a restart can delay such a
 * verdict by at most the unhealthy duration and never hastens one. An impaired status check
 * counts from EC2's own ImpairedSince.
 */
import { perRegion, type Regions } from "./cloud/regions.js";
import type { HealthReport } from "../shared/protocol.js";
import type { InstanceDetail, InstanceSummary } from "../shared/api.js";
import { MAINTENANCE_DEFAULT, type HealthSpec } from "../shared/spec-health.js";
import type { Ec2Gateway, InstanceEventInfo, InstanceStatusInfo } from "./cloud/gateway.js";
import type { Generation, Store } from "./db/store.js";
import type { Metrics } from "./metrics.js";
import type { Operations } from "./operations.js";
import type { ScaledClock } from "../shared/clock.js";

/** How often (model ms) an agent polls its instance metadata (a spot notice among it): sent in the agent's welcome. */
export const AGENT_POLL_MS = 1_000;
/** How often (model ms) an agent heartbeats: the coordinator sends it in the agent's welcome. */
export const AGENT_HEARTBEAT_MS = 5_000;
/** Three heartbeats missed in a row is silence. */
export const AGENT_SILENT_MS = 3 * AGENT_HEARTBEAT_MS;

export type HealthStatus = "initializing" | "healthy" | "failing" | "unhealthy" | "unknown";

export interface HealthView {
  type: HealthSpec["type"];
  status: HealthStatus;
  /** Wall-clock ISO time the status began (for `failing`/`unhealthy`: the first failing observation). */
  since: string | null;
  reason: string | null;
}

export interface MaintenanceView {
  eventId: string;
  code: string;
  notBefore: string | null;
  /** When the recycle starts (NotBefore − leadSeconds); null when maintenance.recycle is false. */
  recycleAt: string | null;
}

export interface HealthDeps {
  store: Store;
  ec2: Pick<Ec2Gateway, "describeInstanceStatus">;
  /** The regions managed: each instance's status comes from its own region (absent: `ec2` for all). */
  regions?: Regions;
  operations: Pick<Operations, "startHealing">;
  metrics: Pick<Metrics, "unhealthy">;
  clock: ScaledClock;
  log: (line: string) => void;
}

interface Report {
  health: HealthReport;
  at: number;
  failingSince: number | null;
}

/** What is known about one EC2 instance (one generation). */
interface Tracked {
  name: string;
  generation: number;
  /** Wall ms of the last message from its agent (or of the first time this coordinator looked). */
  lastHeard: number;
  connected: boolean;
  /** The agent's last probe of the application; `failingSince`: the first of the current run of failing ones. */
  report: Report | null;
  /** Wall ms of the first of the current run of failing observations. */
  failingSince: number | null;
  reason: string | null;
  status: HealthStatus;
  statusSince: number;
  /** The unhealthy event (and the recycle, with autoHealing) happened for the current run. */
  acted: boolean;
  /** Scheduled events seen (by id) and those a recycle was started for. */
  eventsSeen: Set<string>;
  eventsActed: Set<string>;
  events: InstanceEventInfo[];
}

export class HealthMonitor {
  private readonly tracked = new Map<string, Tracked>();
  private readonly startedAt: number;

  constructor(private readonly d: HealthDeps) {
    this.startedAt = d.clock.now();
  }

  /** Any message from the agent of `ec2InstanceId` (hello, heartbeat, report). */
  heard(ec2InstanceId: string, connected = true): void {
    const t = this.tracked.get(ec2InstanceId);
    if (t) {
      t.lastHeard = this.d.clock.now();
      t.connected = connected;
    } else this.pendingHeard.set(ec2InstanceId, this.d.clock.now());
  }

  /** A heartbeat, with the agent's last probe of the application when it has one. */
  heartbeat(ec2InstanceId: string, health: HealthReport | undefined): void {
    this.heard(ec2InstanceId);
    if (!health) return;
    const at = this.d.clock.now();
    const t = this.tracked.get(ec2InstanceId);
    const prev = t ? t.report : this.pendingReports.get(ec2InstanceId);
    const report = { health, at, failingSince: health.ok ? null : (prev?.failingSince ?? at) };
    if (t) t.report = report;
    else this.pendingReports.set(ec2InstanceId, report);
  }

  /** The agent's connection closed. */
  disconnected(ec2InstanceId: string): void {
    const t = this.tracked.get(ec2InstanceId);
    if (t) t.connected = false;
  }

  private readonly pendingHeard = new Map<string, number>();
  private readonly pendingReports = new Map<string, Report>();
  /** When an agent's scheduled-event notice last made us ask EC2 (wall ms, by EC2 instance). */
  private readonly noticeChecks = new Map<string, number>();

  /**
   * One pass: ask EC2 about every live generation of a running instance, then judge each.
   * Returns the workflows started (autohealing and maintenance recycles).
   */
  async sweep(): Promise<string[]> {
    const now = this.d.clock.now();
    const live: Array<{ g: Generation; inst: Awaited<ReturnType<Store["instances"]["list"]>>[number] }> = [];
    for (const inst of await this.d.store.instances.list()) {
      if (inst.state !== "running") continue;
      const g = await this.d.store.generations.get(inst.name, inst.generation);
      if (!g?.ec2InstanceId || g.status !== "live" || g.readyAt === null) continue;
      live.push({ g, inst });
    }
    // Forget generations that are no longer live.
    const liveIds = new Set(live.map((l) => l.g.ec2InstanceId!));
    for (const id of [...this.tracked.keys()]) if (!liveIds.has(id)) this.tracked.delete(id);
    // What agents of generations that are not (yet) judged said: their next message says it again.
    for (const m of [this.pendingHeard, this.pendingReports, this.noticeChecks])
      for (const id of [...m.keys()]) if (!liveIds.has(id)) m.delete(id);
    if (live.length === 0) {
      this.d.metrics.unhealthy.set(0);
      return [];
    }
    const asked = await perRegion(
      this.d.regions,
      this.d.ec2,
      live,
      (l) => l.inst.spec.region,
      (ec2, xs) => ec2.describeInstanceStatus(xs.map((l) => l.g.ec2InstanceId!)),
    );
    const statuses = new Map(asked.map((s) => [s.instanceId, s]));
    const started: string[] = [];
    for (const { g, inst } of live) {
      const id = g.ec2InstanceId!;
      const t = this.track(id, g, now);
      const status = statuses.get(id);
      t.events = status?.events ?? [];
      try {
        const wf = (await this.maintenance(t, id, inst.spec.maintenance ?? MAINTENANCE_DEFAULT, now)) ?? null;
        if (wf) {
          started.push(wf);
          continue;
        }
        if (inst.spec.health) {
          const healed = await this.judge(t, id, g, inst.spec.health, status, now);
          if (healed) started.push(healed);
        }
      } catch (err) {
        this.d.log(`${inst.name}: health check of ${id}: ${(err as Error).message}`);
      }
    }
    this.d.metrics.unhealthy.set([...this.tracked.values()].filter((t) => t.status === "unhealthy").length);
    return started;
  }

  /**
   * The agent relayed IMDS events/maintenance/scheduled: ask EC2 about that instance now (the
   * agent's word alone starts nothing) and act as the sweep would. Returns the workflow started.
   */
  async maintenanceNotice(name: string, ec2InstanceId: string, code: string | undefined): Promise<string | null> {
    const inst = await this.d.store.instances.get(name);
    if (inst?.state !== "running") return null;
    const g = await this.d.store.generations.get(name, inst.generation);
    if (!g || g.ec2InstanceId !== ec2InstanceId || g.status !== "live" || g.readyAt === null) return null;
    // An agent cannot make the coordinator call EC2 for it more than once per 15 s (the sweep still looks).
    const last = this.noticeChecks.get(ec2InstanceId);
    if (last !== undefined && this.d.clock.modelMsSince(last) < AGENT_SILENT_MS) return null;
    this.noticeChecks.set(ec2InstanceId, this.d.clock.now());
    const ec2 = this.d.regions ? this.d.regions.ec2(this.d.regions.of(inst.spec)) : this.d.ec2;
    const [status] = await ec2.describeInstanceStatus([ec2InstanceId]);
    const active = (status?.events ?? []).filter((e) => e.active);
    if (active.length === 0) {
      await this.d.store.events.add(
        name,
        "maintenance-unconfirmed",
        `the agent of ${ec2InstanceId} reports a scheduled event (${code ?? "no code"}) that EC2 does not list; nothing is done`,
      );
      return null;
    }
    const now = this.d.clock.now();
    const t = this.track(ec2InstanceId, g, now);
    t.events = status?.events ?? [];
    return this.maintenance(t, ec2InstanceId, inst.spec.maintenance ?? MAINTENANCE_DEFAULT, now);
  }

  /** The health of a stateful instance's live generation, or null without `health` in its spec. */
  viewOf(name: string, spec: { health?: HealthSpec } | undefined, ec2InstanceId: string | null, state: string): HealthView | null {
    const h = spec?.health;
    if (!h) return null;
    const t = ec2InstanceId ? this.tracked.get(ec2InstanceId) : undefined;
    if (!t || t.name !== name || state !== "running")
      return { type: h.type, status: "unknown", since: null, reason: state === "running" ? "not checked yet" : `the instance is ${state}` };
    return { type: h.type, status: t.status, since: new Date(t.statusSince).toISOString(), reason: t.reason };
  }

  /** Upcoming scheduled events of a live generation, with when the recycle starts. */
  maintenanceOf(
    ec2InstanceId: string | null,
    spec: { maintenance?: { recycle: boolean; leadSeconds: number } } | undefined,
  ): MaintenanceView[] {
    const t = ec2InstanceId ? this.tracked.get(ec2InstanceId) : undefined;
    const m = spec?.maintenance ?? MAINTENANCE_DEFAULT;
    return (t?.events ?? [])
      .filter((e) => e.active)
      .map((e) => ({
        eventId: e.eventId,
        code: e.code,
        notBefore: e.notBefore === null ? null : new Date(e.notBefore).toISOString(),
        recycleAt: m.recycle && e.notBefore !== null ? new Date(this.recycleAt(e.notBefore, m.leadSeconds)).toISOString() : null,
      }));
  }

  /** Add `health` (and, in a detail, `maintenance`) to the API's read models. */
  async decorate(rows: InstanceSummary[]): Promise<InstanceSummary[]> {
    const specs = new Map((await this.d.store.instances.list()).map((i) => [i.name, i.spec]));
    return rows.map((r) => ({ ...r, health: this.viewOf(r.name, specs.get(r.name), r.instanceId, r.state) }));
  }

  decorateDetail(d: InstanceDetail | null): InstanceDetail | null {
    if (!d) return d;
    const spec = d.spec as { health?: HealthSpec; maintenance?: { recycle: boolean; leadSeconds: number } };
    return {
      ...d,
      health: this.viewOf(d.name, spec, d.instanceId, d.state),
      maintenance: d.state === "running" ? this.maintenanceOf(d.instanceId, spec) : [],
    };
  }

  private track(id: string, g: Generation, now: number): Tracked {
    let t = this.tracked.get(id);
    if (!t) {
      // Never count silence from before this coordinator (or this generation) started looking.
      const base = Math.max(g.readyAt ?? now, this.startedAt);
      const heard = this.pendingHeard.get(id);
      t = {
        name: g.instance,
        generation: g.generation,
        lastHeard: Math.max(base, heard ?? 0),
        connected: heard !== undefined,
        report: this.pendingReports.get(id) ?? null,
        failingSince: null,
        reason: null,
        status: "unknown",
        statusSince: now,
        acted: false,
        eventsSeen: new Set(),
        eventsActed: new Set(),
        events: [],
      };
      this.pendingHeard.delete(id);
      this.pendingReports.delete(id);
      this.tracked.set(id, t);
    }
    return t;
  }

  private recycleAt(notBefore: number, leadSeconds: number): number {
    // leadSeconds is model time: at a time scale it shrinks like every other coordinator duration.
    return notBefore - leadSeconds * 1000 * this.d.clock.timeScale;
  }

  /** Scheduled events: timeline once each; a recycle once the earliest is within the lead time. */
  private async maintenance(t: Tracked, id: string, m: { recycle: boolean; leadSeconds: number }, now: number): Promise<string | null> {
    const active = t.events.filter((e) => e.active && e.notBefore !== null).sort((a, b) => a.notBefore! - b.notBefore!);
    for (const e of active) {
      if (t.eventsSeen.has(e.eventId)) continue;
      t.eventsSeen.add(e.eventId);
      const at = new Date(e.notBefore!).toISOString();
      const plan = m.recycle
        ? `recycling at ${new Date(this.recycleAt(e.notBefore!, m.leadSeconds)).toISOString()} (${m.leadSeconds} s ahead)`
        : "maintenance.recycle is false: nothing is done";
      await this.d.store.events.add(t.name, "maintenance-scheduled", `EC2 scheduled ${e.code} (${e.eventId}) for ${id} at ${at}; ${plan}`);
    }
    if (!m.recycle) return null;
    const due = active.find((e) => !t.eventsActed.has(e.eventId) && now >= this.recycleAt(e.notBefore!, m.leadSeconds));
    if (!due) return null;
    const wf = await this.d.operations.startHealing(t.name, id, {
      trigger: "maintenance",
      reason: `EC2 scheduled ${due.code} (${due.eventId}) at ${new Date(due.notBefore!).toISOString()}`,
      skipQuiesce: this.silent(t, now) ? `the agent of ${id} is not answering` : undefined,
    });
    if (wf) for (const e of active) t.eventsActed.add(e.eventId);
    return wf;
  }

  private silent(t: Tracked, now: number): boolean {
    return (now - t.lastHeard) / this.d.clock.timeScale > AGENT_SILENT_MS;
  }

  /** One observation of the instance's health; returns the recycle started, if any. */
  private async judge(
    t: Tracked,
    id: string,
    g: Generation,
    h: HealthSpec,
    status: InstanceStatusInfo | undefined,
    now: number,
  ): Promise<string | null> {
    const failing = this.observe(t, h, status, now);
    const graceEnd = (g.readyAt ?? now) + h.gracePeriodSeconds * 1000 * this.d.clock.timeScale;
    const set = (s: HealthStatus, since: number, reason: string | null) => {
      if (t.status !== s) {
        t.status = s;
        t.statusSince = since;
      }
      t.reason = reason;
    };
    if (!failing) {
      if (t.status === "unhealthy" || t.acted) await this.d.store.events.add(t.name, "healthy", `${id} is healthy again (${h.type} check)`);
      t.failingSince = null;
      t.acted = false;
      if (now < graceEnd) set("initializing", g.readyAt ?? now, `grace period until ${new Date(graceEnd).toISOString()}`);
      else if (status) set("healthy", now, null);
      else set("unknown", now, "EC2 does not list it as running");
      return null;
    }
    if (t.failingSince === null || failing.since < t.failingSince) t.failingSince = failing.since;
    const counted = Math.max(t.failingSince, graceEnd);
    const unhealthyAt = counted + h.unhealthyDurationSeconds * 1000 * this.d.clock.timeScale;
    if (now < unhealthyAt) {
      if (now < graceEnd) set("initializing", g.readyAt ?? now, `${failing.reason} (within the grace period)`);
      else set("failing", t.failingSince, failing.reason);
      return null;
    }
    set("unhealthy", t.failingSince, failing.reason);
    if (t.acted) return null;
    const since = new Date(t.failingSince).toISOString();
    if (!h.autoHealing) {
      t.acted = true;
      await this.d.store.events.add(
        t.name,
        "unhealthy",
        `${id} is unhealthy since ${since}: ${failing.reason}; autoHealing is off, nothing is done`,
      );
      this.d.log(`${t.name}: ${id} unhealthy (${failing.reason}); autoHealing off`);
      return null;
    }
    const wf = await this.d.operations.startHealing(t.name, id, {
      trigger: "autohealing",
      reason: `${id} unhealthy since ${since}: ${failing.reason}`,
      skipQuiesce: this.silent(t, now) ? `the agent of ${id} is not answering` : undefined,
    });
    // Busy with another workflow (or no longer the live generation): try again next pass.
    if (wf) t.acted = true;
    return wf;
  }

  /** Whether the latest evidence says failing, since when and why; null = healthy. */
  private observe(
    t: Tracked,
    h: HealthSpec,
    status: InstanceStatusInfo | undefined,
    now: number,
  ): { since: number; reason: string } | null {
    const silentFor = (now - t.lastHeard) / this.d.clock.timeScale;
    if (h.type === "ec2") {
      if (!status) return null; // not running: the lost-instance sweep's business
      const bad = [status.system === "impaired" ? "system" : null, status.instance === "impaired" ? "instance" : null].filter(Boolean);
      if (bad.length === 0) return null;
      return { since: Math.min(status.impairedSince ?? now, now), reason: `EC2 ${bad.join(" and ")} status check impaired` };
    }
    if (!status) return null;
    if (silentFor > AGENT_SILENT_MS)
      return { since: t.lastHeard, reason: `the agent has been silent for ${Math.round(silentFor / 1000)} s while EC2 says running` };
    if (h.type === "agent") return null;
    const r = t.report;
    if (!r || r.at < t.lastHeard - AGENT_SILENT_MS * this.d.clock.timeScale) return null; // no probe result yet
    if (r.health.ok) return null;
    return {
      since: Math.min(r.failingSince ?? r.at, now),
      reason: `http://127.0.0.1:${h.http?.port}${h.http?.path} failed (${r.health.detail})`,
    };
  }
}
