import { describe, expect, it } from "vitest";
import type { LeaseTable } from "../db/lease.js";
import { LeaderLease, NotLeaderError } from "./lease.js";

/** An in-memory lease row on a server clock the test moves. */
class FakeTable {
  serverNow = 0;
  holder: string | null = null;
  url: string | null = null;
  epoch = 0;
  expiresAt = Number.NEGATIVE_INFINITY;
  failRenew = false;
  async ensure() {}
  async acquire(holder: string, url: string, ttlMs: number) {
    if (this.expiresAt >= this.serverNow) return null;
    Object.assign(this, { holder, url, epoch: this.epoch + 1, expiresAt: this.serverNow + ttlMs });
    return this.epoch;
  }
  async renew(holder: string, epoch: number, ttlMs: number) {
    if (this.failRenew) throw new Error("connection refused");
    if (holder !== this.holder || epoch !== this.epoch) return false;
    this.expiresAt = this.serverNow + ttlMs;
    return true;
  }
  async release(holder: string, epoch: number) {
    if (holder === this.holder && epoch === this.epoch) this.expiresAt = this.serverNow;
  }
  async current() {
    const remainingMs = Math.max(0, this.expiresAt - this.serverNow);
    return { holder: this.holder, holderUrl: this.url, epoch: this.epoch, expired: remainingMs <= 0, remainingMs };
  }
}

/** Timers the test fires by hand. */
function fakeTimers() {
  let now = 0;
  const timers: { at: number; fn: () => void }[] = [];
  return {
    mono: () => now,
    setTimer: (ms: number, fn: () => void) => {
      const t = { at: now + ms, fn };
      timers.push(t);
      return () => void timers.splice(timers.indexOf(t) >>> 0, timers.includes(t) ? 1 : 0);
    },
    /** Moves the clock without firing anything (the process was stopped). */
    jump(ms: number) {
      now += ms;
    },
    /** Moves time on, firing due timers in order (a paused process wakes with all of them due). */
    async advance(ms: number) {
      now += ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        const t = timers[0];
        if (!t || t.at > now) break;
        timers.shift();
        t.fn();
        await new Promise((r) => setImmediate(r));
      }
    },
  };
}

function lease(table: FakeTable, t: ReturnType<typeof fakeTimers>, holder: string) {
  const events: string[] = [];
  const l = new LeaderLease({
    table: table as unknown as LeaseTable,
    url: `http://${holder}:7400`,
    ttlMs: 15_000,
    marginMs: 3_000,
    holder,
    monotonic: t.mono,
    setTimer: t.setTimer,
    onAcquired: (e) => void events.push(`acquired ${e}`),
    onLost: (r) => void events.push(`lost: ${r}`),
  });
  return { l, events };
}

describe("leader lease", () => {
  it("takes an expired lease at epoch + 1, renews every third of the TTL, and keeps leading while renewals get through", async () => {
    const table = new FakeTable();
    const t = fakeTimers();
    const { l, events } = lease(table, t, "a");
    await l.start();
    await t.advance(0);
    expect(l.isLeading()).toBe(true);
    expect(l.epoch).toBe(1);
    expect(events).toEqual(["acquired 1"]);
    for (let i = 0; i < 10; i++) {
      table.serverNow += 5_000;
      await t.advance(5_000);
    }
    expect(l.isLeading()).toBe(true);
    expect(l.info()).toMatchObject({ role: "leader", epoch: 1, leader: { id: "a", url: "http://a:7400" } });
  });

  it("a standby sees the leader and takes over only once the lease has expired, at the next epoch", async () => {
    const table = new FakeTable();
    const ta = fakeTimers();
    const tb = fakeTimers();
    const a = lease(table, ta, "a");
    const b = lease(table, tb, "b");
    await a.l.start();
    await b.l.start();
    expect(b.l.isLeading()).toBe(false);
    expect(b.l.leaderUrl()).toBe("http://a:7400");
    expect(() => b.l.assertLeading("EC2 RunInstances")).toThrow(NotLeaderError);
    // a stops renewing (killed): b takes over after the TTL, not before.
    table.serverNow += 14_000;
    await tb.advance(14_000);
    expect(b.l.isLeading()).toBe(false);
    table.serverNow += 2_000;
    await tb.advance(5_000);
    expect(b.l.isLeading()).toBe(true);
    expect(b.l.epoch).toBe(2);
  });

  it("a paused leader knows on waking that it no longer leads, before any timer or query runs, and refuses to act", async () => {
    const table = new FakeTable();
    const t = fakeTimers();
    const { l, events } = lease(table, t, "a");
    await l.start();
    expect(l.isLeading()).toBe(true);
    // SIGSTOP … SIGCONT: the monotonic clock jumped past ttl − margin; no timer has fired yet.
    t.jump(12_000);
    expect(l.isLeading()).toBe(false);
    expect(() => l.assertLeading("EC2 TerminateInstances")).toThrow(/EC2 TerminateInstances: refused/);
    expect(events).toEqual(["acquired 1", "lost: the lease's local deadline passed before it was renewed"]);
    // Its renewal timer fires afterwards and sends nothing that could revive it.
    await t.advance(0);
    expect(l.role).toBe("lost");
    expect(table.expiresAt).toBe(15_000);
  });

  it("loses the lease when a renewal finds another holder, and when renewals fail past the local deadline", async () => {
    const table = new FakeTable();
    const t = fakeTimers();
    const { l, events } = lease(table, t, "a");
    await l.start();
    table.holder = "b";
    table.epoch = 2;
    await t.advance(5_000);
    expect(l.isLeading()).toBe(false);
    expect(events.at(-1)).toMatch(/lost: another coordinator took the lease/);

    const table2 = new FakeTable();
    const t2 = fakeTimers();
    const other = lease(table2, t2, "c");
    await other.l.start();
    table2.failRenew = true;
    await t2.advance(5_000);
    expect(other.l.isLeading()).toBe(true);
    await t2.advance(7_000); // 12 s = ttl − margin after the acquiring request was sent
    expect(other.l.isLeading()).toBe(false);
    expect(other.events.at(-1)).toMatch(/lost: .*local deadline/);
    expect(() => other.l.assertLeading("writing to the store")).toThrow(/not the leader/);
  });

  it("releases the lease on stop so a standby need not wait for it to expire", async () => {
    const table = new FakeTable();
    const t = fakeTimers();
    const { l } = lease(table, t, "a");
    await l.start();
    await l.stop();
    expect((await table.current()).expired).toBe(true);
  });
});
