/**
 * Bounds on HTTP connections that have not completed a request: each holds a descriptor, and a
 * client that opens connections and sends nothing would otherwise hold them until Node's header
 * timeout, which its server checks only every 30 s. A connection is "waiting" from its accept (and
 * again after each response, while kept alive) until the headers of its next request are in:
 *  - it must send its first byte within `firstByteMs` and the rest of its request head within
 *    `requestMs` of starting to wait, or it is closed (each connection's own timer, so the limit
 *    holds to the millisecond, not at a sweep);
 *  - at most `maxWaiting` wait at once, and at most `maxWaitingPerSource` from one address. A new
 *    connection beyond the per-source cap closes the oldest waiting one of its own address; beyond
 *    the total cap, the oldest waiting one of the address holding the most waiting connections.
 *    Either way the victim is by preference one that has never completed a request and sent
 *    nothing, then a kept-alive one idle since its response. A flood of idle connections thus only
 *    cuts its own, and a client that sends its request at once (a load balancer asking /healthz)
 *    is served during the flood whatever its timing: the server accepts every queued connection
 *    in one go, before it reads any of them, so age alone would close a waiting request whose
 *    bytes are in but unread once a cap's worth of flood connections is accepted after it.
 * A connection upgraded to a WebSocket has completed its request: the agent hub's own limits
 * apply to it from then on, and nothing here closes a session.
 */
import type { Socket } from "node:net";
import { safeTimeout } from "../../shared/clock.js";

export interface ConnectionLimits {
  /** Connections waiting for a request, in total; default 256. */
  maxWaiting: number;
  /** ... and from one source address; default 32. */
  maxWaitingPerSource: number;
  /** Real ms a waiting connection may take to send its first byte; default 3 s. */
  firstByteMs: number;
  /** Real ms a waiting connection may take to complete its request head; default 10 s. */
  requestMs: number;
}

export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxWaiting: 256,
  maxWaitingPerSource: 32,
  firstByteMs: 3000,
  requestMs: 10_000,
};

/** Why a waiting connection was closed. */
export type ConnectionCut = "total-cap" | "per-source-cap" | "first-byte-timeout" | "request-timeout";

interface Waiting {
  socket: Socket;
  source: string;
  /** bytesRead when it began to wait: more than that means it has sent something since. */
  readAtStart: number;
  /** It has completed a request before (a kept-alive connection waiting for its next one). */
  served: boolean;
  cancel: () => void;
}

const clamp = (v: number | undefined, def: number, min: number, max: number) =>
  v === undefined || Number.isNaN(v) ? def : Math.min(max, Math.max(min, Math.floor(v)));

export class ConnectionGate {
  readonly limits: ConnectionLimits;
  /** Oldest first (a Map keeps insertion order). */
  private readonly waiting = new Map<Socket, Waiting>();
  private readonly bySource = new Map<string, Set<Socket>>();
  private readonly closeHooked = new WeakSet<Socket>();

  constructor(
    limits: Partial<ConnectionLimits> = {},
    private readonly onCut?: (why: ConnectionCut, source: string) => void,
  ) {
    const d = DEFAULT_CONNECTION_LIMITS;
    this.limits = {
      maxWaiting: clamp(limits.maxWaiting, d.maxWaiting, 1, 1_000_000),
      maxWaitingPerSource: clamp(limits.maxWaitingPerSource, d.maxWaitingPerSource, 1, 1_000_000),
      firstByteMs: clamp(limits.firstByteMs, d.firstByteMs, 10, 600_000),
      requestMs: clamp(limits.requestMs, d.requestMs, 10, 600_000),
    };
  }

  /** Connections waiting for a request now. */
  get count(): number {
    return this.waiting.size;
  }

  /** The connection waits for a request: at its accept, and after each response on a kept-alive connection. */
  wait(socket: Socket): void {
    if (socket.destroyed || this.waiting.has(socket)) return;
    const source = socket.remoteAddress ?? "";
    const mine = this.bySource.get(source);
    if (mine && mine.size >= this.limits.maxWaitingPerSource) this.cutOldest(mine, "per-source-cap");
    if (this.waiting.size >= this.limits.maxWaiting) this.cutOldest(this.ofHeaviestSources(), "total-cap");
    const w: Waiting = { socket, source, readAtStart: socket.bytesRead, served: socket.bytesRead > 0, cancel: () => {} };
    this.waiting.set(socket, w);
    let set = this.bySource.get(source);
    if (!set) this.bySource.set(source, (set = new Set()));
    set.add(socket);
    if (!this.closeHooked.has(socket)) {
      this.closeHooked.add(socket);
      socket.once("close", () => this.done(socket));
    }
    const { firstByteMs, requestMs } = this.limits;
    w.cancel = safeTimeout(Math.min(firstByteMs, requestMs), () => {
      if (!this.sentNothing(w)) {
        w.cancel = safeTimeout(requestMs - Math.min(firstByteMs, requestMs), () => this.cut(w, "request-timeout"));
        return;
      }
      this.cut(w, "first-byte-timeout");
    });
  }

  /** The connection's request head is in (or it went away): it no longer waits. */
  done(socket: Socket): void {
    const w = this.waiting.get(socket);
    if (!w) return;
    w.cancel();
    this.waiting.delete(socket);
    const set = this.bySource.get(w.source);
    set?.delete(socket);
    if (set?.size === 0) this.bySource.delete(w.source);
  }

  /** Close every waiting connection (the server is stopping). */
  closeAll(): void {
    for (const w of [...this.waiting.values()]) {
      this.done(w.socket);
      w.socket.destroy();
    }
  }

  /** The waiting connections, oldest first, of the addresses that hold the most of them. */
  private *ofHeaviestSources(): Iterable<Socket> {
    let most = 0;
    for (const set of this.bySource.values()) most = Math.max(most, set.size);
    for (const [socket, w] of this.waiting) if (this.bySource.get(w.source)?.size === most) yield socket;
  }

  private sentNothing(w: Waiting): boolean {
    return w.socket.bytesRead <= w.readAtStart;
  }

  /**
   * Close one of `sockets`, by preference the oldest that has never completed a request and sent
   * nothing (a flood's), then the oldest kept-alive one that has sent nothing since its last
   * response, then the oldest.
   */
  private cutOldest(sockets: Iterable<Socket>, why: ConnectionCut): void {
    let idleServed: Waiting | undefined;
    let oldest: Waiting | undefined;
    for (const s of sockets) {
      const w = this.waiting.get(s);
      if (!w) continue;
      oldest ??= w;
      if (!this.sentNothing(w)) continue;
      if (!w.served) return this.cut(w, why);
      idleServed ??= w;
    }
    const victim = idleServed ?? oldest;
    if (victim) this.cut(victim, why);
  }

  private cut(w: Waiting, why: ConnectionCut): void {
    this.done(w.socket);
    w.socket.destroy();
    try {
      this.onCut?.(why, w.source);
    } catch {
      /* a counter must not break the server */
    }
  }
}
