/**
 * Polls every monitor each interval and hands each distinct notice (by id) to `onNotice` once.
 * `seen` is owned by the caller so it can be persisted: a restarted agent doesn't re-report.
 * A failing monitor is logged (once per distinct error, to keep idle logs quiet) and polled again
 * next tick; one monitor failing never stops the others. `every` polls a kind only on every Nth
 * pass: notices with a deadline (spot instance-action) are polled each pass, slower-moving ones
 * (rebalance, scheduled events) less often, which keeps the idle agent's CPU down.
 */
import type { Clock } from "../../shared/clock.js";
import type { NoticeKind } from "../../shared/protocol.js";
import type { Logger } from "../log.js";
import { errorText } from "../log.js";
import type { NoticeMonitor, NoticeObservation } from "./types.js";

export interface MonitorLoopOptions {
  monitors: NoticeMonitor[];
  /** Real ms between polls. */
  intervalMs: number;
  clock: Clock;
  log: Logger;
  seen: { has(id: string): boolean; add(id: string): void };
  onNotice: (obs: NoticeObservation) => void | Promise<void>;
  /** Poll these kinds only on every Nth pass (the first pass polls every kind). */
  every?: Partial<Record<NoticeKind, number>>;
}

export class MonitorLoop {
  private abort = new AbortController();
  private running: Promise<void> | null = null;
  private lastError = new Map<string, string>();
  polls = 0;

  constructor(private readonly opts: MonitorLoopOptions) {}

  setInterval(ms: number): void {
    this.opts.intervalMs = ms;
  }

  start(): void {
    if (this.running) return;
    this.abort = new AbortController();
    this.running = this.run(this.abort.signal);
  }

  async stop(): Promise<void> {
    this.abort.abort(new Error("monitor loop stopped"));
    await this.running?.catch(() => {});
    this.running = null;
  }

  /** One pass over every monitor; returns the new notices (also used by tests). */
  async pollOnce(): Promise<NoticeObservation[]> {
    const pass = this.polls++;
    const found: NoticeObservation[] = [];
    const due = this.opts.monitors.filter((m) => pass % Math.max(1, Math.floor(this.opts.every?.[m.kind] ?? 1)) === 0);
    await Promise.all(
      due.map(async (m) => {
        try {
          const obs = await m.check();
          if (this.lastError.delete(m.kind)) this.opts.log.info("monitor recovered", { kind: m.kind });
          if (obs && !this.opts.seen.has(obs.noticeId)) {
            this.opts.seen.add(obs.noticeId);
            found.push(obs);
          }
        } catch (err) {
          const text = errorText(err);
          if (this.lastError.get(m.kind) !== text) this.opts.log.warn("monitor check failed", { kind: m.kind, error: text });
          this.lastError.set(m.kind, text);
        }
      }),
    );
    for (const obs of found) {
      this.opts.log.info("notice observed", { noticeId: obs.noticeId, kind: obs.kind, action: obs.action, deadline: obs.deadline });
      try {
        await this.opts.onNotice(obs);
      } catch (err) {
        this.opts.log.error("handling notice failed", { noticeId: obs.noticeId, error: errorText(err) });
      }
    }
    return found;
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.pollOnce();
      try {
        await this.opts.clock.sleep(this.opts.intervalMs, signal);
      } catch {
        return;
      }
    }
  }
}
