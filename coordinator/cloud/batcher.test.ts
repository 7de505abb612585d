import { describe, it, expect } from "vitest";
import { Batcher } from "./batcher.js";

describe("batcher", () => {
  it("turns lookups made together into one call and resolves unknown ids to null", async () => {
    const calls: string[][] = [];
    const b = new Batcher<string>(async (ids) => {
      calls.push(ids);
      return new Map(ids.filter((i) => i !== "gone").map((i) => [i, `v:${i}`]));
    });
    const out = await Promise.all(["a", "b", "a", "gone"].map((id) => b.get(id)));
    expect(out).toEqual(["v:a", "v:b", "v:a", null]);
    expect(calls).toEqual([["a", "b", "gone"]]);
  });

  it("splits large batches and rejects every waiter of a failed call", async () => {
    const sizes: number[] = [];
    const b = new Batcher<number>(
      async (ids) => {
        sizes.push(ids.length);
        if (ids.includes("bad")) throw new Error("RequestLimitExceeded");
        return new Map(ids.map((i) => [i, 1]));
      },
      1,
      2,
    );
    const results = await Promise.allSettled(["x", "y", "z", "bad"].map((id) => b.get(id)));
    expect(sizes).toEqual([2, 2]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "rejected"]);
  });
});
