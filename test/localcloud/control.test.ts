/** Control API (/_localcloud/v1/): interruption timeline, rebalance, lose, capacity, faults, state, reset. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DescribeInstancesCommand,
  DescribeSpotInstanceRequestsCommand,
  DescribeVolumesCommand,
  RunInstancesCommand,
  waitUntilInstanceRunning,
  waitUntilInstanceStopped,
  waitUntilInstanceTerminated,
  type RunInstancesCommandInput,
} from "@aws-sdk/client-ec2";
import { X509Certificate } from "node:crypto";
import { control, expectEc2Error, fast, startEnv, until, type Env } from "./helpers.js";

let env: Env;
beforeAll(async () => {
  env = await startEnv({ timeScale: 2 });
});
afterAll(async () => {
  await env?.stop();
});

async function launch(extra: Partial<RunInstancesCommandInput> = {}) {
  const out = await env.ec2.send(new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, MinCount: 1, MaxCount: 1, ...extra }));
  const id = out.Instances![0]!.InstanceId!;
  await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
  return id;
}
const spot = (type: "one-time" | "persistent", behavior: "terminate" | "stop" | "hibernate"): Partial<RunInstancesCommandInput> => ({
  InstanceMarketOptions: { MarketType: "spot", SpotOptions: { SpotInstanceType: type, InstanceInterruptionBehavior: behavior } },
  HibernationOptions: behavior === "hibernate" ? { Configured: true } : undefined,
});
const state = async (id: string) =>
  (await env.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;
async function imds(id: string, path: string): Promise<{ status: number; body: string } | "closed"> {
  const { json } = await control(env.cloud, "GET", `instances/${id}/imds`);
  try {
    const res = await fetch(`${json.endpoint}/latest/${path}`);
    return { status: res.status, body: await res.text() };
  } catch {
    return "closed";
  }
}

describe("spot interruption timeline", () => {
  it("terminate: 404 -> notice with time = now + notice x timeScale -> shutting-down (Server.SpotInstanceTermination) -> terminated", async () => {
    const id = await launch({
      ...spot("one-time", "terminate"),
      BlockDeviceMappings: [{ DeviceName: "/dev/sdf", Ebs: { VolumeSize: 1 } }],
    });
    expect(await imds(id, "meta-data/spot/instance-action")).toMatchObject({ status: 404 });
    const t0 = Date.now();
    const r = await control(env.cloud, "POST", `instances/${id}/interrupt`, { action: "terminate", noticeSeconds: 0.3 });
    expect(r.status).toBe(200);
    const notice = await imds(id, "meta-data/spot/instance-action");
    expect(notice).toMatchObject({ status: 200 });
    const body = JSON.parse((notice as { body: string }).body) as { action: string; time: string };
    expect(body.action).toBe("terminate");
    // 0.3 model s × timeScale 2 = 0.6 s real, at second precision
    expect(Math.abs(Date.parse(body.time) - (t0 + 600))).toBeLessThan(1500);
    expect((await imds(id, "meta-data/spot/termination-time")) as { body: string }).toMatchObject({ status: 200 });
    expect((await state(id)).State!.Name).toBe("running");
    // shutting-down is brief: a poll slowed by a loaded machine may first see terminated (same reason).
    const shutting = await until(async () => {
      const st = await state(id);
      return st.State!.Name === "shutting-down" || st.State!.Name === "terminated" ? st : null;
    }, "shutting-down (or already terminated)");
    expect(shutting.StateReason?.Code).toBe("Server.SpotInstanceTermination");
    await waitUntilInstanceTerminated(fast(env), { InstanceIds: [id] });
    const data = (
      await env.ec2.send(
        new DescribeVolumesCommand({
          Filters: [
            { Name: "size", Values: ["1"] },
            { Name: "status", Values: ["available"] },
          ],
        }),
      )
    ).Volumes!;
    expect(data.length).toBeGreaterThan(0);
    const req = (await env.ec2.send(new DescribeSpotInstanceRequestsCommand({ Filters: [{ Name: "instance-id", Values: [id] }] })))
      .SpotInstanceRequests![0]!;
    expect(req.State).toBe("closed");
    expect(await imds(id, "meta-data/instance-id")).toBe("closed");
  });

  it("stop: persistent request goes stopping -> stopped with Server.SpotInstanceShutdown and the request disabled", async () => {
    const id = await launch(spot("persistent", "stop"));
    await control(env.cloud, "POST", `instances/${id}/interrupt`, { noticeSeconds: 0.05 });
    await waitUntilInstanceStopped(fast(env), { InstanceIds: [id] });
    const s = await state(id);
    expect(s.StateReason?.Code).toBe("Server.SpotInstanceShutdown");
    const req = (await env.ec2.send(new DescribeSpotInstanceRequestsCommand({ SpotInstanceRequestIds: [s.SpotInstanceRequestId!] })))
      .SpotInstanceRequests![0]!;
    expect(req).toMatchObject({ State: "disabled", Status: { Code: "instance-stopped-no-capacity" } });
  });

  it("hibernate: notice time is now (no lead) and the instance stops at once", async () => {
    const id = await launch(spot("persistent", "hibernate"));
    const r = await control(env.cloud, "POST", `instances/${id}/interrupt`, { action: "hibernate", noticeSeconds: 120 });
    expect(Math.abs(Date.parse(r.json.notice.time) - Date.now())).toBeLessThan(1500);
    await waitUntilInstanceStopped(fast(env), { InstanceIds: [id] });
  });

  it("rejects an action the instance was not launched for", async () => {
    const id = await launch(spot("one-time", "terminate"));
    const r = await control(env.cloud, "POST", `instances/${id}/interrupt`, { action: "stop" });
    expect(r.status).toBe(400);
    expect(r.json.error).toMatch(/interruption behavior terminate/);
  });

  it("rebalance sets events/recommendations/rebalance", async () => {
    const id = await launch(spot("one-time", "terminate"));
    expect(await imds(id, "meta-data/events/recommendations/rebalance")).toMatchObject({ status: 404 });
    const r = await control(env.cloud, "POST", `instances/${id}/rebalance`);
    expect(r.status).toBe(200);
    const got = (await imds(id, "meta-data/events/recommendations/rebalance")) as { status: number; body: string };
    expect(got.status).toBe(200);
    expect(JSON.parse(got.body).noticeTime).toBe(r.json.noticeTime);
  });

  it("lose: straight to shutting-down and terminated with no notice", async () => {
    const id = await launch();
    const r = await control(env.cloud, "POST", `instances/${id}/lose`);
    expect(r.json.state).toBe("shutting-down");
    expect(env.cloud.world.instances.get(id)!.spotAction).toBeNull();
    await waitUntilInstanceTerminated(fast(env), { InstanceIds: [id] });
  });
});

describe("capacity and faults", () => {
  it("capacity per (type, AZ, market) gives InsufficientInstanceCapacity 500, and can come back", async () => {
    const put = await control(env.cloud, "PUT", "capacity", {
      instanceType: "m5.large",
      availabilityZone: "us-east-1a",
      market: "on-demand",
      available: false,
    });
    expect(put.status).toBe(200);
    await expectEc2Error(
      env.ec2.send(new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, MinCount: 1, MaxCount: 1, InstanceType: "m5.large" })),
      "InsufficientInstanceCapacity",
      500,
    );
    // spot of the same type is a different pool
    await env.ec2.send(
      new RunInstancesCommand({
        ImageId: env.cloud.world.baseImageId,
        MinCount: 1,
        MaxCount: 1,
        InstanceType: "m5.large",
        InstanceMarketOptions: { MarketType: "spot" },
      }),
    );
    await control(env.cloud, "PUT", "capacity", {
      instanceType: "m5.large",
      availabilityZone: "us-east-1a",
      market: "on-demand",
      available: 1,
    });
    await env.ec2.send(
      new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, MinCount: 1, MaxCount: 1, InstanceType: "m5.large" }),
    );
    await expectEc2Error(
      env.ec2.send(new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, MinCount: 1, MaxCount: 1, InstanceType: "m5.large" })),
      "InsufficientInstanceCapacity",
      500,
    );
  });

  it("failNext fails the next N calls of an action with the given code", async () => {
    await control(env.cloud, "PUT", "faults", { failNext: [{ action: "DescribeVolumes", code: "InternalError", count: 2 }] });
    await expectEc2Error(env.ec2.send(new DescribeVolumesCommand({})), "InternalError", 500);
    await expectEc2Error(env.ec2.send(new DescribeVolumesCommand({})), "InternalError", 500);
    await env.ec2.send(new DescribeVolumesCommand({}));
  });
});

describe("state, identity, reset and bad requests", () => {
  it("GET state lists instances with their log path and IMDS endpoint", async () => {
    const id = await launch();
    const s = await control(env.cloud, "GET", "state");
    const me = s.json.instances.find((i: { id: string }) => i.id === id);
    expect(me).toMatchObject({ state: "running", imdsEndpoint: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/) });
    expect(s.json.profile).toBe("instant");
    expect(s.json.timeScale).toBe(2);
  });

  it("serves the identity certificate as PEM", async () => {
    const r = await control(env.cloud, "GET", "identity/certificate");
    expect(r.text).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(() => new X509Certificate(r.text)).not.toThrow();
  });

  it.each([
    ["POST", "instances/i-0123456789abcdef0/interrupt", {}, 404],
    ["POST", "instances/{id}/interrupt", { action: "explode" }, 400],
    ["POST", "instances/{id}/interrupt", { noticeSeconds: "soon" }, 400],
    ["POST", "instances/{id}/interrupt", { noticeSeconds: 10, extra: 1 }, 400],
    ["POST", "instances/{id}/interrupt", "{not json", 400],
    ["GET", "instances/{id}/interrupt", undefined, 405],
    ["PUT", "capacity", { instanceType: "z9.huge", availabilityZone: "us-east-1a", market: "spot", available: false }, 400],
    ["PUT", "capacity", { instanceType: "m5.large", availabilityZone: "mars-1a", market: "spot", available: false }, 400],
    ["PUT", "capacity", { instanceType: "m5.large", availabilityZone: "us-east-1a", market: "reserved", available: false }, 400],
    ["PUT", "faults", { failNext: [{ action: "RunInstances", code: "X", count: -1 }] }, 400],
    ["PUT", "faults", { throttle: "yes" }, 400],
    ["GET", "nothing-here", undefined, 404],
  ] as const)("%s %s %j -> %i with a reason", async (method, route, body, status) => {
    const id = [...env.cloud.world.instances.values()].find((i) => i.state === "running")?.id ?? "i-0123456789abcdef0";
    const r = await control(env.cloud, method, route.replace("{id}", id), body);
    expect(r.status).toBe(status);
    expect(r.json.error.length).toBeGreaterThan(3);
  });

  it("POST reset forgets everything and reseeds", async () => {
    const r = await control(env.cloud, "POST", "reset");
    expect(r.status).toBe(200);
    expect(env.cloud.world.instances.size).toBe(0);
    expect(env.cloud.world.baseImageId).toBe(r.json.baseImageId);
    await launch();
  });
});
