import { describe, expect, it } from "vitest";
import { FakeClock } from "../shared/clock.js";
import { Throttle, requestBucketFor } from "./throttle.js";

describe("Throttle", () => {
  it("charges instance resource buckets per instance and refills them at the documented rate", async () => {
    const clock = new FakeClock();
    const t = new Throttle(clock, true);
    expect(t.takeResources("RunInstances", 1000)).toBe(true);
    expect(t.takeResources("RunInstances", 1)).toBe(false);
    await clock.advance(500); // 2 per second
    expect(t.takeResources("RunInstances", 1)).toBe(true);
    expect(t.takeResources("RunInstances", 1)).toBe(false);
    expect(t.takeResources("TerminateInstances", 1000)).toBe(true);
    await clock.advance(1000); // 20 per second
    expect(t.takeResources("TerminateInstances", 20)).toBe(true);
    expect(t.takeResources("TerminateInstances", 1)).toBe(false);
  });

  it("puts actions in the buckets of reference §C", () => {
    expect(requestBucketFor({ action: "RunInstances", filtered: false }).spec).toEqual({ max: 5, refill: 2 });
    expect(requestBucketFor({ action: "StopInstances", filtered: false }).spec).toEqual({ max: 50, refill: 5 });
    expect(requestBucketFor({ action: "DescribeVolumes", filtered: false }).spec).toEqual({ max: 50, refill: 10 });
    expect(requestBucketFor({ action: "DescribeVolumes", filtered: true }).spec).toEqual({ max: 100, refill: 20 });
    expect(requestBucketFor({ action: "DescribeImages", filtered: false }).spec).toEqual({ max: 100, refill: 20 });
    expect(requestBucketFor({ action: "CreateTags", filtered: false }).spec).toEqual({ max: 100, refill: 10 });
  });

  it("never refuses when disabled", () => {
    const t = new Throttle(new FakeClock(), false);
    for (let i = 0; i < 20; i++) expect(t.takeRequest({ action: "RunInstances", filtered: false })).toBe(true);
  });
});
