import { describe, expect, it } from "vitest";
import { ReportBell } from "./report-bell.js";

describe("ReportBell", () => {
  it("a ring wakes every waiter of that instance, once, and no other", async () => {
    const bell = new ReportBell();
    const woke: string[] = [];
    void bell.next("i-a").promise.then(() => woke.push("a1"));
    void bell.next("i-a").promise.then(() => woke.push("a2"));
    void bell.next("i-b").promise.then(() => woke.push("b"));
    expect(bell.waiting).toBe(3);
    bell.ring("i-a");
    await Promise.resolve();
    expect(woke.sort()).toEqual(["a1", "a2"]);
    expect(bell.waiting).toBe(1);
    bell.ring("i-a");
    await Promise.resolve();
    expect(woke).toHaveLength(2);
  });

  it("a cancelled wait is forgotten", async () => {
    const bell = new ReportBell();
    let woke = false;
    const w = bell.next("i-a");
    void w.promise.then(() => (woke = true));
    w.cancel();
    expect(bell.waiting).toBe(0);
    bell.ring("i-a");
    await Promise.resolve();
    expect(woke).toBe(false);
  });
});
