import { describe, expect, it } from "vitest";
import { FakeClock } from "../../../shared/clock.js";
import { ReportBell } from "../../agents/report-bell.js";
import { scaledClock } from "../../time.js";
import { waitUntil } from "./deps.js";

describe("waitUntil with a wake", () => {
  it("checks again as soon as the bell rings, not only after the interval", async () => {
    const fake = new FakeClock();
    const clock = scaledClock(1, fake);
    const bell = new ReportBell();
    let stored: string | null = null;
    let checks = 0;
    const waiting = waitUntil(
      clock,
      "the report",
      () => {
        checks++;
        return stored;
      },
      { intervalMs: 10_000, timeoutMs: 60_000, wake: () => bell.next("i-a") },
    );
    await fake.advance(100);
    expect(checks).toBe(1);
    stored = "quiesced";
    bell.ring("i-a");
    await fake.advance(0);
    expect(await waiting).toBe("quiesced");
    expect(checks).toBe(2);
    // The interval's timer went with the wait.
    expect(bell.waiting).toBe(0);
    expect(fake.pending).toBe(0);
  });

  it("without a ring it still polls at the interval, and an abort still stops it", async () => {
    const fake = new FakeClock();
    const clock = scaledClock(1, fake);
    const bell = new ReportBell();
    let checks = 0;
    const ac = new AbortController();
    const check = () => {
      checks++;
      return null;
    };
    const waiting = waitUntil(clock, "the report", check, {
      intervalMs: 1000,
      timeoutMs: 60_000,
      signal: ac.signal,
      wake: () => bell.next("i-a"),
    });
    await fake.advance(1000);
    expect(checks).toBe(2);
    ac.abort(new Error("stopping"));
    await expect(waiting).rejects.toThrow("stopping");
    expect(bell.waiting).toBe(0);
  });
});
