/**
 * Leadership among coordinators sharing one PostgreSQL store: a lease row (db/lease.ts) with an
 * epoch. A standby tries to take the lease when it expires (looking again at least every ttl/3);
 * the leader renews every ttl/3.
 *
 * The leader trusts its leadership only until (its own monotonic time when the last successful
 * renewal was SENT) + ttl − margin. PostgreSQL started that renewal's TTL no earlier than that, so
 * the local deadline always falls before the server's: a process that was paused (SIGSTOP, a long
 * GC, a frozen VM) knows on waking that it is no longer leader without asking anyone. Losing the
 * lease is final for this process: `onLost` runs once and the owner stops acting (the coordinator
 * exits, and its supervisor restarts it as a standby).
 *
 * Durations here are real milliseconds, never scaled by the coordinator's time scale: they guard
 * against real pauses and real network delays.
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { safeTimeout } from "../../shared/clock.js";
import type { LeaseTable } from "../db/lease.js";

export type LeaseRole = "standby" | "leader" | "lost" | "stopped";

export class NotLeaderError extends Error {
  override name = "NotLeaderError";
  readonly kind = "not-leader";
}

export interface LeaderLeaseOptions {
  table: LeaseTable;
  /** The API URL this coordinator advertises (standbys name it to clients and agents); setUrl() can change it before start(). */
  url: string;
  ttlMs: number;
  /** Safety margin subtracted from the local deadline. */
  marginMs: number;
  /** This process's holder id; default hostname-pid-random. */
  holder?: string;
  /** Real monotonic milliseconds (tests inject one). */
  monotonic?: () => number;
  setTimer?: (ms: number, fn: () => void) => () => void;
  log?: (line: string) => void;
  /** Called once when this process becomes leader (it then starts acting). */
  onAcquired: (epoch: number) => void | Promise<void>;
  /** Called once when this process stops being leader for any reason but stop(). */
  onLost: (reason: string) => void;
}

export interface LeaderInfo {
  role: LeaseRole;
  /** This coordinator's holder id and URL. */
  self: { id: string; url: string };
  /** The current holder as last seen (null when nobody holds an unexpired lease). */
  leader: { id: string; url: string | null; epoch: number } | null;
  epoch: number;
}

export function newHolderId(): string {
  return `${hostname()
    .replace(/[^A-Za-z0-9-]/g, "-")
    .slice(0, 40)}-${process.pid}-${randomBytes(3).toString("hex")}`;
}

export class LeaderLease {
  readonly holder: string;
  private roleNow: LeaseRole = "standby";
  private epochNow = 0;
  private validUntil = Number.NEGATIVE_INFINITY;
  private seen: LeaderInfo["leader"] = null;
  private cancelTick: (() => void) | null = null;
  private cancelLapse: (() => void) | null = null;
  private busy = false;
  /** The store read of confirmLeading() under way, and the one that starts after it (shared by callers meanwhile). */
  private checkRunning: ReturnType<LeaseTable["confirm"]> | null = null;
  private checkQueued: ReturnType<LeaseTable["confirm"]> | null = null;
  /** A standby's last look at the lease: ms until it expires by the server's clock (null: unknown). */
  private expiresInMs: number | null = null;
  private readonly mono: () => number;
  private url: string;
  private readonly setTimer: (ms: number, fn: () => void) => () => void;

  constructor(private readonly o: LeaderLeaseOptions) {
    if (!(o.marginMs >= 0 && o.marginMs < o.ttlMs)) throw new Error(`lease margin ${o.marginMs} ms must be in [0, ttl ${o.ttlMs} ms)`);
    this.holder = o.holder ?? newHolderId();
    this.url = o.url;
    this.mono = o.monotonic ?? (() => performance.now());
    this.setTimer = o.setTimer ?? ((ms, fn) => safeTimeout(ms, fn));
  }

  /** The URL to advertise (known once the API listens). */
  setUrl(url: string): void {
    this.url = url;
  }

  get role(): LeaseRole {
    if (this.roleNow === "leader" && !this.locallyValid()) return "lost";
    return this.roleNow;
  }

  get epoch(): number {
    return this.epochNow;
  }

  /** True only while this process holds the lease and its local deadline has not passed. */
  isLeading(): boolean {
    return this.roleNow === "leader" && this.locallyValid();
  }

  /** Throws NotLeaderError unless isLeading(): the check every EC2 mutation and store write makes. */
  assertLeading(what: string): void {
    if (this.isLeading()) return;
    if (this.roleNow === "leader") this.lose("the lease's local deadline passed before it was renewed");
    throw new NotLeaderError(`${what}: refused, this coordinator is not the leader (${this.describe()})`);
  }

  /**
   * The check every EC2 mutation makes, just before it is sent: isLeading(), then the lease row
   * read from the store in a query sent after this call began. The local deadline alone would
   * let a leader act for up to a renewal interval after a standby took over when the database
   * server's clock stepped forward past the lease's end; the store read sees the new epoch (and
   * ends this process's leadership) or the expiry (refused, not final: the next renewal decides).
   * Concurrent callers share one read; a read already under way when a caller arrives is not
   * shared with it. What remains: a takeover that commits between that read and the request
   * reaching EC2.
   */
  async confirmLeading(what: string): Promise<void> {
    this.assertLeading(what);
    const epoch = this.epochNow;
    let row: Awaited<ReturnType<LeaseTable["confirm"]>>;
    try {
      row = await this.storeCheck();
    } catch (err) {
      throw new Error(`${what}: refused, the coordinator lease could not be confirmed in the store: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (this.roleNow === "leader" && this.epochNow === epoch && !row.held)
      this.lose(`another coordinator took the lease (epoch ${row.epoch}, held by ${row.holder ?? "nobody"})`);
    this.assertLeading(what);
    if (row.expired)
      throw new NotLeaderError(
        `${what}: refused, the lease of epoch ${epoch} has expired by the store's clock and is not renewed yet (the database server's clock moved ahead)`,
      );
  }

  private storeCheck(): ReturnType<LeaseTable["confirm"]> {
    if (!this.checkRunning) return this.startCheck();
    this.checkQueued ??= this.checkRunning
      .catch(() => undefined)
      .then(() => {
        this.checkQueued = null;
        return this.startCheck();
      });
    return this.checkQueued;
  }

  private startCheck(): ReturnType<LeaseTable["confirm"]> {
    const p = this.o.table.confirm(this.holder, this.epochNow).finally(() => {
      if (this.checkRunning === p) this.checkRunning = null;
    });
    this.checkRunning = p;
    return p;
  }

  info(): LeaderInfo {
    return {
      role: this.role,
      self: { id: this.holder, url: this.url },
      leader: this.isLeading() ? { id: this.holder, url: this.url, epoch: this.epochNow } : this.seen,
      epoch: this.isLeading() ? this.epochNow : (this.seen?.epoch ?? this.epochNow),
    };
  }

  /** The URL of the leader as last seen, or null. */
  leaderUrl(): string | null {
    return this.info().leader?.url ?? null;
  }

  async start(): Promise<void> {
    await this.o.table.ensure();
    await this.tick();
  }

  /** Stops trying; a leader lets its lease expire at once so a standby takes over without waiting. */
  async stop(): Promise<void> {
    const wasLeader = this.isLeading();
    this.roleNow = "stopped";
    this.cancelTick?.();
    this.cancelLapse?.();
    if (wasLeader) await this.o.table.release(this.holder, this.epochNow).catch(() => undefined);
  }

  private locallyValid(): boolean {
    return this.mono() < this.validUntil;
  }

  private describe(): string {
    if (this.roleNow === "leader") return `its lease of epoch ${this.epochNow} has lapsed`;
    if (this.roleNow === "lost") return `it lost the lease of epoch ${this.epochNow}`;
    const l = this.seen;
    return l ? `the leader is ${l.url ?? l.id} at epoch ${l.epoch}` : "no coordinator holds the lease just now";
  }

  private schedule(): void {
    if (this.roleNow === "stopped" || this.roleNow === "lost") return;
    this.cancelTick?.();
    // A standby that saw when the lease runs out tries again right then (so it takes over at most a TTL after the last renewal).
    const delay =
      this.roleNow === "standby" && this.expiresInMs !== null ? Math.min(this.o.ttlMs / 3, this.expiresInMs + 20) : this.o.ttlMs / 3;
    this.cancelTick = this.setTimer(delay, () => void this.tick());
  }

  private armLapse(): void {
    this.cancelLapse?.();
    this.cancelLapse = this.setTimer(Math.max(0, this.validUntil - this.mono()), () => {
      if (this.roleNow === "leader" && !this.locallyValid()) this.lose("the lease could not be renewed before its local deadline");
      else if (this.roleNow === "leader") this.armLapse();
    });
  }

  private lose(reason: string): void {
    if (this.roleNow !== "leader") return;
    this.roleNow = "lost";
    this.cancelTick?.();
    this.cancelLapse?.();
    this.o.log?.(`lost the coordinator lease (epoch ${this.epochNow}): ${reason}`);
    this.o.onLost(reason);
  }

  private async tick(): Promise<void> {
    if (this.busy || this.roleNow === "stopped" || this.roleNow === "lost") return;
    this.busy = true;
    try {
      if (this.roleNow === "leader") await this.renew();
      else await this.tryAcquire();
    } finally {
      this.busy = false;
      this.schedule();
    }
  }

  private async renew(): Promise<void> {
    const sentAt = this.mono();
    // Past the local deadline, a renewal must not revive leadership: something else may have acted.
    if (!this.locallyValid()) return this.lose("the lease's local deadline passed before it was renewed");
    let ok: boolean;
    try {
      ok = await this.o.table.renew(this.holder, this.epochNow, this.o.ttlMs);
    } catch (err) {
      // The lapse timer ends leadership if no renewal gets through in time.
      this.o.log?.(`renewing the coordinator lease failed (will retry): ${(err as Error).message}`);
      return;
    }
    if (this.roleNow !== "leader") return;
    if (!ok) return this.lose(`another coordinator took the lease`);
    if (!this.locallyValid()) return this.lose("the renewal came back after the lease's local deadline");
    this.validUntil = sentAt + this.o.ttlMs - this.o.marginMs;
    this.armLapse();
  }

  private async tryAcquire(): Promise<void> {
    const sentAt = this.mono();
    let epoch: number | null;
    try {
      epoch = await this.o.table.acquire(this.holder, this.url, this.o.ttlMs);
      if (epoch === null) {
        const row = await this.o.table.current();
        this.expiresInMs = row.remainingMs;
        this.seen = row.holder && !row.expired ? { id: row.holder, url: row.holderUrl, epoch: row.epoch } : null;
        return;
      }
    } catch (err) {
      this.expiresInMs = null;
      this.o.log?.(`trying the coordinator lease failed (will retry): ${(err as Error).message}`);
      return;
    }
    if (this.roleNow === "stopped") {
      await this.o.table.release(this.holder, epoch).catch(() => undefined);
      return;
    }
    this.roleNow = "leader";
    this.epochNow = epoch;
    this.validUntil = sentAt + this.o.ttlMs - this.o.marginMs;
    this.seen = { id: this.holder, url: this.url, epoch };
    this.armLapse();
    this.o.log?.(`leading: took the coordinator lease at epoch ${epoch} (ttl ${this.o.ttlMs} ms)`);
    // Not awaited: renewals must go on while the leader starts (resuming workflows can take a while).
    void Promise.resolve()
      .then(() => this.o.onAcquired(epoch))
      .catch((err: Error) => this.lose(`starting as leader failed: ${err.message}`));
  }
}
