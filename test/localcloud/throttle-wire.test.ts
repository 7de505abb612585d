/**
 * Throttling, on the wire: the unmodified AWS SDK against a running localcloud with throttling on and
 * an injected clock; an exhausted bucket answers 503 RequestLimitExceeded and refills at EC2's rate.
 * The bucket math alone is unit-tested beside the code in localcloud/throttle.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DescribeAvailabilityZonesCommand, DescribeInstancesCommand, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { FakeClock } from "../../shared/clock.js";
import { control, expectEc2Error, startEnv, type Env } from "./helpers.js";

let env: Env;
const clock = new FakeClock();
beforeAll(async () => {
  env = await startEnv({ clock, throttle: true });
});
afterAll(async () => {
  await env?.stop();
});

const launch = () => env.ec2.send(new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, MinCount: 1, MaxCount: 1 }));

describe("throttling", () => {
  it("RunInstances: a burst past 5 gets 503, then the bucket refills at 2 per second", async () => {
    for (let i = 0; i < 5; i++) await launch();
    await expectEc2Error(launch(), "RequestLimitExceeded", 503);
    await clock.advance(499);
    await expectEc2Error(launch(), "RequestLimitExceeded", 503);
    await clock.advance(1);
    await launch(); // 0.5 s -> 1 token
    await expectEc2Error(launch(), "RequestLimitExceeded", 503);
    await clock.advance(1000);
    await launch();
    await launch(); // 1 s -> 2 tokens
    await expectEc2Error(launch(), "RequestLimitExceeded", 503);
  });

  it("throttling one action does not affect another; unfiltered Describes use the smaller 50/10 bucket", async () => {
    await env.ec2.send(new DescribeAvailabilityZonesCommand({}));
    for (let i = 0; i < 50; i++) await env.ec2.send(new DescribeInstancesCommand({}));
    await expectEc2Error(env.ec2.send(new DescribeInstancesCommand({})), "RequestLimitExceeded", 503);
    // a filtered call uses the 100/20 non-mutating bucket, still full
    await env.ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: "instance-state-name", Values: ["running"] }] }));
    await clock.advance(100); // 10/s -> 1 token
    await env.ec2.send(new DescribeInstancesCommand({}));
    await expectEc2Error(env.ec2.send(new DescribeInstancesCommand({})), "RequestLimitExceeded", 503);
  });

  it("can be switched off and on through the control API", async () => {
    const off = await control(env.cloud, "PUT", "faults", { throttle: false });
    expect(off.json.throttle).toBe(false);
    for (let i = 0; i < 8; i++) await launch();
    await control(env.cloud, "PUT", "faults", { throttle: true });
    for (let i = 0; i < 5; i++) await launch();
    await expectEc2Error(launch(), "RequestLimitExceeded", 503);
  });
});
