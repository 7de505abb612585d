/** Contract: volumes, snapshots, images, ENIs, catalog and tags through the real SDK and waiters. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AttachNetworkInterfaceCommand,
  AttachVolumeCommand,
  CreateImageCommand,
  CreateNetworkInterfaceCommand,
  CreateSnapshotCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DeleteNetworkInterfaceCommand,
  DeleteSnapshotCommand,
  DeleteTagsCommand,
  DeleteVolumeCommand,
  DeregisterImageCommand,
  DescribeAvailabilityZonesCommand,
  DescribeImagesCommand,
  DescribeInstanceTypesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSnapshotsCommand,
  DescribeSpotPriceHistoryCommand,
  DescribeSubnetsCommand,
  DescribeTagsCommand,
  DescribeVolumesCommand,
  DetachNetworkInterfaceCommand,
  DetachVolumeCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  waitUntilImageAvailable,
  waitUntilInstanceRunning,
  waitUntilNetworkInterfaceAvailable,
  waitUntilSnapshotCompleted,
  waitUntilVolumeAvailable,
  waitUntilVolumeDeleted,
  waitUntilVolumeInUse,
} from "@aws-sdk/client-ec2";
import { expectEc2Error, fast, startEnv, until, type Env } from "./helpers.js";

let env: Env;
let slow: Env;
let inst: string;
beforeAll(async () => {
  [env, slow] = await Promise.all([startEnv(), startEnv({ timeScale: 5000 })]);
  inst = (
    await env.ec2.send(
      new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, MinCount: 1, MaxCount: 1, InstanceType: "m5.large" }),
    )
  ).Instances![0]!.InstanceId!;
  await waitUntilInstanceRunning(fast(env), { InstanceIds: [inst] });
});
afterAll(async () => {
  await Promise.all([env?.stop(), slow?.stop()]);
});

describe("seed world", () => {
  it("has a default VPC with a /20 subnet per AZ and a default security group", async () => {
    const subnets = (await env.ec2.send(new DescribeSubnetsCommand({}))).Subnets!;
    expect(subnets.map((s) => [s.AvailabilityZone, s.CidrBlock, s.DefaultForAz])).toEqual([
      ["us-east-1a", "172.31.0.0/20", true],
      ["us-east-1b", "172.31.16.0/20", true],
      ["us-east-1c", "172.31.32.0/20", true],
    ]);
    expect(subnets[1]!.AvailableIpAddressCount).toBe(4096 - 5);
    const sgs = (await env.ec2.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups!;
    expect(sgs).toHaveLength(1);
    expect(sgs[0]).toMatchObject({ GroupName: "default", VpcId: subnets[0]!.VpcId });
    const azs = await env.ec2.send(new DescribeAvailabilityZonesCommand({ Filters: [{ Name: "zone-name", Values: ["*b"] }] }));
    expect(azs.AvailabilityZones!.map((z) => z.ZoneName)).toEqual(["us-east-1b"]);
  });

  it("has an instance-type catalog and spot prices below on-demand", async () => {
    const types = (await env.ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: ["m6i.large", "c6i.xlarge"] }))).InstanceTypes!;
    expect(types.map((t) => [t.InstanceType, t.VCpuInfo?.DefaultVCpus, t.MemoryInfo?.SizeInMiB])).toEqual([
      ["m6i.large", 2, 8192],
      ["c6i.xlarge", 4, 8192],
    ]);
    const prices = (
      await env.ec2.send(new DescribeSpotPriceHistoryCommand({ InstanceTypes: ["m5.large"], ProductDescriptions: ["Linux/UNIX"] }))
    ).SpotPriceHistory!;
    expect(prices.map((p) => p.AvailabilityZone)).toEqual(["us-east-1a", "us-east-1b", "us-east-1c"]);
    for (const p of prices) expect(Number(p.SpotPrice)).toBeLessThan(0.096);
  });

  it("has a base AMI whose root snapshot is completed", async () => {
    const img = (await env.ec2.send(new DescribeImagesCommand({ ImageIds: [env.cloud.world.baseImageId] }))).Images![0]!;
    expect(img).toMatchObject({ State: "available", RootDeviceName: "/dev/xvda", RootDeviceType: "ebs", Architecture: "x86_64" });
    const snap = (await env.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [img.BlockDeviceMappings![0]!.Ebs!.SnapshotId!] })))
      .Snapshots![0]!;
    expect(snap).toMatchObject({ State: "completed", Progress: "100%", VolumeSize: 8 });
  });
});

describe("volumes", () => {
  it("go creating -> available -> in-use (attaching -> attached) -> detaching -> available -> deleted", async () => {
    const v = await env.ec2.send(
      new CreateVolumeCommand({
        AvailabilityZone: "us-east-1a",
        Size: 4,
        VolumeType: "gp3",
        TagSpecifications: [{ ResourceType: "volume", Tags: [{ Key: "role", Value: "data" }] }],
      }),
    );
    expect(v).toMatchObject({ State: "creating", Size: 4, VolumeType: "gp3", Iops: 3000, Tags: [{ Key: "role", Value: "data" }] });
    expect(v.VolumeId).toMatch(/^vol-[0-9a-f]{17}$/);
    await waitUntilVolumeAvailable(fast(env), { VolumeIds: [v.VolumeId!] });
    const a = await env.ec2.send(new AttachVolumeCommand({ VolumeId: v.VolumeId!, InstanceId: inst, Device: "/dev/sdf" }));
    expect(a).toMatchObject({ State: "attaching", Device: "/dev/sdf", InstanceId: inst });
    await waitUntilVolumeInUse(fast(env), { VolumeIds: [v.VolumeId!] });
    const attached = await until(async () => {
      const d = (
        await env.ec2.send(
          new DescribeVolumesCommand({
            Filters: [
              { Name: "attachment.instance-id", Values: [inst] },
              { Name: "attachment.device", Values: ["/dev/sdf"] },
            ],
          }),
        )
      ).Volumes!;
      return d[0]?.Attachments?.[0]?.State === "attached" ? d[0] : null;
    }, "attached");
    expect(attached.Attachments![0]!.DeleteOnTermination).toBe(false);
    const d = await env.ec2.send(new DetachVolumeCommand({ VolumeId: v.VolumeId! }));
    expect(d.State).toBe("detaching");
    await waitUntilVolumeAvailable(fast(env), { VolumeIds: [v.VolumeId!] });
    await env.ec2.send(new DeleteVolumeCommand({ VolumeId: v.VolumeId! }));
    await waitUntilVolumeDeleted(fast(env), { VolumeIds: [v.VolumeId!] });
  });

  it("are idempotent on ClientToken", async () => {
    const a = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1b", Size: 1, ClientToken: "vol-tok" }));
    const b = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1b", Size: 1, ClientToken: "vol-tok" }));
    expect(b.VolumeId).toBe(a.VolumeId);
    await expectEc2Error(
      env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1b", Size: 2, ClientToken: "vol-tok" })),
      "IdempotentParameterMismatch",
      400,
    );
  });

  it("show creating while the profile delay runs (time-scaled)", async () => {
    const v = await slow.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
    const d = (await slow.ec2.send(new DescribeVolumesCommand({ VolumeIds: [v.VolumeId!] }))).Volumes![0]!;
    expect(d.State).toBe("creating");
  });
});

describe("snapshots and images", () => {
  it("snapshot pending -> completed, restore into a new volume, register and deregister an image", async () => {
    const v = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 3 }));
    await waitUntilVolumeAvailable(fast(env), { VolumeIds: [v.VolumeId!] });
    const s = await env.ec2.send(
      new CreateSnapshotCommand({
        VolumeId: v.VolumeId!,
        Description: "nightly",
        TagSpecifications: [{ ResourceType: "snapshot", Tags: [{ Key: "k", Value: "v" }] }],
      }),
    );
    expect(s).toMatchObject({ State: "pending", Progress: "0%", VolumeId: v.VolumeId, VolumeSize: 3, Description: "nightly" });
    await waitUntilSnapshotCompleted(fast(env), { SnapshotIds: [s.SnapshotId!] });
    const own = (await env.ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"], Filters: [{ Name: "tag:k", Values: ["v"] }] })))
      .Snapshots!;
    expect(own.map((x) => x.SnapshotId)).toEqual([s.SnapshotId]);
    const restored = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1c", SnapshotId: s.SnapshotId! }));
    expect(restored).toMatchObject({ Size: 3, SnapshotId: s.SnapshotId });
    const img = await env.ec2.send(
      new RegisterImageCommand({
        Name: "gen-2 root",
        RootDeviceName: "/dev/xvda",
        Architecture: "x86_64",
        VirtualizationType: "hvm",
        EnaSupport: true,
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: s.SnapshotId!, DeleteOnTermination: true } }],
      }),
    );
    const pending = (await env.ec2.send(new DescribeImagesCommand({ ImageIds: [img.ImageId!] }))).Images![0]!;
    expect(["pending", "available"]).toContain(pending.State);
    await waitUntilImageAvailable(fast(env), { ImageIds: [img.ImageId!] });
    const mine = (await env.ec2.send(new DescribeImagesCommand({ Owners: ["self"], Filters: [{ Name: "name", Values: ["gen-2*"] }] })))
      .Images!;
    expect(mine.map((i) => i.ImageId)).toEqual([img.ImageId]);
    const launched = await env.ec2.send(new RunInstancesCommand({ ImageId: img.ImageId!, MinCount: 1, MaxCount: 1 }));
    expect(launched.Instances![0]!.BlockDeviceMappings![0]!.DeviceName).toBe("/dev/xvda");
    await expectEc2Error(env.ec2.send(new DeleteSnapshotCommand({ SnapshotId: s.SnapshotId! })), "InvalidSnapshot.InUse", 400);
    await env.ec2.send(new DeregisterImageCommand({ ImageId: img.ImageId! }));
    await expectEc2Error(
      env.ec2.send(new RunInstancesCommand({ ImageId: img.ImageId!, MinCount: 1, MaxCount: 1 })),
      "InvalidAMIID.NotFound",
      400,
    );
    // deregistering kept the snapshot; now it can go
    await env.ec2.send(new DeleteSnapshotCommand({ SnapshotId: s.SnapshotId! }));
    await expectEc2Error(env.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [s.SnapshotId!] })), "InvalidSnapshot.NotFound", 400);
  });

  it("snapshot stays pending with progress while the delay runs (time-scaled)", async () => {
    const v = [...slow.cloud.world.volumes.values()][0];
    const id = v ? v.id : (await slow.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }))).VolumeId!;
    slow.cloud.world.volumes.get(id)!.state = "available";
    const s = await slow.ec2.send(new CreateSnapshotCommand({ VolumeId: id }));
    const d = (await slow.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [s.SnapshotId!] }))).Snapshots![0]!;
    expect(d).toMatchObject({ State: "pending", Progress: "0%" });
  });

  it("CreateImage snapshots every attached volume and becomes available", async () => {
    const out = await env.ec2.send(new CreateImageCommand({ InstanceId: inst, Name: "from-instance", NoReboot: true }));
    await waitUntilImageAvailable(fast(env), { ImageIds: [out.ImageId!] });
    const img = (await env.ec2.send(new DescribeImagesCommand({ ImageIds: [out.ImageId!] }))).Images![0]!;
    expect(img.BlockDeviceMappings!.map((b) => b.DeviceName)).toContain("/dev/xvda");
    expect(img.BlockDeviceMappings![0]!.Ebs!.SnapshotId).toMatch(/^snap-/);
  });
});

describe("network interfaces", () => {
  it("create, attach at index 1, detach, delete", async () => {
    const subnet = (await env.ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: "availability-zone", Values: ["us-east-1a"] }] })))
      .Subnets![0]!;
    const e = (
      await env.ec2.send(
        new CreateNetworkInterfaceCommand({
          SubnetId: subnet.SubnetId!,
          Description: "stable",
          TagSpecifications: [{ ResourceType: "network-interface", Tags: [{ Key: "n", Value: "1" }] }],
        }),
      )
    ).NetworkInterface!;
    expect(e).toMatchObject({
      Status: "available",
      AvailabilityZone: "us-east-1a",
      InterfaceType: "interface",
      Description: "stable",
      TagSet: [{ Key: "n", Value: "1" }],
    });
    expect(e.MacAddress).toMatch(/^0e(:[0-9a-f]{2}){5}$/);
    expect(e.PrivateIpAddresses![0]).toMatchObject({ Primary: true, PrivateIpAddress: e.PrivateIpAddress });
    const att = await env.ec2.send(
      new AttachNetworkInterfaceCommand({ NetworkInterfaceId: e.NetworkInterfaceId!, InstanceId: inst, DeviceIndex: 1 }),
    );
    expect(att.AttachmentId).toMatch(/^eni-attach-[0-9a-f]{17}$/);
    const byInst = await until(async () => {
      const l = (
        await env.ec2.send(
          new DescribeNetworkInterfacesCommand({
            Filters: [
              { Name: "attachment.instance-id", Values: [inst] },
              { Name: "status", Values: ["in-use"] },
            ],
          }),
        )
      ).NetworkInterfaces!;
      return l.length === 2 ? l : null;
    }, "two ENIs in use");
    expect(byInst.map((x) => x.Attachment!.DeviceIndex).sort()).toEqual([0, 1]);
    await env.ec2.send(new DetachNetworkInterfaceCommand({ AttachmentId: att.AttachmentId! }));
    await waitUntilNetworkInterfaceAvailable(fast(env), { NetworkInterfaceIds: [e.NetworkInterfaceId!] });
    await env.ec2.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: e.NetworkInterfaceId! }));
    await expectEc2Error(
      env.ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [e.NetworkInterfaceId!] })),
      "InvalidNetworkInterfaceID.NotFound",
      400,
    );
  });

  it("are idempotent on ClientToken", async () => {
    const subnet = (await env.ec2.send(new DescribeSubnetsCommand({}))).Subnets![2]!;
    const a = (await env.ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: subnet.SubnetId!, ClientToken: "eni-tok" })))
      .NetworkInterface!;
    const b = (await env.ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: subnet.SubnetId!, ClientToken: "eni-tok" })))
      .NetworkInterface!;
    expect(b.NetworkInterfaceId).toBe(a.NetworkInterfaceId);
    await expectEc2Error(
      env.ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: subnet.SubnetId!, ClientToken: "eni-tok", Description: "other" })),
      "IdempotentParameterMismatch",
      400,
    );
  });

  it("filters by private-ip-address", async () => {
    const ip = env.cloud.world.instances.get(inst)!.privateIp;
    const l = (await env.ec2.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: "private-ip-address", Values: [ip] }] })))
      .NetworkInterfaces!;
    expect(l.map((x) => x.Attachment?.InstanceId)).toEqual([inst]);
  });
});

describe("tags", () => {
  it("create, describe with filters, delete (value must match)", async () => {
    await env.ec2.send(
      new CreateTagsCommand({
        Resources: [inst],
        Tags: [
          { Key: "owner", Value: "ops" },
          { Key: "tier", Value: "db" },
        ],
      }),
    );
    const t = (await env.ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "resource-id", Values: [inst] }] }))).Tags!;
    expect(t.map((x) => [x.Key, x.Value, x.ResourceType])).toEqual([
      ["owner", "ops", "instance"],
      ["tier", "db", "instance"],
    ]);
    await env.ec2.send(new DeleteTagsCommand({ Resources: [inst], Tags: [{ Key: "owner", Value: "someone-else" }, { Key: "tier" }] }));
    const left = (await env.ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "resource-id", Values: [inst] }] }))).Tags!;
    expect(left.map((x) => x.Key)).toEqual(["owner"]);
  });
});
