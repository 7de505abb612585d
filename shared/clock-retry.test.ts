import { describe, expect, it, vi } from "vitest";
import { clampDelay, FakeClock, MAX_TIMER_MS, realClock, safeTimeout, scaledClock } from "./clock.js";
import { nextDelay, retryPolicy, withRetry } from "./retry.js";

describe("FakeClock", () => {
  it("fires timers in order only when advanced", async () => {
    const clock = new FakeClock(0);
    const fired: number[] = [];
    clock.setTimer(200, () => fired.push(200));
    clock.setTimer(100, () => fired.push(100));
    await clock.advance(150);
    expect(fired).toEqual([100]);
    await clock.advance(100);
    expect(fired).toEqual([100, 200]);
    expect(clock.now()).toBe(250);
  });

  it("resolves sleeps and supports abort", async () => {
    const clock = new FakeClock(0);
    let done = false;
    void clock.sleep(1000).then(() => (done = true));
    await clock.advance(999);
    expect(done).toBe(false);
    await clock.advance(1);
    expect(done).toBe(true);
    const ac = new AbortController();
    const p = clock.sleep(500, ac.signal);
    ac.abort(new Error("stop"));
    await expect(p).rejects.toThrow("stop");
    expect(clock.pending).toBe(0);
  });

  it("scaled clock runs model time faster", () => {
    const base = new FakeClock(0);
    const fast = scaledClock(0.1, base);
    let fired = false;
    fast.setTimer(1000, () => (fired = true));
    expect(base.pending).toBe(1);
    void base.advance(100).then(() => expect(fired).toBe(true));
  });
});

describe("retry policy", () => {
  it("grows exponentially up to the cap without jitter", () => {
    const p = retryPolicy({ initialMs: 100, factor: 2, maxMs: 1000, attempts: 10, jitter: "none" });
    expect([1, 2, 3, 4, 5, 6].map((a) => nextDelay(p, a))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(nextDelay(p, 10)).toBeNull();
  });
  it("applies full and equal jitter within bounds", () => {
    const full = retryPolicy({ initialMs: 100, factor: 2, maxMs: 1000, attempts: 5, jitter: "full" });
    expect(nextDelay(full, 3, () => 0.5)).toBe(200);
    const equal = retryPolicy({ ...full, jitter: "equal" });
    expect(nextDelay(equal, 3, () => 0)).toBe(200);
    expect(nextDelay(equal, 3, () => 1)).toBe(400);
  });
  it("rejects nonsense policies", () => {
    expect(() => retryPolicy({ factor: 0.5 })).toThrow(/factor/);
    expect(() => retryPolicy({ attempts: 0 })).toThrow(/attempts/);
    expect(() => retryPolicy({ initialMs: 500, maxMs: 100 })).toThrow(/maxMs/);
  });
  it("withRetry retries until success and stops on non-retryable errors", async () => {
    let calls = 0;
    const sleeps: number[] = [];
    const v = await withRetry(
      async () => {
        if (++calls < 3) throw new Error("transient");
        return "ok";
      },
      { policy: retryPolicy({ jitter: "none", initialMs: 10 }), sleep: async (ms) => void sleeps.push(ms) },
    );
    expect(v).toBe("ok");
    expect(sleeps).toEqual([10, 20]);
    await expect(
      withRetry(
        async () => {
          throw new Error("fatal");
        },
        { shouldRetry: () => false, sleep: async () => {} },
      ),
    ).rejects.toThrow("fatal");
  });
});

describe("timers that cannot overflow", () => {
  it("a raw setTimeout past 2^31-1 ms fires at once (the bug safeTimeout exists for)", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    try {
      let fired = false;
      const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
      setTimeout(() => (fired = true), 2 ** 31 + 1);
      vi.advanceTimersByTime(5);
      warn.mockRestore();
      expect(fired).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it("safeTimeout chains timers: 2^31+1 ms fires neither early nor late", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    try {
      let fired = false;
      safeTimeout(2 ** 31 + 1, () => (fired = true));
      vi.advanceTimersByTime(MAX_TIMER_MS);
      expect(fired).toBe(false);
      vi.advanceTimersByTime(1);
      expect(fired).toBe(false);
      vi.advanceTimersByTime(1);
      expect(fired).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });

  it("safeTimeout to 9999-12-31 waits through many links and can be cancelled", () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    try {
      let fired = false;
      const ms = Date.parse("9999-12-31T23:59:59Z") - Date.parse("2026-01-01T00:00:00Z");
      const cancel = safeTimeout(ms, () => (fired = true));
      vi.advanceTimersByTime(MAX_TIMER_MS * 10);
      expect(fired).toBe(false);
      expect(vi.getTimerCount()).toBe(1);
      cancel();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("NaN and negative delays fire on the next turn; Infinity never fires and holds no timer", async () => {
    const order: string[] = [];
    realClock.setTimer(Number.NaN, () => order.push("nan"));
    realClock.setTimer(-5, () => order.push("neg"));
    realClock.setTimer(Number.POSITIVE_INFINITY, () => order.push("inf"));
    await realClock.sleep(Number.NaN);
    await realClock.sleep(5);
    expect(order).toEqual(["nan", "neg"]);
    expect(clampDelay(Number.NaN)).toBe(0);
    expect(clampDelay(-1)).toBe(0);
    expect(clampDelay(Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
  });

  it("FakeClock: far-future timers wait, NaN/negative fire at once, Infinity is never queued", async () => {
    const clock = new FakeClock(0);
    const fired: string[] = [];
    clock.setTimer(2 ** 31 + 1, () => fired.push("far"));
    clock.setTimer(Number.NaN, () => fired.push("nan"));
    clock.setTimer(-1, () => fired.push("neg"));
    clock.setTimer(Number.POSITIVE_INFINITY, () => fired.push("inf"));
    expect(clock.pending).toBe(3);
    await clock.advance(0);
    expect(fired).toEqual(["nan", "neg"]);
    await clock.advance(2 ** 31);
    expect(fired).toEqual(["nan", "neg"]);
    await clock.advance(1);
    expect(fired).toEqual(["nan", "neg", "far"]);
    const ac = new AbortController();
    const forever = clock.sleep(Number.POSITIVE_INFINITY, ac.signal);
    ac.abort(new Error("stop"));
    await expect(forever).rejects.toThrow("stop");
  });
});
