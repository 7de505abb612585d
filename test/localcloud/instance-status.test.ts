/**
 * DescribeInstanceStatus through the unmodified SDK: status checks, scheduled events, filters,
 * pagination and EC2's errors; and the control routes that impair an instance, schedule a
 * maintenance event (also in IMDS events/maintenance/scheduled) and hang an instance.
 */
import {
  DescribeInstanceStatusCommand,
  DescribeInstancesCommand,
  paginateDescribeInstanceStatus,
  RunInstancesCommand,
  waitUntilInstanceRunning,
  type RunInstancesCommandInput,
} from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAwsGateway } from "../../coordinator/cloud/aws.js";
import { control, type Env, expectEc2Error, fast, startEnv, until } from "./helpers.js";

let env: Env;
beforeAll(async () => {
  env = await startEnv({ timeScale: 0.5 });
});
afterAll(async () => {
  await env?.stop();
});

async function launch(extra: Partial<RunInstancesCommandInput> = {}): Promise<string> {
  const out = await env.ec2.send(new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, MinCount: 1, MaxCount: 1, ...extra }));
  const id = out.Instances![0]!.InstanceId!;
  await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
  await until(() => env.cloud.world.instances.get(id)?.booted, `${id} to boot`);
  return id;
}
const statusOf = async (id: string) => (await env.ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }))).InstanceStatuses![0]!;

describe("DescribeInstanceStatus", () => {
  it("reports ok/passed for a booted instance and impaired/failed with ImpairedSince after the control API fails a check", async () => {
    const id = await launch();
    expect(await statusOf(id)).toMatchObject({
      InstanceStatus: { Status: "ok", Details: [{ Name: "reachability", Status: "passed" }] },
      SystemStatus: { Status: "ok", Details: [{ Name: "reachability", Status: "passed" }] },
      Events: [],
    });
    const r = await control(env.cloud, "POST", `instances/${id}/status-checks`, { system: "impaired" });
    expect(r.json).toEqual({ instanceId: id, system: "impaired", instance: "ok" });
    const s = await statusOf(id);
    expect(s.SystemStatus).toMatchObject({ Status: "impaired", Details: [{ Name: "reachability", Status: "failed" }] });
    expect(s.SystemStatus!.Details![0]!.ImpairedSince).toBeInstanceOf(Date);
    expect(s.InstanceStatus!.Status).toBe("ok");
    const filtered = await env.ec2.send(
      new DescribeInstanceStatusCommand({ Filters: [{ Name: "system-status.status", Values: ["impaired"] }] }),
    );
    expect(filtered.InstanceStatuses!.map((x) => x.InstanceId)).toEqual([id]);
    const failed = await env.ec2.send(
      new DescribeInstanceStatusCommand({ Filters: [{ Name: "system-status.reachability", Values: ["failed"] }] }),
    );
    expect(failed.InstanceStatuses!.map((x) => x.InstanceId)).toEqual([id]);
    await control(env.cloud, "POST", `instances/${id}/status-checks`, { system: "ok", instance: "impaired" });
    expect((await statusOf(id)).InstanceStatus!.Status).toBe("impaired");
    await control(env.cloud, "POST", `instances/${id}/status-checks`, { instance: "ok" });
    expect(await statusOf(id)).toMatchObject({ InstanceStatus: { Status: "ok" }, SystemStatus: { Status: "ok" } });
  });

  it("lists a scheduled event in DescribeInstanceStatus and IMDS; EC2 carries out instance-stop at NotBefore", async () => {
    const id = await launch({ BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { VolumeSize: 8 } }] });
    const t0 = Date.now();
    const r = await control(env.cloud, "POST", `instances/${id}/events`, { code: "instance-stop", inSeconds: 4 });
    expect(r.status).toBe(200);
    const event = r.json.event;
    expect(event.eventId).toMatch(/^instance-event-[0-9a-f]{17}$/);
    // 4 model seconds at time scale 0.5: NotBefore about 2 s from now, second precision.
    expect(Date.parse(event.notBefore)).toBeGreaterThan(t0 - 1000);
    expect(Date.parse(event.notBefore)).toBeLessThan(t0 + 3000);
    const s = await statusOf(id);
    expect(s.Events).toEqual([
      {
        InstanceEventId: event.eventId,
        Code: "instance-stop",
        Description: "The instance is scheduled to be stopped",
        NotBefore: new Date(event.notBefore),
      },
    ]);
    const byCode = await env.ec2.send(new DescribeInstanceStatusCommand({ Filters: [{ Name: "event.code", Values: ["instance-*"] }] }));
    expect(byCode.InstanceStatuses!.map((x) => x.InstanceId)).toContain(id);
    const byId = await env.ec2.send(
      new DescribeInstanceStatusCommand({ Filters: [{ Name: "event.instance-event-id", Values: [event.eventId] }] }),
    );
    expect(byId.InstanceStatuses!.map((x) => x.InstanceId)).toEqual([id]);
    const { json } = await control(env.cloud, "GET", `instances/${id}/imds`);
    const imds = JSON.parse(await (await fetch(`${json.endpoint}/latest/meta-data/events/maintenance/scheduled`)).text());
    expect(imds).toEqual([
      expect.objectContaining({
        Code: "instance-stop",
        EventId: event.eventId,
        State: "active",
        Description: "The instance is scheduled to be stopped",
      }),
    ]);
    expect(new Date(imds[0].NotBefore).getTime()).toBe(Date.parse(event.notBefore));
    // At NotBefore EC2 stops the (on-demand) instance and the event is over.
    await until(
      async () =>
        (await env.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!.State!.Name ===
        "stopped",
      `${id} to stop at NotBefore`,
      15_000,
    );
    const all = await env.ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id], IncludeAllInstances: true }));
    expect(all.InstanceStatuses![0]).toMatchObject({
      InstanceState: { Name: "stopped" },
      InstanceStatus: { Status: "not-applicable" },
      Events: [{ Description: "[Completed] The instance is scheduled to be stopped" }],
    });
  });

  it("cancels an event (IMDS moves it to history)", async () => {
    const id = await launch();
    const { json } = await control(env.cloud, "POST", `instances/${id}/events`, {
      code: "system-reboot",
      inSeconds: 3600,
      durationSeconds: 600,
    });
    const ev = json.event;
    expect(Date.parse(ev.notAfter) - Date.parse(ev.notBefore)).toBe(300_000);
    expect((await control(env.cloud, "DELETE", `instances/${id}/events/${ev.eventId}`)).json.state).toBe("canceled");
    expect((await statusOf(id)).Events![0]!.Description).toMatch(/^\[Canceled\] /);
    const imds = (await control(env.cloud, "GET", `instances/${id}/imds`)).json.endpoint;
    expect(await (await fetch(`${imds}/latest/meta-data/events/maintenance/scheduled`)).text()).toBe("[]");
    expect(JSON.parse(await (await fetch(`${imds}/latest/meta-data/events/maintenance/history`)).text())[0].State).toBe("canceled");
    expect((await control(env.cloud, "DELETE", `instances/${id}/events/${ev.eventId}`)).status).toBe(409);
    expect((await control(env.cloud, "DELETE", `instances/${id}/events/instance-event-00000000000000000`)).status).toBe(404);
  });

  it("paginates with MaxResults/NextToken and refuses what EC2 refuses", async () => {
    for (let i = 0; i < 6; i++) await launch();
    const ids: string[] = [];
    let pages = 0;
    for await (const page of paginateDescribeInstanceStatus({ client: env.ec2, pageSize: 5 }, {})) {
      pages++;
      ids.push(...page.InstanceStatuses!.map((s) => s.InstanceId!));
    }
    expect(pages).toBeGreaterThan(1);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBe([...env.cloud.world.instances.values()].filter((i) => i.state === "running").length);
    const id = ids[0]!;
    await expectEc2Error(
      env.ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id], MaxResults: 5 })),
      "InvalidParameterCombination",
      400,
    );
    await expectEc2Error(env.ec2.send(new DescribeInstanceStatusCommand({ MaxResults: 4 })), "InvalidParameterValue", 400);
    await expectEc2Error(env.ec2.send(new DescribeInstanceStatusCommand({ NextToken: "bogus" })), "InvalidPaginationToken", 400);
    await expectEc2Error(
      env.ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: ["i-nothex"] })),
      "InvalidInstanceID.Malformed",
      400,
    );
    await expectEc2Error(
      env.ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id, "i-0123456789abcdef0"] })),
      "InvalidInstanceID.NotFound",
      400,
    );
    await expectEc2Error(
      env.ec2.send(new DescribeInstanceStatusCommand({ Filters: [{ Name: "event.bogus", Values: ["x"] }] })),
      "InvalidParameterValue",
      400,
    );
    await expectEc2Error(env.ec2.send(new DescribeInstanceStatusCommand({ DryRun: true })), "DryRunOperation", 412);
  });
});

describe("the coordinator's gateway: describeInstanceStatus", () => {
  it("maps checks and events, and leaves out ids EC2 does not know instead of failing the batch", async () => {
    const a = await launch();
    const b = await launch();
    await control(env.cloud, "POST", `instances/${a}/status-checks`, { instance: "impaired" });
    const { json } = await control(env.cloud, "POST", `instances/${b}/events`, { code: "system-reboot", inSeconds: 3600 });
    const gw = createAwsGateway({ region: "us-east-1", endpoint: env.cloud.endpoint, pacingHeadroom: 0, maxAttempts: 1 });
    const got = await gw.describeInstanceStatus([a, b, "i-0123456789abcdef0"]);
    const byId = new Map(got.map((s) => [s.instanceId, s]));
    expect([...byId.keys()].sort()).toEqual([a, b].sort());
    expect(byId.get(a)).toMatchObject({ system: "ok", instance: "impaired", events: [] });
    expect(byId.get(a)!.impairedSince).toBeGreaterThan(0);
    expect(byId.get(b)).toMatchObject({
      system: "ok",
      instance: "ok",
      impairedSince: null,
      events: [{ eventId: json.event.eventId, code: "system-reboot", notBefore: Date.parse(json.event.notBefore), active: true }],
    });
    await control(env.cloud, "DELETE", `instances/${b}/events/${json.event.eventId}`);
    const [after] = await gw.describeInstanceStatus([b]);
    expect(after!.events[0]!.active).toBe(false);
    await control(env.cloud, "POST", `instances/${a}/status-checks`, { instance: "ok" });
  });
});

describe("health control routes", () => {
  it("refuses bad bodies and unknown instances, changing nothing", async () => {
    const id = await launch();
    const bad = async (route: string, body: unknown, status: number, re: RegExp) => {
      const r = await control(env.cloud, "POST", route, body);
      expect(r.status, r.text).toBe(status);
      expect(r.json.error).toMatch(re);
    };
    await bad(`instances/${id}/status-checks`, {}, 400, /system and\/or instance/);
    await bad(`instances/${id}/status-checks`, { system: "broken" }, 400, /system/);
    await bad(`instances/${id}/events`, { code: "meteor", inSeconds: 5 }, 400, /code/);
    await bad(`instances/${id}/events`, { code: "system-reboot", inSeconds: -1 }, 400, /inSeconds/);
    await bad(`instances/${id}/events`, { code: "system-reboot" }, 400, /inSeconds/);
    await bad(`instances/${id}/events`, { code: "system-reboot", inSeconds: 5, when: 1 }, 400, /when/);
    await bad(`instances/${id}/hang`, { hung: "yes" }, 400, /hung/);
    // The null runtime runs no processes: nothing to stop.
    await bad(`instances/${id}/hang`, {}, 501, /cannot stop/);
    await bad("instances/i-0123456789abcdef0/events", { code: "system-reboot", inSeconds: 5 }, 404, /does not exist/);
    expect((await control(env.cloud, "GET", `instances/${id}/status-checks`)).status).toBe(405);
    expect(await statusOf(id)).toMatchObject({ InstanceStatus: { Status: "ok" }, SystemStatus: { Status: "ok" }, Events: [] });
    const state = (await control(env.cloud, "GET", "state")).json.instances.find((i: { id: string }) => i.id === id);
    expect(state).toMatchObject({ statusChecks: null, hung: false, maintenanceEvents: [] });
  });
});
