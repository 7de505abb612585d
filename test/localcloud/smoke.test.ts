import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DescribeAvailabilityZonesCommand,
  DescribeInstancesCommand,
  RunInstancesCommand,
  waitUntilInstanceRunning,
} from "@aws-sdk/client-ec2";
import { startEnv, type Env } from "./helpers.js";

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  await env?.stop();
});

describe("localcloud programmatic API", () => {
  it("answers DescribeAvailabilityZones with us-east-1a..c", async () => {
    const out = await env.ec2.send(new DescribeAvailabilityZonesCommand({}));
    expect(out.AvailabilityZones?.map((z) => z.ZoneName)).toEqual(["us-east-1a", "us-east-1b", "us-east-1c"]);
    expect(out.$metadata.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("launches an instance that goes pending then running", async () => {
    const run = await env.ec2.send(
      new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro" }),
    );
    const inst = run.Instances![0]!;
    expect(inst.State).toEqual({ Code: 0, Name: "pending" });
    await waitUntilInstanceRunning(
      { client: env.ec2, maxWaitTime: 10, minDelay: 0.01 as never, maxDelay: 0.05 as never },
      { InstanceIds: [inst.InstanceId!] },
    );
    const d = await env.ec2.send(new DescribeInstancesCommand({ InstanceIds: [inst.InstanceId!] }));
    expect(d.Reservations![0]!.Instances![0]!.State!.Name).toBe("running");
  });
});
