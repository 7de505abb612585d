/**
 * Quiesce on the instance (design §4.1 step 2): preStop hook -> sync -> freeze (or unmount when
 * the instance is going away) each persisted filesystem, and report `quiesced` with clean/dirty
 * and per-step timings. Also the snapshot freeze (freeze-for-snapshot -> thaw or deadline).
 *
 * Invariant: a filesystem frozen here is ALWAYS thawed by its deadline, whatever happens to the
 * link: the deadline timer and an out-of-process watchdog are armed BEFORE the freeze.
 * `clean` is true when the hook (if any) and sync succeeded and every persisted filesystem was
 * frozen, unmounted, or is a directory volume (flushed by sync).
 */
import type { Clock } from "../../shared/clock.js";
import type { Hooks, StepTiming } from "../../shared/protocol.js";
import { errorText, type Logger } from "../log.js";
import type { Freezer } from "../storage/freezer.js";
import { classifyMount, DIRECTORY_VOLUME_REASON } from "../storage/filesystems.js";
import { runHook, runTool } from "./hooks.js";

export interface FilesystemReport {
  mountPoint: string;
  frozen: boolean;
  unmounted: boolean;
  reason?: string;
}

export interface QuiesceReport {
  clean: boolean;
  steps: StepTiming[];
  filesystems: FilesystemReport[];
  thawDeadline?: string;
}

export interface QuiescerOptions {
  clock: Clock;
  log: Logger;
  freezer: Freezer;
  rootDir?: string;
  protectedDevs: Map<number, string>;
  /** Model ms -> real ms. */
  scale: (modelMs: number) => number;
  hookEnv?: NodeJS.ProcessEnv;
  syncBin?: string;
}

interface Frozen {
  mountPoint: string;
  path: string;
  cancelTimer: () => void;
  cancelWatchdog: () => void;
}

export class Quiescer {
  private frozen = new Map<string, Frozen>();

  constructor(private readonly opts: QuiescerOptions) {}

  get frozenMountPoints(): string[] {
    return [...this.frozen.keys()];
  }

  /**
   * Full quiesce. `deadline` (real epoch ms) bounds the hook and is when frozen filesystems are
   * thawed at the latest.
   */
  async quiesce(args: { mountPoints: string[]; hooks?: Partial<Hooks>; unmount: boolean; deadline: number }): Promise<QuiesceReport> {
    const steps: StepTiming[] = [];
    let clean = true;
    const hook = args.hooks?.preStop;
    if (hook) {
      const budget = Math.min(
        this.opts.scale((args.hooks?.timeoutSeconds ?? 60) * 1000),
        Math.max(1, args.deadline - this.opts.clock.now()),
      );
      const step = await runHook("preStop", hook, { timeoutMs: budget, env: this.opts.hookEnv, now: () => this.opts.clock.now() });
      steps.push(step);
      if (!step.ok) clean = false;
      this.opts.log.info("preStop hook finished", { ok: step.ok, ms: step.ms });
    }
    const synced = await this.sync();
    steps.push(synced);
    if (!synced.ok) clean = false;
    const fs = await this.freezeAll(args.mountPoints, { unmount: args.unmount, thawAt: args.deadline, steps });
    if (!fs.every((f) => f.frozen || f.unmounted || f.reason === DIRECTORY_VOLUME_REASON)) clean = false;
    const anyFrozen = fs.some((f) => f.frozen);
    return { clean, steps, filesystems: fs, ...(anyFrozen ? { thawDeadline: new Date(args.deadline).toISOString() } : {}) };
  }

  /** Snapshot freeze: sync + freeze, thawed by `thaw` or after thawAfterMs (real ms). No hooks. */
  async freezeForSnapshot(args: { mountPoints: string[]; thawAfterMs: number }): Promise<QuiesceReport> {
    const steps: StepTiming[] = [];
    const synced = await this.sync();
    steps.push(synced);
    const thawAt = this.opts.clock.now() + args.thawAfterMs;
    const fs = await this.freezeAll(args.mountPoints, { unmount: false, thawAt, steps });
    const clean = synced.ok && fs.every((f) => f.frozen || f.reason === DIRECTORY_VOLUME_REASON);
    return { clean, steps, filesystems: fs, ...(fs.some((f) => f.frozen) ? { thawDeadline: new Date(thawAt).toISOString() } : {}) };
  }

  /** Thaw everything frozen (on `thaw`, shutdown, or a deadline). Never throws. */
  async thawAll(reason: string): Promise<StepTiming[]> {
    const steps: StepTiming[] = [];
    for (const f of [...this.frozen.values()]) steps.push(await this.thawOne(f, reason));
    return steps;
  }

  private async thawOne(f: Frozen, reason: string): Promise<StepTiming> {
    const started = this.opts.clock.now();
    this.frozen.delete(f.mountPoint);
    f.cancelTimer();
    try {
      await this.opts.freezer.thaw(f.path);
      f.cancelWatchdog();
      this.opts.log.info("thawed", { mountPoint: f.mountPoint, reason });
      return { name: `thaw:${f.mountPoint}`, ok: true, ms: this.ms(started), detail: reason };
    } catch (err) {
      // Leave the watchdog armed: it retries the thaw out of process at the deadline.
      this.opts.log.error("thaw failed", { mountPoint: f.mountPoint, error: errorText(err) });
      return { name: `thaw:${f.mountPoint}`, ok: false, ms: this.ms(started), detail: errorText(err) };
    }
  }

  private async sync(): Promise<StepTiming> {
    const started = this.opts.clock.now();
    const r = await runTool(this.opts.syncBin ?? "sync", [], 120_000);
    return { name: "sync", ok: r.code === 0, ms: this.ms(started), ...(r.code === 0 ? {} : { detail: r.output || `exit ${r.code}` }) };
  }

  private async freezeAll(
    mountPoints: string[],
    args: { unmount: boolean; thawAt: number; steps: StepTiming[] },
  ): Promise<FilesystemReport[]> {
    const reports: FilesystemReport[] = [];
    for (const mountPoint of mountPoints) {
      const c = classifyMount(mountPoint, { rootDir: this.opts.rootDir, protectedDevs: this.opts.protectedDevs });
      if (c.kind === "directory") {
        reports.push({ mountPoint, frozen: false, unmounted: false, reason: DIRECTORY_VOLUME_REASON });
        continue;
      }
      if (c.kind === "refused") {
        this.opts.log.warn("not freezing", { mountPoint, reason: c.reason });
        reports.push({ mountPoint, frozen: false, unmounted: false, reason: c.reason });
        continue;
      }
      if (this.frozen.has(mountPoint)) {
        reports.push({ mountPoint, frozen: true, unmounted: false, reason: "already frozen" });
        continue;
      }
      const started = this.opts.clock.now();
      if (args.unmount) {
        try {
          await this.opts.freezer.unmount(c.path);
          args.steps.push({ name: `unmount:${mountPoint}`, ok: true, ms: this.ms(started) });
          reports.push({ mountPoint, frozen: false, unmounted: true });
          continue;
        } catch (err) {
          args.steps.push({ name: `unmount:${mountPoint}`, ok: false, ms: this.ms(started), detail: errorText(err) });
          this.opts.log.warn("unmount failed; freezing instead", { mountPoint, error: errorText(err) });
        }
      }
      const report = await this.freezeOne(mountPoint, c.path, args.thawAt, args.steps);
      if (args.unmount && report.frozen) report.reason = "unmount failed; frozen instead";
      reports.push(report);
    }
    return reports;
  }

  private async freezeOne(mountPoint: string, path: string, thawAt: number, steps: StepTiming[]): Promise<FilesystemReport> {
    const started = this.opts.clock.now();
    const inMs = Math.max(1, thawAt - this.opts.clock.now());
    // Arm both thaw paths BEFORE freezing (invariant: always thawed by the deadline).
    const entry: Frozen = { mountPoint, path, cancelTimer: () => {}, cancelWatchdog: this.opts.freezer.armWatchdog(path, inMs + 250) };
    entry.cancelTimer = this.opts.clock.setTimer(inMs, () => {
      if (this.frozen.get(mountPoint) === entry) void this.thawOne(entry, "deadline reached");
    });
    this.frozen.set(mountPoint, entry);
    try {
      await this.opts.freezer.freeze(path);
      steps.push({ name: `freeze:${mountPoint}`, ok: true, ms: this.ms(started) });
      this.opts.log.info("frozen", { mountPoint, thawBy: new Date(thawAt).toISOString() });
      return { mountPoint, frozen: true, unmounted: false };
    } catch (err) {
      this.frozen.delete(mountPoint);
      entry.cancelTimer();
      entry.cancelWatchdog();
      steps.push({ name: `freeze:${mountPoint}`, ok: false, ms: this.ms(started), detail: errorText(err) });
      return { mountPoint, frozen: false, unmounted: false, reason: errorText(err) };
    }
  }

  private ms(started: number): number {
    return Math.max(0, Math.round(this.opts.clock.now() - started));
  }
}
