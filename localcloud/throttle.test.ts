/**
 * Throttling, unit: the token-bucket math of localcloud/throttle.ts on a fake clock, no server. The
 * same limits seen through the AWS SDK against a running localcloud (503 RequestLimitExceeded on the
 * wire) are tested in test/localcloud/throttle-wire.test.ts.
 */
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

  it("puts actions in EC2's request buckets: RunInstances 5/2, mutating 50/5, unfiltered Describe 50/10, non-mutating 100/20, tags 100/10", () => {
    expect(requestBucketFor({ action: "RunInstances", filtered: false }).spec).toEqual({ max: 5, refill: 2 });
    expect(requestBucketFor({ action: "StopInstances", filtered: false }).spec).toEqual({ max: 50, refill: 5 });
    expect(requestBucketFor({ action: "DescribeVolumes", filtered: false }).spec).toEqual({ max: 50, refill: 10 });
    expect(requestBucketFor({ action: "DescribeVolumes", filtered: true }).spec).toEqual({ max: 100, refill: 20 });
    expect(requestBucketFor({ action: "DescribeImages", filtered: false }).spec).toEqual({ max: 100, refill: 20 });
    expect(requestBucketFor({ action: "CreateTags", filtered: false }).spec).toEqual({ max: 100, refill: 10 });
  });

  it("counts the requests it refused per bucket", () => {
    const clock = new FakeClock();
    const t = new Throttle(clock, true);
    for (let i = 0; i < 7; i++) t.takeRequest({ action: "RunInstances", filtered: false });
    expect(t.takeResources("RunInstances", 1001)).toBe(false);
    expect(Object.fromEntries(t.refused)).toEqual({ RunInstances: 2, "RunInstances#instances": 1 });
    t.enabled = false;
    t.takeRequest({ action: "RunInstances", filtered: false });
    expect(t.refused.get("RunInstances")).toBe(2);
  });

  it("gives each region its own buckets, as EC2 throttles per account and Region", () => {
    const t = new Throttle(new FakeClock(), true);
    const run = { action: "RunInstances", filtered: false };
    for (let i = 0; i < 5; i++) expect(t.takeRequest(run, "us-east-1")).toBe(true);
    expect(t.takeRequest(run, "us-east-1")).toBe(false);
    expect(t.takeRequest(run, "us-west-2")).toBe(true);
    expect(t.takeResources("RunInstances", 1000, "us-east-1")).toBe(true);
    expect(t.takeResources("RunInstances", 1, "us-east-1")).toBe(false);
    expect(t.takeResources("RunInstances", 1000, "us-west-2")).toBe(true);
  });

  it("never refuses when disabled", () => {
    const t = new Throttle(new FakeClock(), false);
    for (let i = 0; i < 20; i++) expect(t.takeRequest({ action: "RunInstances", filtered: false })).toBe(true);
  });
});
