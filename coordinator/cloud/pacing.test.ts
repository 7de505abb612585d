import { describe, expect, it } from "vitest";
import { FakeClock } from "../../shared/clock.js";
import { Pacer, paceOf, requestBucket } from "./pacing.js";

/** Start `n` acquisitions of `action` and report how many have been granted so far. */
function start(p: Pacer, action: string, n: number, opts: { unfiltered?: boolean; resources?: number } = {}): () => number {
  let granted = 0;
  for (let i = 0; i < n; i++) void p.acquire(action, opts).then(() => granted++);
  return () => granted;
}

describe("requestBucket", () => {
  it("gives every action its own bucket, sized by its category or its own limits", () => {
    expect(requestBucket("RunInstances")).toEqual({ key: "RunInstances", spec: { max: 5, refillPerSec: 2 } });
    expect(requestBucket("DescribeImages")).toEqual({ key: "DescribeImages", spec: { max: 100, refillPerSec: 20 } });
    expect(requestBucket("DescribeInstances")).toEqual({ key: "DescribeInstances", spec: { max: 100, refillPerSec: 20 } });
    expect(requestBucket("DescribeInstances", true)).toEqual({ key: "DescribeInstances#unfiltered", spec: { max: 50, refillPerSec: 10 } });
    // Only the listed describes have an unfiltered bucket.
    expect(requestBucket("DescribeImages", true).key).toBe("DescribeImages");
    expect(requestBucket("AttachVolume")).toEqual({ key: "AttachVolume", spec: { max: 50, refillPerSec: 5 } });
    expect(requestBucket("DetachVolume").key).toBe("DetachVolume");
    expect(requestBucket("CreateTags").spec).toEqual({ max: 100, refillPerSec: 10 });
  });
});

/** Teach `p` that `action`'s calls are answered without jitter (no reserve), then let its bucket refill. */
async function answeredAtOnce(p: Pacer, clock: FakeClock, action: string, opts: { unfiltered?: boolean; resources?: number } = {}) {
  (await p.acquire(action, opts))();
  await clock.advance(60_000);
}

describe("Pacer", () => {
  it("admits RunInstances 2 per second; before any answer its burst keeps back a second of refill (3 of 5)", async () => {
    const clock = new FakeClock();
    const granted = start(new Pacer(clock, 1), "RunInstances", 9);
    await clock.advance(0);
    expect(granted()).toBe(3);
    await clock.advance(500);
    expect(granted()).toBe(4);
    await clock.advance(2500);
    expect(granted()).toBe(9);
  });

  it("keeps refill x jitter back from the burst: answers spread over 2 s leave a burst of 1, steady answers the whole 5", async () => {
    const clock = new FakeClock();
    const jittery = new Pacer(clock, 1);
    const quick = await jittery.acquire("RunInstances");
    const slow = await jittery.acquire("RunInstances");
    quick();
    await clock.advance(2000);
    slow();
    await clock.advance(60_000);
    const j = start(jittery, "RunInstances", 3);
    await clock.advance(0);
    expect(j()).toBe(1);
    await clock.advance(500);
    expect(j()).toBe(2);

    // Every answer 1.5 s after release: the server's own time, no jitter.
    const steady = new Pacer(clock, 1);
    const a = await steady.acquire("RunInstances");
    const b = await steady.acquire("RunInstances");
    await clock.advance(1500);
    a();
    b();
    await clock.advance(60_000);
    const s = start(steady, "RunInstances", 6);
    await clock.advance(0);
    expect(s()).toBe(5);
  });

  it("an exhausted describe bucket does not hold up another action's describes", async () => {
    const clock = new FakeClock();
    const p = new Pacer(clock, 1);
    await answeredAtOnce(p, clock, "DescribeImages");
    const images = start(p, "DescribeImages", 120);
    await clock.advance(0);
    expect(images()).toBe(100);
    const instances = start(p, "DescribeInstances", 10);
    const subnets = start(p, "DescribeSubnets", 10);
    await clock.advance(0);
    expect(instances()).toBe(10);
    expect(subnets()).toBe(10);
    expect(images()).toBe(100);
    await clock.advance(1000);
    expect(images()).toBe(120);
  });

  it("mutating actions are paced per action (AttachVolume does not wait for DetachVolume)", async () => {
    const clock = new FakeClock();
    const p = new Pacer(clock, 1);
    await answeredAtOnce(p, clock, "DetachVolume");
    await answeredAtOnce(p, clock, "AttachVolume");
    const detach = start(p, "DetachVolume", 60);
    const attach = start(p, "AttachVolume", 50);
    await clock.advance(0);
    expect(detach()).toBe(50);
    expect(attach()).toBe(50);
    await clock.advance(2000);
    expect(detach()).toBe(60);
  });

  it("an unfiltered describe uses the smaller 50/10 bucket, apart from filtered ones", async () => {
    const clock = new FakeClock();
    const p = new Pacer(clock, 1);
    await answeredAtOnce(p, clock, "DescribeInstances", { unfiltered: true });
    const all = start(p, "DescribeInstances", 60, { unfiltered: true });
    const some = start(p, "DescribeInstances", 5);
    await clock.advance(0);
    expect(all()).toBe(50);
    expect(some()).toBe(5);
    await clock.advance(1000);
    expect(all()).toBe(60);
  });

  it("charges the instance resource bucket per instance, and takes only its headroom's share", async () => {
    const clock = new FakeClock();
    const p = new Pacer(clock, 0.5);
    await answeredAtOnce(p, clock, "RunInstances", { resources: 1 });
    // Half of RunInstances' resource bucket: 500 instances, refilling 1 per second.
    const big = start(p, "RunInstances", 1, { resources: 500 });
    const next = start(p, "RunInstances", 1, { resources: 2 });
    await clock.advance(0);
    expect(big()).toBe(1);
    expect(next()).toBe(0);
    await clock.advance(1900);
    expect(next()).toBe(0);
    await clock.advance(100);
    expect(next()).toBe(1);
  });

  it("a take larger than the reserve leaves is still granted (no deadlock at a small headroom)", async () => {
    const clock = new FakeClock();
    // 10% of RunInstances' 5-token request bucket is half a token.
    const granted = start(new Pacer(clock, 0.1), "RunInstances", 2);
    await clock.advance(0);
    expect(granted()).toBe(1);
    await clock.advance(5000);
    expect(granted()).toBe(2);
  });
});

describe("paceOf", () => {
  it("reads filtering and the instance count from the request as EC2 does", () => {
    expect(paceOf("DescribeInstances", {})).toEqual({ unfiltered: true, resources: 0 });
    expect(paceOf("DescribeInstances", { Filters: [] })).toEqual({ unfiltered: true, resources: 0 });
    expect(paceOf("DescribeInstances", { Filters: [{ Name: "instance-id", Values: ["i-1"] }] }).unfiltered).toBe(false);
    expect(paceOf("DescribeInstanceStatus", { InstanceIds: ["i-1"] }).unfiltered).toBe(false);
    expect(paceOf("DescribeInstanceStatus", { MaxResults: 1000 }).unfiltered).toBe(false);
    expect(paceOf("DescribeInstanceStatus", { NextToken: "t" }).unfiltered).toBe(false);
    expect(paceOf("RunInstances", { MinCount: 1, MaxCount: 1 })).toEqual({ unfiltered: true, resources: 1 });
    expect(paceOf("RunInstances", {}).resources).toBe(1);
    expect(paceOf("TerminateInstances", { InstanceIds: ["i-1", "i-2", "i-3"] }).resources).toBe(3);
    expect(paceOf("AttachVolume", { InstanceId: "i-1" }).resources).toBe(0);
  });
});

describe("Pacer.throttled", () => {
  it("empties the action's bucket: what follows waits for the refill, other actions do not", async () => {
    const clock = new FakeClock();
    const p = new Pacer(clock, 1);
    await answeredAtOnce(p, clock, "RunInstances");
    p.throttled("RunInstances");
    const run = start(p, "RunInstances", 2);
    const other = start(p, "DescribeImages", 1);
    await clock.advance(0);
    expect(run()).toBe(0);
    expect(other()).toBe(1);
    await clock.advance(500);
    expect(run()).toBe(1);
    await clock.advance(500);
    expect(run()).toBe(2);
  });
});
