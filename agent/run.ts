/**
 * `spotkeep-agent run`: the long-running agent.
 *  - polls IMDS for notices (spot interruption, rebalance, scheduled events) and reports each once;
 *  - keeps the link to the coordinator; sends `inventory` on connect, when devices change and every
 *    INVENTORY_EVERY_MS (filesystem usage changes without any device changing);
 *  - sends `ready` once per process, right after its first `welcome` (with the timings of the
 *    restore that ran before it, when there was one: restore leaves them in restored.json);
 *  - executes coordinator commands: quiesce, freeze-for-snapshot, thaw, shutdown;
 *  - when a spot interruption arrives and the coordinator cannot be reached within
 *    autonomousQuiesceAfterMs, quiesces on its own (unmount, falling back to freeze thawed by the
 *    notice's deadline) and queues the `quiesced` report in the outbox.
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { CoordinatorMessage, Mount, MessageOf, SecondaryEni, StepTiming, Hooks } from "../shared/protocol.js";
import { createContext, createLink, type AgentContext, type ContextOverrides } from "./context.js";
import type { AgentConfig } from "./config.js";
import { errorText } from "./log.js";
import { MonitorLoop } from "./monitors/loop.js";
import {
  configureSecondaryEni,
  forgetStableEni,
  linkBackendFor,
  type LinkBackend,
  releaseSecondaryEni,
  rememberedStableEni,
} from "./network/secondary.js";
import { SpotInterruptionMonitor } from "./monitors/spot-interruption.js";
import { RebalanceMonitor } from "./monitors/rebalance.js";
import { ScheduledEventsMonitor } from "./monitors/scheduled-events.js";
import { HealthProbe } from "./monitors/health-probe.js";
import type { NoticeObservation } from "./monitors/types.js";
import { Quiescer, type QuiesceReport } from "./quiesce/quiescer.js";
import { createFsFreezer, type Freezer } from "./storage/freezer.js";
import { protectedDevices } from "./storage/filesystems.js";
import { collectInventory, SOURCE_TIMEOUT_MS } from "./storage/inventory.js";
import { listVolumeDevices } from "./storage/devices.js";
import { changeVolume } from "./storage/volume-change.js";
import type { AgentLink } from "./link/client.js";

export const RESTORED_MARKER = "restored.json";
/** How often (model ms) the inventory is sent even when no device changed: the coordinator's usage checks read it. */
export const INVENTORY_EVERY_MS = 5 * 60_000;

type QuiescedReport = QuiesceReport & { network?: MessageOf<"quiesced">["network"] };

export interface RunOverrides extends ContextOverrides {
  freezer?: Freezer;
  linkBackend?: LinkBackend;
}

export class RunningAgent {
  private mounts: Mount[] = [];

  /** The mount points the agent quiesces (a volume attached without one is only synced). */
  private mountPoints(): string[] {
    return this.mounts.flatMap((m) => (m.mountPoint ? [m.mountPoint] : []));
  }
  private hooks: Partial<Hooks> = {};
  /** The one quiesce of this instance's life; a later request gets its report, never a made-up one. */
  private quiesceRun: Promise<QuiesceReport> | null = null;
  private readySent = false;
  private lastInventory = "";
  private lastDevices = "";
  private cancelDeviceWatch: (() => void) | null = null;
  private stopped = false;
  private readonly linkBackend: LinkBackend | undefined;
  readonly loop: MonitorLoop;
  readonly link: AgentLink | null;
  readonly quiescer: Quiescer;
  /** The application's health endpoint, when the coordinator asks for HTTP health checks. */
  readonly health: HealthProbe;
  private readonly done: Promise<number>;
  private resolveDone!: (code: number) => void;

  constructor(
    readonly ctx: AgentContext,
    o: RunOverrides = {},
  ) {
    const { cfg, clock, log, imds, store, scale } = ctx;
    this.done = new Promise((r) => (this.resolveDone = r));
    this.linkBackend = o.linkBackend;
    this.quiescer = new Quiescer({
      clock,
      log: log.child({ component: "quiesce" }),
      freezer: o.freezer ?? createFsFreezer(),
      rootDir: cfg.rootDir,
      protectedDevs: protectedDevices(cfg.stateDir),
      scale,
    });
    this.loop = new MonitorLoop({
      monitors: [new SpotInterruptionMonitor(imds, clock), new RebalanceMonitor(imds, clock), new ScheduledEventsMonitor(imds, clock)],
      intervalMs: scale(cfg.pollIntervalMs),
      clock,
      log: log.child({ component: "monitor" }),
      seen: store.notices,
      onNotice: (n) => this.onNotice(n),
      // instance-action carries the two-minute deadline: every pass. The others: every 5th (5 s at 1 s polling).
      every: { rebalance: 5, "scheduled-event": 5 },
    });
    this.health = new HealthProbe({ clock, log: log.child({ component: "health" }), scale });
    this.link = cfg.coordinatorUrl
      ? createLink(ctx, "run", {
          onWelcome: (m) => this.onWelcome(m),
          onCommand: (m) => this.onCommand(m),
          heartbeatExtras: () => (this.health.report ? { health: this.health.report } : {}),
        })
      : null;
  }

  start(): Promise<number> {
    this.ctx.log.info("agent running", {
      coordinator: this.ctx.cfg.coordinatorUrl ?? null,
      pollMs: this.ctx.scale(this.ctx.cfg.pollIntervalMs),
      stateDir: this.ctx.cfg.stateDir,
    });
    if (!this.link) this.ctx.log.warn("no coordinator configured: notices are only logged and kept in the outbox");
    this.ctx.store.setStatus({ mode: "run", pid: process.pid, startedAt: new Date().toISOString() });
    this.loop.start();
    this.link?.start();
    this.watchDevices();
    // A restarted agent (a reboot) puts the stable ENI's address and routes back: the OS forgot them.
    const eni = rememberedStableEni(this.ctx.cfg.stateDir, this.ctx.info.instanceId);
    if (eni) void this.reapplyEni(eni);
    return this.done;
  }

  private async reapplyEni(target: SecondaryEni): Promise<void> {
    const { imds, clock, log, scale, cfg } = this.ctx;
    try {
      const backend = this.linkBackend ?? linkBackendFor(cfg);
      await configureSecondaryEni(target, scale(60_000), { imds, backend, clock, log, scale });
    } catch (err) {
      log.warn("the stable ENI this instance carried is not here to configure", { eniId: target.eniId, error: errorText(err) });
    }
  }

  async stop(code = 0, reason = "stopping"): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.ctx.log.info("agent stopping", { reason });
    this.cancelDeviceWatch?.();
    this.health.stop();
    const thawed = await this.quiescer.thawAll(reason);
    // A filesystem whose thaw could not be verified keeps its watchdog, which outlives us.
    if (thawed.some((t) => !t.ok)) this.ctx.log.error("leaving a thaw to the watchdog", { mountPoints: this.quiescer.frozenMountPoints });
    this.quiescer.dispose();
    await this.loop.stop();
    await this.link?.stop();
    this.resolveDone(code);
  }

  private async onNotice(n: NoticeObservation): Promise<void> {
    this.ctx.store.setStatus({ lastNotice: { noticeId: n.noticeId, kind: n.kind, action: n.action, deadline: n.deadline } });
    const body = {
      type: "notice" as const,
      noticeId: n.noticeId,
      kind: n.kind,
      observedAt: n.observedAt,
      raw: n.raw.slice(0, 16_384),
      ...(n.action ? { action: n.action } : {}),
      ...(n.deadline ? { deadline: n.deadline } : {}),
    };
    if (this.link) this.link.send(body);
    else this.ctx.store.enqueue({ v: 1, id: `a-local-${n.noticeId}`, ...body });
    if (n.kind === "spot-interruption" && (n.action === "terminate" || n.action === "stop")) {
      // The quiescer caps it (far future, past, unparsable); the wait below only needs a number.
      const deadline = n.deadline ? Date.parse(n.deadline) : this.ctx.clock.now();
      void this.autonomousQuiesce(Number.isNaN(deadline) ? this.ctx.clock.now() : deadline);
    }
  }

  /** If the coordinator is unreachable after a notice, quiesce on our own before the deadline. */
  private async autonomousQuiesce(deadline: number): Promise<void> {
    const wait = Math.min(this.ctx.scale(this.ctx.cfg.autonomousQuiesceAfterMs), Math.max(0, deadline - this.ctx.clock.now()) / 2);
    const reachable = this.link ? await this.link.waitConnected(wait) : false;
    if (reachable || this.quiesceRun || this.stopped) return;
    this.ctx.log.warn("coordinator unreachable after a spot notice; quiescing on our own", { deadline: new Date(deadline).toISOString() });
    const report = await this.runQuiesce(() =>
      this.quiescer.quiesce({ mountPoints: this.mountPoints(), hooks: this.hooks, unmount: true, deadline }),
    );
    this.sendQuiesced(report, undefined);
  }

  /** Quiesce once; every later caller (the coordinator's command after an autonomous quiesce) gets the same report. */
  private runQuiesce(fn: () => Promise<QuiesceReport>): Promise<QuiesceReport> {
    this.quiesceRun ??= fn().catch((err): QuiesceReport => {
      this.ctx.log.error("quiesce failed", { error: errorText(err) });
      return { clean: false, steps: [{ name: "quiesce", ok: false, ms: 0, detail: errorText(err) }], filesystems: [] };
    });
    return this.quiesceRun;
  }

  /** Addresses, routes and rule of the stable ENI removed, link down; a failure is reported, never thrown. */
  private async releaseEni(target: SecondaryEni): Promise<NonNullable<QuiescedReport["network"]>> {
    const { imds, clock, log, scale, cfg } = this.ctx;
    try {
      // Forgotten first: an agent restarted from here on must not put it back.
      forgetStableEni(cfg.stateDir);
      const r = await releaseSecondaryEni(target, { imds, backend: this.linkBackend ?? linkBackendFor(cfg), clock, log, scale });
      return { eniId: target.eniId, ok: true, ...(r.link ? { link: r.link } : {}), reason: r.detail };
    } catch (err) {
      log.error("releasing the stable ENI failed", { eniId: target.eniId, error: errorText(err) });
      return { eniId: target.eniId, ok: false, reason: errorText(err).slice(0, 4000) };
    }
  }

  /**
   * Grow a volume's filesystem or mount a volume attached while running, and answer `volume-changed`.
   * Refused once the instance quiesced (it is going away). A mounted volume joins the mounts a
   * quiesce freezes or unmounts.
   */
  private async volumeChange(m: MessageOf<"volume-change">): Promise<void> {
    const { cfg, clock, log, scale } = this.ctx;
    log.info("volume change requested", { action: m.action, volumeId: m.volume.volumeId, mountPoint: m.volume.mountPoint });
    const report = this.quiesceRun
      ? { ok: false, volumeId: m.volume.volumeId, steps: [], reason: "the instance quiesced: it is going away" }
      : await changeVolume(m, { devDir: cfg.devDir, rootDir: cfg.rootDir, clock, log, scale });
    if (report.ok && m.action === "mount" && !this.mounts.some((x) => x.volumeId === m.volume.volumeId)) this.mounts.push(m.volume);
    const body = { type: "volume-changed" as const, ref: m.id, ...report };
    if (this.link) this.link.send(body);
    else this.ctx.store.enqueue({ v: 1, id: `a-local-v-${Date.now()}`, ...body });
  }

  private sendQuiesced(r: QuiescedReport, ref: string | undefined): void {
    const body = {
      type: "quiesced" as const,
      clean: r.clean,
      steps: r.steps,
      filesystems: r.filesystems,
      ...(r.network ? { network: r.network } : {}),
      ...(ref ? { ref } : {}),
      ...(r.thawDeadline ? { thawDeadline: r.thawDeadline } : {}),
    };
    if (this.link) this.link.send(body);
    else this.ctx.store.enqueue({ v: 1, id: `a-local-q-${Date.now()}`, ...body });
  }

  private async onWelcome(m: MessageOf<"welcome">): Promise<void> {
    this.mounts = m.config.mounts;
    this.hooks = m.config.hooks;
    this.loop.setInterval(this.ctx.scale(m.config.pollIntervalMs));
    this.health.configure(m.config.healthCheck);
    this.ctx.store.setStatus({ connected: true, statefulInstance: m.statefulInstance, generation: m.generation });
    // `ready` first: the coordinator's restore step (and the downtime) ends with it, and nothing
    // there waits for the inventory, which takes IMDS round trips to collect.
    if (!this.readySent) {
      this.readySent = true;
      this.link?.send({ type: "ready", instanceId: this.ctx.info.instanceId, steps: this.restoreSteps() });
    }
    await this.sendInventory(true);
  }

  private restoreSteps(): StepTiming[] {
    const marker = join(this.ctx.cfg.stateDir, RESTORED_MARKER);
    try {
      const data = JSON.parse(readFileSync(marker, "utf8")) as { instanceId?: string; steps?: StepTiming[] };
      rmSync(marker, { force: true });
      if (data.instanceId === this.ctx.info.instanceId && Array.isArray(data.steps)) return data.steps.slice(0, 63);
    } catch {
      /* no restore happened before this run */
    }
    return [];
  }

  private async sendInventory(force: boolean): Promise<void> {
    try {
      const inv = await collectInventory({
        imds: this.ctx.imds,
        devDir: this.ctx.cfg.devDir,
        rootDir: this.ctx.cfg.rootDir,
        mounts: this.mounts,
        setTimer: this.ctx.clock.setTimer,
        timeoutMs: this.ctx.scale(SOURCE_TIMEOUT_MS),
      });
      const text = JSON.stringify(inv);
      if (!force && text === this.lastInventory) return;
      this.lastInventory = text;
      this.link?.send(inv);
    } catch (err) {
      this.ctx.log.warn("collecting inventory failed", { error: errorText(err) });
    }
  }

  /**
   * Cheap change detection (a readdir + realpaths) every 5 s; a full inventory when the set changes,
   * and every INVENTORY_EVERY_MS regardless.
   */
  private watchDevices(): void {
    let sinceFull = 0;
    const tick = () => {
      if (this.stopped) return;
      const sig = JSON.stringify(listVolumeDevices(this.ctx.cfg.devDir));
      sinceFull += 5_000;
      if (this.link?.connected) {
        if (sinceFull >= INVENTORY_EVERY_MS) {
          sinceFull = 0;
          void this.sendInventory(true);
        } else if (this.lastDevices && sig !== this.lastDevices) void this.sendInventory(false);
      }
      this.lastDevices = sig;
      this.cancelDeviceWatch = this.ctx.clock.setTimer(this.ctx.scale(5_000), tick);
    };
    tick();
  }

  private async onCommand(m: CoordinatorMessage): Promise<void> {
    const log = this.ctx.log;
    switch (m.type) {
      case "quiesce": {
        log.info("quiesce requested", { reason: m.reason, deadline: m.deadline, unmount: m.unmount });
        const report = await this.runQuiesce(() =>
          this.quiescer.quiesce({
            mountPoints: this.mountPoints(),
            hooks: this.hooks,
            unmount: m.unmount,
            deadline: Date.parse(m.deadline),
          }),
        );
        // A second quiesce (e.g. after we quiesced on our own) is answered with that quiesce's own
        // report: claiming clean would let the next generation skip its filesystem check.
        // The stable ENI is released on every such request (idempotent): it is about to be detached.
        const network = m.releaseEni ? await this.releaseEni(m.releaseEni) : undefined;
        this.sendQuiesced(network ? { ...report, network } : report, m.id);
        return;
      }
      case "freeze-for-snapshot": {
        const report = await this.quiescer.freezeForSnapshot({
          mountPoints: this.mountPoints(),
          thawAfterMs: this.ctx.scale(m.thawAfterMs),
        });
        this.sendQuiesced(report, m.id);
        return;
      }
      case "thaw":
        await this.quiescer.thawAll("thaw requested");
        return;
      case "shutdown":
        await this.stop(0, `coordinator asked: ${m.reason ?? "shutdown"}`);
        return;
      case "restore-plan":
        log.warn("ignoring a restore-plan in run mode (restore runs as `spotkeep-agent restore`)");
        return;
      case "volume-change":
        return this.volumeChange(m);
      case "error":
        log.warn("coordinator reported an error", { code: m.code, message: m.message, ref: m.ref });
        return;
      default:
        return;
    }
  }
}

export async function runMode(cfg: AgentConfig, o: RunOverrides = {}): Promise<number> {
  const ctx = await createContext(cfg, o);
  const agent = new RunningAgent(ctx, o);
  const onSignal = (sig: string) => void agent.stop(0, `signal ${sig}`);
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  try {
    return await agent.start();
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
  }
}
