import { describe, expect, it } from "vitest";
import { FakeClock, scaledClock } from "../../../shared/clock.js";
import { ReportSignal } from "../../agents/report-signal.js";
import { failureKind } from "../failure.js";
import { untilNextTick, waitUntil } from "./deps.js";

/** A check that records the (fake) time of every call and answers `value` once it is set. */
function probe(fake: FakeClock) {
  const calls: number[] = [];
  const start = fake.now();
  let value: string | null = null;
  return {
    calls,
    set: (v: string) => (value = v),
    check: () => {
      calls.push(fake.now() - start);
      return value;
    },
  };
}

describe("waitUntil", () => {
  it("polls at the interval, growing by a quarter each time up to twice the interval", async () => {
    const fake = new FakeClock();
    const p = probe(fake);
    const done = waitUntil(scaledClock(1, fake), "x", p.check, { intervalMs: 400, timeoutMs: 60_000 });
    await fake.advance(3_000);
    expect(p.calls).toEqual([0, 400, 900, 1525, 2306.25]);
    p.set("ok");
    await fake.advance(800);
    await expect(done).resolves.toBe("ok");
    // 2306.25 + min(400 × 1.25^4, 800) = 3106.25
    expect(p.calls.at(-1)).toBe(3106.25);
  });

  it("looks again at once when woken, without waiting for the next poll", async () => {
    const fake = new FakeClock();
    const signal = new ReportSignal();
    const p = probe(fake);
    const done = waitUntil(scaledClock(1, fake), "x", p.check, {
      intervalMs: 1_000,
      timeoutMs: 60_000,
      wake: (fn) => signal.subscribe("i-1", fn),
    });
    await fake.advance(1_500);
    expect(p.calls).toEqual([0, 1_000]);
    p.set("ready");
    signal.notify("i-2"); // another instance's report wakes nothing
    await fake.advance(0);
    expect(p.calls).toEqual([0, 1_000]);
    signal.notify("i-1");
    await fake.advance(0);
    await expect(done).resolves.toBe("ready");
    expect(p.calls).toEqual([0, 1_000, 1_500]);
    // the subscription and the poll timer are gone
    expect(signal.size).toBe(0);
    expect(fake.pending).toBe(0);
  });

  it("does not lose a wake-up that comes while the check is running", async () => {
    const fake = new FakeClock();
    const signal = new ReportSignal();
    let n = 0;
    const done = waitUntil(
      scaledClock(1, fake),
      "x",
      async () => {
        n++;
        if (n === 2) return "second look";
        // The report lands (and the wake-up fires) after this check read the store.
        signal.notify("i-1");
        return null;
      },
      { intervalMs: 10_000, timeoutMs: 60_000, wake: (fn) => signal.subscribe("i-1", fn) },
    );
    await fake.advance(0);
    await expect(done).resolves.toBe("second look");
    expect(fake.now()).toBe(Date.UTC(2026, 0, 1));
  });

  it("still finds the value by polling when no wake-up comes, and times out with a timeout failure", async () => {
    const fake = new FakeClock();
    const signal = new ReportSignal();
    const p = probe(fake);
    const done = waitUntil(scaledClock(1, fake), "the agent", p.check, {
      intervalMs: 1_000,
      timeoutMs: 3_000,
      wake: (fn) => signal.subscribe("i-1", fn),
    });
    const outcome = done.catch((e: unknown) => e);
    await fake.advance(10_000);
    const err = await outcome;
    expect(failureKind(err)).toBe("timeout");
    expect((err as Error).message).toMatch(/waiting for the agent/);
    expect(signal.size).toBe(0);
  });

  it("stops on abort, unsubscribed", async () => {
    const fake = new FakeClock();
    const signal = new ReportSignal();
    const ac = new AbortController();
    const p = probe(fake);
    const done = waitUntil(scaledClock(1, fake), "x", p.check, {
      intervalMs: 1_000,
      timeoutMs: 60_000,
      signal: ac.signal,
      wake: (fn) => signal.subscribe("i-1", fn),
    });
    await fake.advance(100);
    ac.abort(new Error("stopping"));
    await expect(done).rejects.toThrow("stopping");
    expect(signal.size).toBe(0);
    expect(fake.pending).toBe(0);
  });

  it("takes model time: at time scale 0.1 an interval of 1000 model ms is 100 ms of clock time", async () => {
    const fake = new FakeClock();
    const p = probe(fake);
    void waitUntil(scaledClock(0.1, fake), "x", p.check, { intervalMs: 1_000, timeoutMs: 60_000 });
    await fake.advance(250);
    expect(p.calls).toEqual([0, 100, 225]);
    p.set("ok");
    await fake.advance(200);
  });

  it("on a grid, checks at once and then on the shared ticks, so waiters started apart poll at the same instants", async () => {
    const fake = new FakeClock(Date.UTC(2026, 0, 1)); // a whole second: a tick of any grid below
    const polls: Array<{ waiter: string; at: number }> = [];
    const t0 = fake.now();
    let terminated = false;
    const waiter = (name: string) =>
      waitUntil(
        scaledClock(1, fake),
        name,
        () => {
          polls.push({ waiter: name, at: fake.now() - t0 });
          return terminated ? true : null;
        },
        { intervalMs: 500, timeoutMs: 60_000, grid: true },
      );
    const a = waiter("a");
    await fake.advance(130);
    const b = waiter("b");
    await fake.advance(1_210);
    const c = waiter("c");
    await fake.advance(1_000);
    terminated = true;
    await fake.advance(500);
    await Promise.all([a, b, c]);
    const at = (w: string) => polls.filter((p) => p.waiter === w).map((p) => p.at);
    // each one's first check is immediate, the rest on the 500 ms ticks (no growing interval)
    expect(at("a")).toEqual([0, 500, 1000, 1500, 2000, 2500]);
    expect(at("b")).toEqual([130, 500, 1000, 1500, 2000, 2500]);
    expect(at("c")).toEqual([1340, 1500, 2000, 2500]);
    // after the first checks there is one instant per tick, whatever the number of waiters: one batched call
    const later = new Set(polls.filter((p) => ![0, 130, 1340].includes(p.at)).map((p) => p.at));
    expect([...later]).toEqual([500, 1000, 1500, 2000, 2500]);
  });

  it("a grid tick is in model time: at time scale 0.5 a 500 ms grid ticks every 250 ms of clock time", () => {
    const fake = new FakeClock(Date.UTC(2026, 0, 1) + 100);
    expect(untilNextTick(scaledClock(1, fake), 500)).toBe(400);
    expect(untilNextTick(scaledClock(0.5, fake), 500)).toBe(300); // model now ends in …200: 300 model ms = 150 clock ms
    expect(untilNextTick(scaledClock(1, new FakeClock(Date.UTC(2026, 0, 1))), 500)).toBe(500); // on a tick: the next one
    expect(untilNextTick({ ...scaledClock(1, fake), timeScale: Number.NaN }, 500)).toBe(500); // never a busy loop
  });
});
