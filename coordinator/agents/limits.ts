/**
 * Bounds on what unauthenticated and authenticated agent connections may cost the coordinator.
 *  - PreHelloGate: connections that have not completed a verified hello, counted in total and per
 *    source address; beyond either cap a new upgrade is refused before a WebSocket exists.
 *  - ReportWindow: per EC2 instance, how many messages and bytes (heartbeats and acks aside) are
 *    handed to the service per minute; the excess is dropped unacknowledged, so a genuine agent
 *    resends it in a later window and nothing is stored without bound.
 */

export interface PreHelloSlot {
  /** Idempotent: the connection finished its hello or went away. */
  release(): void;
}

export class PreHelloGate {
  private total = 0;
  private readonly bySource = new Map<string, number>();

  constructor(
    readonly maxTotal: number,
    readonly maxPerSource: number,
  ) {}

  get count(): number {
    return this.total;
  }

  /** A slot, or the cap that refuses one. */
  acquire(source: string): PreHelloSlot | { refused: "total" | "per-source" } {
    if (this.total >= this.maxTotal) return { refused: "total" };
    const n = this.bySource.get(source) ?? 0;
    if (n >= this.maxPerSource) return { refused: "per-source" };
    this.total++;
    this.bySource.set(source, n + 1);
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.total--;
        const left = (this.bySource.get(source) ?? 1) - 1;
        if (left > 0) this.bySource.set(source, left);
        else this.bySource.delete(source);
      },
    };
  }
}

export interface ReportLimits {
  /** Messages per minute beyond heartbeats; default 60. */
  messagesPerMinute: number;
  /** Frame bytes per minute beyond heartbeats; default 1 MiB. */
  bytesPerMinute: number;
}

export const DEFAULT_REPORT_LIMITS: ReportLimits = { messagesPerMinute: 60, bytesPerMinute: 1024 * 1024 };
const WINDOW_MS = 60_000;

export class ReportWindow {
  private start = Number.NEGATIVE_INFINITY;
  private messages = 0;
  private bytes = 0;
  private warned = false;

  constructor(private readonly limits: ReportLimits) {}

  /**
   * Count one message of `size` bytes at `now`. `ok` false when it is over a limit; `firstDrop`
   * true only for the first drop of a window (report it once, not per message).
   */
  take(now: number, size: number): { ok: true } | { ok: false; firstDrop: boolean; why: string } {
    // A clock that went backwards starts a new window rather than freezing this one.
    if (now - this.start >= WINDOW_MS || now < this.start) {
      this.start = now;
      this.messages = 0;
      this.bytes = 0;
      this.warned = false;
    }
    if (this.messages + 1 > this.limits.messagesPerMinute || this.bytes + size > this.limits.bytesPerMinute) {
      const firstDrop = !this.warned;
      this.warned = true;
      const why =
        this.messages + 1 > this.limits.messagesPerMinute
          ? `more than ${this.limits.messagesPerMinute} messages in a minute`
          : `more than ${this.limits.bytesPerMinute} bytes of messages in a minute`;
      return { ok: false, firstDrop, why };
    }
    this.messages++;
    this.bytes += size;
    return { ok: true };
  }
}
