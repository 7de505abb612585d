/**
 * Quiesce on the instance: preStop hook -> sync -> freeze (or unmount when the instance is going
 * away) each persisted filesystem, and report `quiesced` with clean/dirty and per-step timings.
 * Also the snapshot freeze (freeze-for-snapshot -> thaw or deadline).
 *
 * Invariant: a filesystem frozen here is ALWAYS thawed by its deadline, whatever happens to the
 * link: the deadline timer and an out-of-process watchdog are armed BEFORE the freeze, and every
 * deadline the agent is given is capped (capDeadline) so a far-future or garbage deadline cannot
 * keep a filesystem frozen.
 *
 * Thaw rule: a filesystem counts as thawed only when a thaw call, made after our freeze call has
 * returned, answers "not frozen". A thaw never runs while our freeze of that filesystem is in flight
 * (it would find "not frozen" and the freeze would then complete): a deadline that fires during the
 * freeze waits for it, then thaws. A successful thaw is confirmed by a second one answering "not
 * frozen". Until a thaw is verified the watchdog stays armed and the thaw is retried every second.
 *
 * `clean` is true when the hook (if any) and sync succeeded and every persisted filesystem was
 * frozen, unmounted, or is a directory volume (flushed by sync).
 */
import type { Clock } from "../../shared/clock.js";
import type { Hooks, StepTiming } from "../../shared/protocol.js";
import { errorText, type Logger } from "../log.js";
import { FreezeError, type Freezer } from "../storage/freezer.js";
import { classifyMount, DIRECTORY_VOLUME_REASON } from "../storage/filesystems.js";
import { runTool } from "../tool.js";
import { runHook } from "./hooks.js";

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
  /** Longest a filesystem stays frozen, whatever deadline is given (real ms). Default MAX_FREEZE_MS. */
  maxFreezeMs?: number;
  /** Time given when the deadline is already past, too close, or not a time (real ms). Default MIN_FREEZE_MS. */
  minFreezeMs?: number;
}

/** No deadline the agent is given keeps a filesystem frozen longer than this (EC2's notice is two minutes). */
export const MAX_FREEZE_MS = 10 * 60_000;
/** A deadline in the past, or closer than this, gets this much time: enough for the freeze call to return. */
export const MIN_FREEZE_MS = 1_000;

/**
 * A deadline (epoch ms) the agent can act on: between now + min and now + max. NaN (an unparsable
 * time) is treated as "now". `capped` says what was changed, for the log.
 */
export function capDeadline(deadline: number, now: number, o: { minMs?: number; maxMs?: number } = {}): { at: number; capped?: string } {
  const min = now + (o.minMs ?? MIN_FREEZE_MS);
  const max = now + (o.maxMs ?? MAX_FREEZE_MS);
  if (Number.isNaN(deadline)) return { at: min, capped: "not a time" };
  if (deadline < min) return { at: min, capped: deadline < now ? "in the past" : "too close" };
  if (deadline > max) return { at: max, capped: "too far away" };
  return { at: deadline };
}

interface Frozen {
  mountPoint: string;
  path: string;
  /** Our freeze call while it runs; a thaw waits for it. */
  freezing: Promise<void> | null;
  /** The thaw in progress, so concurrent thaws (deadline + `thaw`) share one. */
  thawing: Promise<StepTiming> | null;
  cancelTimer: () => void;
  cancelWatchdog: () => void;
}

/** Between thaw attempts while a thaw cannot be verified (real ms). */
const THAW_RETRY_MS = 1_000;

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
    const deadline = this.cap(args.deadline, "quiesce");
    const steps: StepTiming[] = [];
    let clean = true;
    const hook = args.hooks?.preStop;
    if (hook) {
      const budget = Math.min(this.opts.scale((args.hooks?.timeoutSeconds ?? 60) * 1000), Math.max(1, deadline - this.opts.clock.now()));
      const step = await runHook("preStop", hook, { timeoutMs: budget, env: this.opts.hookEnv, now: () => this.opts.clock.now() });
      steps.push(step);
      if (!step.ok) clean = false;
      this.opts.log.info("preStop hook finished", { ok: step.ok, ms: step.ms });
    }
    const synced = await this.sync();
    steps.push(synced);
    if (!synced.ok) clean = false;
    const fs = await this.freezeAll(args.mountPoints, { unmount: args.unmount, thawAt: deadline, steps });
    if (!fs.every((f) => f.frozen || f.unmounted || f.reason === DIRECTORY_VOLUME_REASON)) clean = false;
    const anyFrozen = fs.some((f) => f.frozen);
    return { clean, steps, filesystems: fs, ...(anyFrozen ? { thawDeadline: new Date(deadline).toISOString() } : {}) };
  }

  /** Snapshot freeze: sync + freeze, thawed by `thaw` or after thawAfterMs (real ms). No hooks. */
  async freezeForSnapshot(args: { mountPoints: string[]; thawAfterMs: number }): Promise<QuiesceReport> {
    const steps: StepTiming[] = [];
    const synced = await this.sync();
    steps.push(synced);
    const thawAt = this.cap(this.opts.clock.now() + args.thawAfterMs, "freeze-for-snapshot");
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

  /** Stop in-process thaw retries (agent shutdown); watchdogs of filesystems not verifiably thawed stay armed. */
  dispose(): void {
    for (const f of this.frozen.values()) f.cancelTimer();
  }

  private thawOne(f: Frozen, reason: string): Promise<StepTiming> {
    if (!f.thawing) {
      f.thawing = this.thawVerified(f, reason).finally(() => {
        f.thawing = null;
      });
    }
    return f.thawing;
  }

  private async thawVerified(f: Frozen, reason: string): Promise<StepTiming> {
    const started = this.opts.clock.now();
    f.cancelTimer();
    const name = `thaw:${f.mountPoint}`;
    try {
      if (f.freezing) {
        this.opts.log.warn("thaw waits for the freeze call still running", { mountPoint: f.mountPoint, reason });
        await f.freezing.catch(() => {});
      }
      // "thawed" then "not-frozen": the second call proves nothing froze it again in between.
      let verified = false;
      for (let i = 0; i < 3 && !verified; i++) verified = (await this.opts.freezer.thaw(f.path)) === "not-frozen";
      if (!verified) throw new Error("still frozen after 3 thaw calls");
      if (this.frozen.get(f.mountPoint) === f) this.frozen.delete(f.mountPoint);
      f.cancelWatchdog();
      this.opts.log.info("thawed", { mountPoint: f.mountPoint, reason });
      return { name, ok: true, ms: this.ms(started), detail: reason };
    } catch (err) {
      // Not verifiably thawed: keep the watchdog and the entry, and try again shortly.
      this.opts.log.error("thaw failed; retrying (the watchdog stays armed)", { mountPoint: f.mountPoint, error: errorText(err) });
      f.cancelTimer = this.opts.clock.setTimer(THAW_RETRY_MS, () => {
        if (this.frozen.get(f.mountPoint) === f) void this.thawOne(f, `retry after a failed thaw (${reason})`);
      });
      return { name, ok: false, ms: this.ms(started), detail: errorText(err) };
    }
  }

  /** Cap a deadline (capDeadline) and say so in the log when it was changed. */
  private cap(deadline: number, what: string): number {
    const now = this.opts.clock.now();
    const r = capDeadline(deadline, now, { minMs: this.opts.minFreezeMs, maxMs: this.opts.maxFreezeMs });
    if (r.capped) {
      this.opts.log.warn(`${what} deadline ${r.capped}; capped`, {
        given: Number.isNaN(deadline) ? null : new Date(Math.min(Math.max(deadline, -8.64e15), 8.64e15)).toISOString(),
        using: new Date(r.at).toISOString(),
      });
    }
    return r.at;
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
    const inMs = thawAt - started;
    if (inMs <= 0) {
      // The hook or earlier freezes used up the time: a freeze now would be thawed at once.
      const reason = "deadline passed before the freeze";
      steps.push({ name: `freeze:${mountPoint}`, ok: false, ms: 0, detail: reason });
      return { mountPoint, frozen: false, unmounted: false, reason };
    }
    // Arm both thaw paths BEFORE freezing (invariant: always thawed by the deadline).
    const entry: Frozen = {
      mountPoint,
      path,
      freezing: null,
      thawing: null,
      cancelTimer: () => {},
      cancelWatchdog: this.opts.freezer.armWatchdog(path, inMs + 250),
    };
    entry.cancelTimer = this.opts.clock.setTimer(inMs, () => {
      if (this.frozen.get(mountPoint) === entry) void this.thawOne(entry, "deadline reached");
    });
    this.frozen.set(mountPoint, entry);
    entry.freezing = this.opts.freezer.freeze(path);
    try {
      await entry.freezing;
      entry.freezing = null;
      steps.push({ name: `freeze:${mountPoint}`, ok: true, ms: this.ms(started) });
      if (this.opts.clock.now() >= thawAt) {
        // The deadline fired while the freeze ran; its thaw runs now, so this is no consistent point.
        return { mountPoint, frozen: false, unmounted: false, reason: "deadline reached while freezing; thawed" };
      }
      this.opts.log.info("frozen", { mountPoint, thawBy: new Date(thawAt).toISOString() });
      return { mountPoint, frozen: true, unmounted: false };
    } catch (err) {
      entry.freezing = null;
      steps.push({ name: `freeze:${mountPoint}`, ok: false, ms: this.ms(started), detail: errorText(err) });
      if (err instanceof FreezeError && err.maybeFrozen) {
        // The freeze tool was killed: its FIFREEZE may have succeeded. Thaw (verified) now.
        this.opts.log.error("freeze outcome unknown; thawing", { mountPoint, error: errorText(err) });
        const thawed = await this.thawOne(entry, "freeze outcome unknown");
        steps.push(thawed);
      } else {
        // The freeze call returned an error: the filesystem is not frozen by us.
        if (this.frozen.get(mountPoint) === entry) this.frozen.delete(mountPoint);
        entry.cancelTimer();
        entry.cancelWatchdog();
      }
      return { mountPoint, frozen: false, unmounted: false, reason: errorText(err) };
    }
  }

  private ms(started: number): number {
    return Math.max(0, Math.round(this.opts.clock.now() - started));
  }
}
