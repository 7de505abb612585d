/**
 * Refusals on an instance's timeline, rate-limited per instance and per reason.
 *
 * A refusal (an impostor's hello, a notice EC2 does not confirm, a reply to no command) is
 * caused by whoever sends it, so one event per refusal lets a looping local process write
 * thousands of rows and push the instance's real history out of the timeline's last 500 events.
 * Here the first refusal of a (instance, reason) is written at once; the rest of its interval
 * are counted and written as one summary event when the interval ends, and a flood that goes on
 * keeps one summary per interval. While nothing but refusals is written to the instance's timeline
 * in between, a new summary (or a refusal after a quiet interval) replaces the previous summary's
 * message instead of adding a row (the count accumulates), so however long or sparse a flood is,
 * it holds at most two rows per reason (its first refusal and the summary) between two events of
 * other kinds. Every refusal is still
 * counted by the caller's metrics; the log keeps its own throttle.
 */
import type { Clock } from "../shared/clock.js";

export interface RefusalTimeline {
  add(instance: string, kind: string, message: string): unknown;
  /**
   * Replace the message (not the time) of the instance's latest event of `kind` whose message starts
   * with `prefix`, when every later event of the instance has one of `quietKinds`; false, changing
   * nothing, otherwise.
   */
  replaceLatest(instance: string, kind: string, prefix: string, message: string, quietKinds: string[]): boolean | Promise<boolean>;
}

export interface RefusalEventsOptions {
  events: RefusalTimeline;
  clock: Clock;
  /** Length of a summary interval, clock ms; default 60 s, clamped to 1 s..1 h. */
  intervalMs?: number;
  log?: (line: string) => void;
}

/** How much of a refusal's detail is kept on the timeline. */
const MAX_DETAIL = 500;

interface Window {
  instance: string;
  kind: string;
  reason: string;
  /** An interval is running: refusals are counted until it ends. */
  open: boolean;
  /** Refusals counted since the last write. */
  count: number;
  firstAt: number;
  lastAt: number;
  lastDetail: string;
  /** This key's first refusal of the current run is on the timeline. */
  inRun: boolean;
  /** The summary row this key wrote last and its running total, while it may still be the latest event. */
  row: { total: number; since: number } | null;
  cancel: () => void;
  /** Writes of this key, in order. */
  chain?: Promise<void>;
}

export class RefusalEvents {
  private readonly windows = new Map<string, Window>();
  /** Every kind this writes: events of these kinds do not stop a summary from growing in place. */
  private readonly kinds = new Set<string>();
  private readonly intervalMs: number;
  private closed = false;

  constructor(private readonly opts: RefusalEventsOptions) {
    const ms = opts.intervalMs ?? 60_000;
    this.intervalMs = Number.isNaN(ms) ? 60_000 : Math.min(3_600_000, Math.max(1000, ms));
  }

  /** One refusal about `instance` (a stateful instance's name). Never throws; the writes happen in the background. */
  record(instance: string, kind: string, reason: string, detail: string): void {
    if (this.closed) return;
    const key = `${instance}\u0000${kind}\u0000${reason}`;
    const now = this.opts.clock.now();
    const text = detail.length > MAX_DETAIL ? `${detail.slice(0, MAX_DETAIL)}…` : detail;
    this.kinds.add(kind);
    let w = this.windows.get(key);
    if (w?.open) {
      if (w.count === 0) w.firstAt = now;
      w.count++;
      w.lastAt = now;
      w.lastDetail = text;
      return;
    }
    if (!w) {
      w = {
        instance,
        kind,
        reason,
        open: false,
        inRun: false,
        count: 0,
        firstAt: now,
        lastAt: now,
        lastDetail: text,
        row: null,
        cancel: () => {},
      };
      w.chain = Promise.resolve();
      this.windows.set(key, w);
    }
    // A new interval: the refusal joins the last summary when nothing but refusals came after it,
    // else it is written as it is.
    w.open = true;
    w.count = 1;
    w.firstAt = now;
    w.lastAt = now;
    w.lastDetail = text;
    this.flush(w, `${reason}: ${text}`);
    this.arm(w);
  }

  /** Write what is counted and stop; later refusals are not recorded. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.windows.values()];
    this.windows.clear();
    for (const w of all) {
      w.cancel();
      if (w.count > 0) this.flush(w, null);
    }
    await Promise.all(all.map((w) => w.chain));
  }

  private arm(w: Window): void {
    w.cancel = this.opts.clock.setTimer(this.intervalMs, () => {
      if (this.closed) return;
      // A quiet interval closes the window: the next refusal starts a new one.
      if (w.count === 0) {
        w.open = false;
        return;
      }
      this.flush(w, null);
      this.arm(w);
    });
  }

  /**
   * Write the refusals counted since the last write: into the key's summary row while it may grow,
   * else as a new row: `first` when given and the run has none yet, otherwise a new summary.
   */
  private flush(w: Window, first: string | null): void {
    const { count, firstAt, lastAt, lastDetail } = w;
    w.count = 0;
    const prefix = `${w.reason}, repeated: `;
    const message = (total: number, since: number) =>
      `${prefix}${total} more refused from ${iso(since)} to ${iso(lastAt)}; the latest: ${lastDetail}`;
    this.write(w, async () => {
      if (w.row) {
        const total = w.row.total + count;
        if (await this.opts.events.replaceLatest(w.instance, w.kind, prefix, message(total, w.row.since), [...this.kinds])) {
          w.row.total = total;
          return;
        }
        // Something else was written since: a new run of refusals begins.
        w.row = null;
        w.inRun = false;
      }
      if (first !== null && !w.inRun) {
        await this.opts.events.add(w.instance, w.kind, first);
        w.inRun = true;
        return;
      }
      await this.opts.events.add(w.instance, w.kind, message(count, firstAt));
      w.row = { total: count, since: firstAt };
    });
  }

  private write(w: Window, fn: () => unknown): void {
    w.chain = (w.chain ?? Promise.resolve())
      .then(fn)
      .then(() => undefined)
      .catch((err) => this.opts.log?.(`recording a ${w.reason} refusal for ${w.instance}: ${(err as Error)?.message ?? String(err)}`));
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
