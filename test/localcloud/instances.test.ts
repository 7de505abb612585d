/** Contract: instance actions through the real SDK and its waiters (instant profile). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CreateNetworkInterfaceCommand,
  DescribeInstanceStatusCommand,
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSpotInstanceRequestsCommand,
  DescribeSubnetsCommand,
  DescribeVolumesCommand,
  CancelSpotInstanceRequestsCommand,
  DescribeInstanceAttributeCommand,
  ModifyInstanceAttributeCommand,
  ModifyNetworkInterfaceAttributeCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  paginateDescribeInstances,
  waitUntilInstanceRunning,
  waitUntilInstanceStatusOk,
  waitUntilInstanceStopped,
  waitUntilInstanceTerminated,
  waitUntilVolumeAvailable,
  type InstanceAttributeName,
  type RunInstancesCommandInput,
} from "@aws-sdk/client-ec2";
import { expectEc2Error, fast, startEnv, until, type Env } from "./helpers.js";

let env: Env;
let ami: string;
beforeAll(async () => {
  env = await startEnv();
  ami = env.cloud.world.baseImageId;
});
afterAll(async () => {
  await env?.stop();
});

const run = (extra: Partial<RunInstancesCommandInput> = {}) =>
  env.ec2.send(new RunInstancesCommand({ ImageId: ami, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro", ...extra }));
const describeOne = async (id: string) =>
  (await env.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;

describe("RunInstances", () => {
  it("returns a reservation of pending instances with network, root volume and tags", async () => {
    const out = await run({
      TagSpecifications: [
        { ResourceType: "instance", Tags: [{ Key: "Name", Value: "db" }] },
        { ResourceType: "volume", Tags: [{ Key: "v", Value: "1" }] },
      ],
    });
    expect(out.ReservationId).toMatch(/^r-[0-9a-f]{17}$/);
    const i = out.Instances![0]!;
    expect(i.InstanceId).toMatch(/^i-[0-9a-f]{17}$/);
    expect(i.State).toEqual({ Code: 0, Name: "pending" });
    expect(i.Placement?.AvailabilityZone).toBe("us-east-1a");
    expect(i.PrivateIpAddress).toMatch(/^172\.31\.\d+\.\d+$/);
    expect(i.Tags).toEqual([{ Key: "Name", Value: "db" }]);
    expect(i.InstanceLifecycle).toBeUndefined();
    expect(i.RootDeviceName).toBe("/dev/xvda");
    const root = i.BlockDeviceMappings!.find((b) => b.DeviceName === "/dev/xvda")!;
    expect(root.Ebs).toMatchObject({ Status: "attached", DeleteOnTermination: true });
    expect(i.NetworkInterfaces![0]).toMatchObject({ Status: "in-use", Attachment: { DeviceIndex: 0, DeleteOnTermination: true } });
    const vol = (await env.ec2.send(new DescribeVolumesCommand({ VolumeIds: [root.Ebs!.VolumeId!] }))).Volumes![0]!;
    expect(vol).toMatchObject({ State: "in-use", Size: 8, Tags: [{ Key: "v", Value: "1" }] });
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [i.InstanceId!] });
    await waitUntilInstanceStatusOk(fast(env), { InstanceIds: [i.InstanceId!] });
  });

  it("launches spot instances with instanceLifecycle and a spot request", async () => {
    const out = await run({
      InstanceMarketOptions: { MarketType: "spot", SpotOptions: { SpotInstanceType: "persistent", InstanceInterruptionBehavior: "stop" } },
    });
    const i = out.Instances![0]!;
    expect(i.InstanceLifecycle).toBe("spot");
    expect(i.SpotInstanceRequestId).toMatch(/^sir-[0-9a-f]{17}$/);
    const req = (await env.ec2.send(new DescribeSpotInstanceRequestsCommand({ SpotInstanceRequestIds: [i.SpotInstanceRequestId!] })))
      .SpotInstanceRequests![0]!;
    expect(req).toMatchObject({
      State: "active",
      Type: "persistent",
      InstanceInterruptionBehavior: "stop",
      InstanceId: i.InstanceId,
      Status: { Code: "fulfilled" },
    });
    const filtered = await env.ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: "instance-lifecycle", Values: ["spot"] }] }));
    expect(filtered.Reservations!.flatMap((r) => r.Instances!).map((x) => x.InstanceId)).toContain(i.InstanceId);
  });

  it("is idempotent on ClientToken: same token and params give the same instance, other params are rejected", async () => {
    const a = await run({ ClientToken: "tok-1" });
    const b = await run({ ClientToken: "tok-1" });
    expect(b.Instances![0]!.InstanceId).toBe(a.Instances![0]!.InstanceId);
    expect(b.ReservationId).toBe(a.ReservationId);
    const count = (
      await env.ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: "client-token", Values: ["tok-1"] }] }))
    ).Reservations!.flatMap((r) => r.Instances!).length;
    expect(count).toBe(1);
    await expectEc2Error(run({ ClientToken: "tok-1", InstanceType: "m5.large" }), "IdempotentParameterMismatch", 400);
  });

  it("reports DryRun success as DryRunOperation 412 and creates nothing", async () => {
    const before = env.cloud.world.instances.size;
    await expectEc2Error(run({ DryRun: true, ClientToken: "dry" }), "DryRunOperation", 412);
    expect(env.cloud.world.instances.size).toBe(before);
    // the token was not consumed: a real launch with it works and differs from nothing
    const real = await run({ ClientToken: "dry" });
    expect(real.Instances).toHaveLength(1);
  });

  it("launches MaxCount instances in one reservation, each with its own IP", async () => {
    const out = await run({ MinCount: 2, MaxCount: 3 });
    expect(out.Instances).toHaveLength(3);
    expect(new Set(out.Instances!.map((i) => i.PrivateIpAddress)).size).toBe(3);
    expect(out.Instances!.map((i) => i.AmiLaunchIndex)).toEqual([0, 1, 2]);
  });

  it("honours an explicit private IP and subnet", async () => {
    const subnets = (await env.ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: "availability-zone", Values: ["us-east-1b"] }] })))
      .Subnets!;
    const out = await run({ SubnetId: subnets[0]!.SubnetId, PrivateIpAddress: "172.31.16.50" });
    expect(out.Instances![0]).toMatchObject({
      PrivateIpAddress: "172.31.16.50",
      SubnetId: subnets[0]!.SubnetId,
      Placement: { AvailabilityZone: "us-east-1b" },
    });
    await expectEc2Error(run({ SubnetId: subnets[0]!.SubnetId, PrivateIpAddress: "172.31.16.50" }), "InvalidIPAddress.InUse", 400);
  });
});

describe("instance lifecycle", () => {
  it("terminates through shutting-down, deletes the root volume and launch ENI, keeps data volumes", async () => {
    const out = await run({ BlockDeviceMappings: [{ DeviceName: "/dev/sdf", Ebs: { VolumeSize: 2, VolumeType: "gp3" } }] });
    const id = out.Instances![0]!.InstanceId!;
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    const inst = await describeOne(id);
    const rootVol = inst.BlockDeviceMappings!.find((b) => b.DeviceName === "/dev/xvda")!.Ebs!.VolumeId!;
    const dataVol = inst.BlockDeviceMappings!.find((b) => b.DeviceName === "/dev/sdf")!.Ebs!;
    expect(dataVol.DeleteOnTermination).toBe(false);
    const eni = inst.NetworkInterfaces![0]!.NetworkInterfaceId!;
    const t = await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    expect(t.TerminatingInstances![0]).toMatchObject({
      PreviousState: { Name: "running", Code: 16 },
      CurrentState: { Name: "shutting-down", Code: 32 },
    });
    await waitUntilInstanceTerminated(fast(env), { InstanceIds: [id] });
    const after = await describeOne(id);
    expect(after.State).toEqual({ Code: 48, Name: "terminated" });
    expect(after.StateReason?.Code).toBe("Client.UserInitiatedShutdown");
    await waitUntilVolumeAvailable(fast(env), { VolumeIds: [dataVol.VolumeId!] });
    await until(() => !env.cloud.world.volumes.has(rootVol), "root volume deletion");
    await expectEc2Error(env.ec2.send(new DescribeVolumesCommand({ VolumeIds: [rootVol] })), "InvalidVolume.NotFound", 400);
    await expectEc2Error(
      env.ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [eni] })),
      "InvalidNetworkInterfaceID.NotFound",
      400,
    );
    // terminate is idempotent
    const again = await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    expect(again.TerminatingInstances![0]!.CurrentState!.Name).toBe("terminated");
    await expectEc2Error(env.ec2.send(new StartInstancesCommand({ InstanceIds: [id] })), "IncorrectInstanceState", 400);
  });

  it("keeps an existing ENI launched at DeviceIndex 0 and frees it only after terminated (+ENI free delay)", async () => {
    const subnet = (await env.ec2.send(new DescribeSubnetsCommand({}))).Subnets!.find((s) => s.AvailabilityZone === "us-east-1a")!;
    const eni = (await env.ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: subnet.SubnetId!, PrivateIpAddress: "172.31.0.77" })))
      .NetworkInterface!;
    const first = await run({ NetworkInterfaces: [{ DeviceIndex: 0, NetworkInterfaceId: eni.NetworkInterfaceId }] });
    const id = first.Instances![0]!.InstanceId!;
    expect(first.Instances![0]!.PrivateIpAddress).toBe("172.31.0.77");
    expect(first.Instances![0]!.NetworkInterfaces![0]!.Attachment!.DeleteOnTermination).toBe(false);
    await expectEc2Error(
      run({ NetworkInterfaces: [{ DeviceIndex: 0, NetworkInterfaceId: eni.NetworkInterfaceId }] }),
      "InvalidNetworkInterface.InUse",
      400,
    );
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    await expectEc2Error(
      run({ NetworkInterfaces: [{ DeviceIndex: 0, NetworkInterfaceId: eni.NetworkInterfaceId }] }),
      "InvalidNetworkInterface.InUse",
      400,
    );
    await waitUntilInstanceTerminated(fast(env), { InstanceIds: [id] });
    const freed = await until(async () => {
      const e = (await env.ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [eni.NetworkInterfaceId!] })))
        .NetworkInterfaces![0]!;
      return e.Status === "available" ? e : null;
    }, "ENI to become available");
    expect(freed.PrivateIpAddress).toBe("172.31.0.77");
    const second = await run({ NetworkInterfaces: [{ DeviceIndex: 0, NetworkInterfaceId: eni.NetworkInterfaceId }] });
    expect(second.Instances![0]!.PrivateIpAddress).toBe("172.31.0.77");
  });

  it("stops and starts a persistent spot instance with stop behaviour, keeping volumes and IP", async () => {
    const out = await run({
      InstanceMarketOptions: { MarketType: "spot", SpotOptions: { SpotInstanceType: "persistent", InstanceInterruptionBehavior: "stop" } },
    });
    const id = out.Instances![0]!.InstanceId!;
    const ip = out.Instances![0]!.PrivateIpAddress;
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    const s = await env.ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    expect(s.StoppingInstances![0]!.CurrentState).toEqual({ Code: 64, Name: "stopping" });
    await waitUntilInstanceStopped(fast(env), { InstanceIds: [id] });
    const stopped = await describeOne(id);
    expect(stopped.PrivateIpAddress).toBe(ip);
    expect(stopped.BlockDeviceMappings).toHaveLength(1);
    await env.ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, InstanceType: { Value: "t3.small" } }));
    const st = await env.ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    expect(st.StartingInstances![0]).toMatchObject({ PreviousState: { Name: "stopped" }, CurrentState: { Name: "pending" } });
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    expect((await describeOne(id)).InstanceType).toBe("t3.small");
  });

  it("refuses to stop a one-time spot instance", async () => {
    const out = await run({ InstanceMarketOptions: { MarketType: "spot" } });
    await expectEc2Error(
      env.ec2.send(new StopInstancesCommand({ InstanceIds: [out.Instances![0]!.InstanceId!] })),
      "UnsupportedOperation",
      400,
    );
  });

  it("answers DescribeInstanceAttribute (userData, instanceType, blockDeviceMapping) and refuses an unknown attribute or instance", async () => {
    const userData = Buffer.from("#!/bin/sh\necho mine\n").toString("base64");
    const out = await run({ UserData: userData });
    const id = out.Instances![0]!.InstanceId!;
    const attr = (Attribute: string) =>
      env.ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: id, Attribute: Attribute as InstanceAttributeName }));
    expect((await attr("userData")).UserData?.Value).toBe(userData);
    expect((await attr("instanceType")).InstanceType?.Value).toBe("t3.micro");
    const bdm = (await attr("blockDeviceMapping")).BlockDeviceMappings!;
    expect(bdm.map((b) => b.DeviceName)).toEqual(["/dev/xvda"]);
    expect(bdm[0]!.Ebs?.DeleteOnTermination).toBe(true);
    expect((await attr("disableApiTermination")).DisableApiTermination?.Value).toBe(false);
    const plain = (await run()).Instances![0]!.InstanceId!;
    expect(
      (await env.ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: plain, Attribute: "userData" }))).UserData?.Value,
    ).toBeUndefined();
    await expectEc2Error(attr("colour"), "InvalidParameterValue", 400);
    await expectEc2Error(
      env.ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: "i-0123456789abcdef0", Attribute: "userData" })),
      "InvalidInstanceID.NotFound",
      400,
    );
  });

  it("changes DeleteOnTermination with ModifyInstanceAttribute so the root volume survives", async () => {
    const out = await run();
    const id = out.Instances![0]!.InstanceId!;
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    await env.ec2.send(
      new ModifyInstanceAttributeCommand({
        InstanceId: id,
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { DeleteOnTermination: false } }],
      }),
    );
    const root = (await describeOne(id)).BlockDeviceMappings![0]!.Ebs!;
    expect(root.DeleteOnTermination).toBe(false);
    await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    await waitUntilInstanceTerminated(fast(env), { InstanceIds: [id] });
    await waitUntilVolumeAvailable(fast(env), { VolumeIds: [root.VolumeId!] });
  });

  it("keeps a launch ENI whose DeleteOnTermination was turned off (ModifyNetworkInterfaceAttribute)", async () => {
    const out = await run();
    const id = out.Instances![0]!.InstanceId!;
    const ni = out.Instances![0]!.NetworkInterfaces![0]!;
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    await env.ec2.send(
      new ModifyNetworkInterfaceAttributeCommand({
        NetworkInterfaceId: ni.NetworkInterfaceId!,
        Attachment: { AttachmentId: ni.Attachment!.AttachmentId!, DeleteOnTermination: false },
      }),
    );
    await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    await waitUntilInstanceTerminated(fast(env), { InstanceIds: [id] });
    const e = await until(async () => {
      const x = (await env.ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [ni.NetworkInterfaceId!] })))
        .NetworkInterfaces![0]!;
      return x.Status === "available" ? x : null;
    }, "kept ENI available");
    expect(e.PrivateIpAddress).toBe(ni.PrivateIpAddress);
  });

  it("cancels a spot request without terminating its instance", async () => {
    const out = await run({ InstanceMarketOptions: { MarketType: "spot" } });
    const i = out.Instances![0]!;
    const c = await env.ec2.send(new CancelSpotInstanceRequestsCommand({ SpotInstanceRequestIds: [i.SpotInstanceRequestId!] }));
    expect(c.CancelledSpotInstanceRequests![0]).toEqual({ SpotInstanceRequestId: i.SpotInstanceRequestId, State: "cancelled" });
    expect((await describeOne(i.InstanceId!)).State!.Name).toMatch(/pending|running/);
  });

  it("honours termination protection", async () => {
    const out = await run({ DisableApiTermination: true });
    const id = out.Instances![0]!.InstanceId!;
    await expectEc2Error(env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] })), "OperationNotPermitted", 400);
    await env.ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, DisableApiTermination: { Value: false } }));
    await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
  });
});

describe("DescribeInstances and DescribeInstanceStatus", () => {
  it("paginates with MaxResults/NextToken through the SDK paginator", async () => {
    const all: string[] = [];
    let pages = 0;
    for await (const page of paginateDescribeInstances({ client: env.ec2, pageSize: 5 }, {})) {
      pages++;
      for (const r of page.Reservations ?? []) for (const i of r.Instances ?? []) all.push(i.InstanceId!);
    }
    expect(pages).toBeGreaterThan(1);
    expect(new Set(all).size).toBe(env.cloud.world.instances.size);
  });

  it("filters with wildcards (OR within a filter, AND across filters) and tags", async () => {
    await run({ TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "team", Value: "orders" }] }] });
    await run({ TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "team", Value: "billing" }] }] });
    const q = async (Filters: { Name: string; Values: string[] }[]) =>
      (await env.ec2.send(new DescribeInstancesCommand({ Filters }))).Reservations!.flatMap((r) => r.Instances!);
    expect((await q([{ Name: "tag:team", Values: ["ord*"] }])).length).toBe(1);
    expect((await q([{ Name: "tag:team", Values: ["orders", "billing"] }])).length).toBe(2);
    expect(
      (
        await q([
          { Name: "tag:team", Values: ["?rders"] },
          { Name: "instance-state-name", Values: ["terminated"] },
        ])
      ).length,
    ).toBe(0);
    expect(
      (
        await q([
          { Name: "tag-key", Values: ["team"] },
          { Name: "availability-zone", Values: ["us-east-1a"] },
        ])
      ).length,
    ).toBe(2);
  });

  it("lists only running instances unless IncludeAllInstances", async () => {
    const out = await run();
    const id = out.Instances![0]!.InstanceId!;
    const before = await env.ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id], IncludeAllInstances: true }));
    expect(before.InstanceStatuses![0]!.InstanceState!.Name).toMatch(/pending|running/);
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    const running = await env.ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));
    expect(running.InstanceStatuses![0]).toMatchObject({ InstanceId: id, AvailabilityZone: "us-east-1a" });
  });
});
