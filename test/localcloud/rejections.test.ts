/**
 * Contract: localcloud rejects what EC2 rejects, with the exact error code AND HTTP
 * status, through the real SDK. Each row is one distinct rule.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AttachNetworkInterfaceCommand,
  AttachVolumeCommand,
  CreateNetworkInterfaceCommand,
  CreateSnapshotCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DeleteNetworkInterfaceCommand,
  DeleteSnapshotCommand,
  DeleteVolumeCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeInstanceTypesCommand,
  DescribeInstancesCommand,
  DescribeSpotInstanceRequestsCommand,
  DescribeSubnetsCommand,
  DescribeVolumesCommand,
  DetachNetworkInterfaceCommand,
  DetachVolumeCommand,
  type EC2Client,
  RegisterImageCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  waitUntilImageAvailable,
  waitUntilInstanceRunning,
  waitUntilInstanceTerminated,
  waitUntilSnapshotCompleted,
  waitUntilVolumeAvailable,
  waitUntilVolumeInUse,
  type RunInstancesCommandInput,
} from "@aws-sdk/client-ec2";
import { control, expectEc2Error, fast, startEnv, type Env } from "./helpers.js";

let env: Env;
/** A localcloud where nothing progresses during the test (timeScale 5000): intermediate states hold. */
let slow: Env;
type Key =
  | "ami"
  | "subnetA"
  | "subnetB"
  | "inst"
  | "instIp"
  | "instEni"
  | "instEniAttach"
  | "root"
  | "volA"
  | "volA2"
  | "volB"
  | "snap"
  | "image"
  | "eniB"
  | "dead"
  | "slowPending"
  | "slowCreating"
  | "slowPendingSnap";
/** Ids of the fixtures built in beforeAll. */
const r = {} as Record<Key, string>;

beforeAll(async () => {
  [env, slow] = await Promise.all([startEnv(), startEnv({ timeScale: 5000 })]);
  const ec2 = env.ec2;
  r.ami = env.cloud.world.baseImageId;
  const subnets = (await ec2.send(new DescribeSubnetsCommand({}))).Subnets!;
  r.subnetA = subnets.find((s) => s.AvailabilityZone === "us-east-1a")!.SubnetId!;
  r.subnetB = subnets.find((s) => s.AvailabilityZone === "us-east-1b")!.SubnetId!;
  const a = (await ec2.send(new RunInstancesCommand({ ImageId: r.ami, MinCount: 1, MaxCount: 1, SubnetId: r.subnetA }))).Instances![0]!;
  r.inst = a.InstanceId!;
  r.instIp = a.PrivateIpAddress!;
  r.instEni = a.NetworkInterfaces![0]!.NetworkInterfaceId!;
  r.instEniAttach = a.NetworkInterfaces![0]!.Attachment!.AttachmentId!;
  r.root = a.BlockDeviceMappings![0]!.Ebs!.VolumeId!;
  await waitUntilInstanceRunning(fast(env), { InstanceIds: [r.inst] });
  r.volA = (await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }))).VolumeId!;
  r.volA2 = (await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }))).VolumeId!;
  r.volB = (await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1b", Size: 1 }))).VolumeId!;
  await waitUntilVolumeAvailable(fast(env), { VolumeIds: [r.volA, r.volA2, r.volB] });
  await ec2.send(new AttachVolumeCommand({ VolumeId: r.volA, InstanceId: r.inst, Device: "/dev/sdf" }));
  await waitUntilVolumeInUse(fast(env), { VolumeIds: [r.volA] });
  r.snap = (await ec2.send(new CreateSnapshotCommand({ VolumeId: r.volA2 }))).SnapshotId!;
  await waitUntilSnapshotCompleted(fast(env), { SnapshotIds: [r.snap] });
  r.image = (
    await ec2.send(
      new RegisterImageCommand({
        Name: "rejections-img",
        RootDeviceName: "/dev/xvda",
        Architecture: "x86_64",
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: r.snap } }],
      }),
    )
  ).ImageId!;
  await waitUntilImageAvailable(fast(env), { ImageIds: [r.image] });
  r.eniB = (await ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: r.subnetB }))).NetworkInterface!.NetworkInterfaceId!;
  const dead = (await ec2.send(new RunInstancesCommand({ ImageId: r.ami, MinCount: 1, MaxCount: 1, ClientToken: "dead-token" })))
    .Instances![0]!.InstanceId!;
  await ec2.send(new TerminateInstancesCommand({ InstanceIds: [dead] }));
  await waitUntilInstanceTerminated(fast(env), { InstanceIds: [dead] });
  r.dead = dead;
  await control(env.cloud, "PUT", "capacity", {
    instanceType: "c6i.large",
    availabilityZone: "us-east-1c",
    market: "spot",
    available: false,
  });

  // slow world: a pending instance, a creating volume, a pending snapshot
  const sa = slow.cloud.world.baseImageId;
  r.slowPending = (await slow.ec2.send(new RunInstancesCommand({ ImageId: sa, MinCount: 1, MaxCount: 1 }))).Instances![0]!.InstanceId!;
  r.slowCreating = (await slow.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }))).VolumeId!;
  const availSlow = [...slow.cloud.world.volumes.values()].find((v) => v.attachment?.instanceId === r.slowPending)!;
  r.slowPendingSnap = (await slow.ec2.send(new CreateSnapshotCommand({ VolumeId: availSlow.id }))).SnapshotId!;
});

afterAll(async () => {
  await Promise.all([env?.stop(), slow?.stop()]);
});

const ec2 = () => env.ec2;
const run = (extra: Partial<RunInstancesCommandInput>, client: EC2Client = ec2()) =>
  client.send(new RunInstancesCommand({ ImageId: r.ami, MinCount: 1, MaxCount: 1, ...extra }));

type Case = [name: string, call: () => Promise<unknown>, code: string, status: number];
const cases: Case[] = [
  ["RunInstances without ImageId", () => ec2().send(new RunInstancesCommand({ MinCount: 1, MaxCount: 1 })), "MissingParameter", 400],
  ["RunInstances with a non-integer MinCount", () => run({ MinCount: "abc" as never }), "InvalidParameterValue", 400],
  ["RunInstances with MaxCount < MinCount", () => run({ MinCount: 3, MaxCount: 2 }), "InvalidParameterValue", 400],
  ["RunInstances with a malformed AMI id", () => run({ ImageId: "ami-xyz" }), "InvalidAMIID.Malformed", 400],
  ["RunInstances with an unknown AMI", () => run({ ImageId: "ami-0123456789abcdef0" }), "InvalidAMIID.NotFound", 400],
  ["RunInstances with an unknown instance type", () => run({ InstanceType: "z9.huge" as never }), "InvalidParameterValue", 400],
  [
    "RunInstances with SubnetId and NetworkInterfaces",
    () => run({ SubnetId: r.subnetA, NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: r.subnetA }] }),
    "InvalidParameterCombination",
    400,
  ],
  [
    "RunInstances with SecurityGroupIds and NetworkInterfaces",
    () => run({ SecurityGroupIds: ["sg-0123456789abcdef0"], NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: r.subnetA }] }),
    "InvalidParameterCombination",
    400,
  ],
  [
    "RunInstances with PrivateIpAddress and NetworkInterfaces",
    () => run({ PrivateIpAddress: "172.31.0.9", NetworkInterfaces: [{ DeviceIndex: 0, SubnetId: r.subnetA }] }),
    "InvalidParameterCombination",
    400,
  ],
  ["RunInstances with an unknown subnet", () => run({ SubnetId: "subnet-0123456789abcdef0" }), "InvalidSubnetID.NotFound", 400],
  ["RunInstances with a malformed subnet id", () => run({ SubnetId: "subnet-nope" }), "InvalidSubnetID.Malformed", 400],
  ["RunInstances with an unknown security group", () => run({ SecurityGroupIds: ["sg-0123456789abcdef0"] }), "InvalidGroup.NotFound", 400],
  [
    "RunInstances with a private IP outside the subnet",
    () => run({ SubnetId: r.subnetA, PrivateIpAddress: "10.0.0.5" }),
    "InvalidParameterValue",
    400,
  ],
  [
    "RunInstances with an AWS-reserved private IP",
    () => run({ SubnetId: r.subnetA, PrivateIpAddress: "172.31.0.1" }),
    "InvalidParameterValue",
    400,
  ],
  ["RunInstances with a private IP in use", () => run({ SubnetId: r.subnetA, PrivateIpAddress: r.instIp }), "InvalidIPAddress.InUse", 400],
  [
    "RunInstances with an ENI that is in use",
    () => run({ NetworkInterfaces: [{ DeviceIndex: 0, NetworkInterfaceId: r.instEni }] }),
    "InvalidNetworkInterface.InUse",
    400,
  ],
  [
    "RunInstances with an existing ENI and DeleteOnTermination=true",
    () => run({ NetworkInterfaces: [{ DeviceIndex: 0, NetworkInterfaceId: r.eniB, DeleteOnTermination: true }] }),
    "InvalidParameterCombination",
    400,
  ],
  [
    "RunInstances spot stop behaviour on a one-time request",
    () => run({ InstanceMarketOptions: { MarketType: "spot", SpotOptions: { InstanceInterruptionBehavior: "stop" } } }),
    "InvalidParameterCombination",
    400,
  ],
  [
    "RunInstances spot MaxPrice below the spot price",
    () => run({ InstanceMarketOptions: { MarketType: "spot", SpotOptions: { MaxPrice: "0.000001" } } }),
    "SpotMaxPriceTooLow",
    400,
  ],
  [
    "RunInstances without spot capacity",
    () => run({ InstanceType: "c6i.large", Placement: { AvailabilityZone: "us-east-1c" }, InstanceMarketOptions: { MarketType: "spot" } }),
    "InsufficientInstanceCapacity",
    500,
  ],
  [
    "RunInstances with a tag specification without tags",
    () => run({ TagSpecifications: [{ ResourceType: "instance", Tags: [] }] }),
    "InvalidParameterValue",
    400,
  ],
  [
    "RunInstances with a tag on an untaggable resource type",
    () => run({ TagSpecifications: [{ ResourceType: "vpc", Tags: [{ Key: "a", Value: "b" }] }] }),
    "InvalidParameterValue",
    400,
  ],
  ["RunInstances with invalid base64 user data", () => run({ UserData: "!!!not base64!!!" }), "InvalidParameterValue", 400],
  [
    "RunInstances with user data over 16 KiB",
    () => run({ UserData: Buffer.alloc(17_000, 65).toString("base64") }),
    "InvalidParameterValue",
    400,
  ],
  [
    "RunInstances with an invalid block device name",
    () => run({ BlockDeviceMappings: [{ DeviceName: "/dev/bogus", Ebs: { VolumeSize: 1 } }] }),
    "InvalidBlockDeviceMapping",
    400,
  ],
  [
    "RunInstances with a root volume smaller than its snapshot",
    () => run({ BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { VolumeSize: 2 } }] }),
    "InvalidBlockDeviceMapping",
    400,
  ],
  [
    "RunInstances reusing a ClientToken with other parameters",
    async () => {
      await run({ ClientToken: "rej-1" });
      return run({ ClientToken: "rej-1", InstanceType: "m5.large" });
    },
    "IdempotentParameterMismatch",
    400,
  ],
  [
    "RunInstances reusing the ClientToken of a terminated launch",
    () => run({ ClientToken: "dead-token" }),
    "IdempotentInstanceTerminated",
    400,
  ],
  [
    "DescribeInstances with an unknown instance id",
    () => ec2().send(new DescribeInstancesCommand({ InstanceIds: ["i-0123456789abcdef0"] })),
    "InvalidInstanceID.NotFound",
    400,
  ],
  [
    "DescribeInstances with a malformed instance id",
    () => ec2().send(new DescribeInstancesCommand({ InstanceIds: ["i-zz"] })),
    "InvalidInstanceID.Malformed",
    400,
  ],
  [
    "DescribeInstances with InstanceIds and MaxResults",
    () => ec2().send(new DescribeInstancesCommand({ InstanceIds: [r.inst], MaxResults: 5 })),
    "InvalidParameterCombination",
    400,
  ],
  [
    "DescribeInstances with MaxResults below 5",
    () => ec2().send(new DescribeInstancesCommand({ MaxResults: 3 })),
    "InvalidParameterValue",
    400,
  ],
  [
    "DescribeInstances with a forged NextToken",
    () => ec2().send(new DescribeInstancesCommand({ NextToken: "bogus" })),
    "InvalidPaginationToken",
    400,
  ],
  [
    "DescribeInstances with an unknown filter",
    () => ec2().send(new DescribeInstancesCommand({ Filters: [{ Name: "flavour", Values: ["x"] }] })),
    "InvalidParameterValue",
    400,
  ],
  [
    "StartInstances on a terminated instance",
    () => ec2().send(new StartInstancesCommand({ InstanceIds: [r.dead] })),
    "IncorrectInstanceState",
    400,
  ],
  [
    "StopInstances with Hibernate on an instance not configured for it",
    () => ec2().send(new StopInstancesCommand({ InstanceIds: [r.inst], Hibernate: true, DryRun: true })),
    "UnsupportedHibernationConfiguration",
    400,
  ],
  ["CreateVolume without an availability zone", () => ec2().send(new CreateVolumeCommand({ Size: 1 } as never)), "MissingParameter", 400],
  [
    "CreateVolume in an unknown zone",
    () => ec2().send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1z", Size: 1 })),
    "InvalidZone.NotFound",
    400,
  ],
  [
    "CreateVolume without size or snapshot",
    () => ec2().send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a" })),
    "MissingParameter",
    400,
  ],
  [
    "CreateVolume with Iops on gp2",
    () => ec2().send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 10, VolumeType: "gp2", Iops: 3000 })),
    "InvalidParameterDependency",
    400,
  ],
  [
    "CreateVolume from an unknown snapshot",
    () => ec2().send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: "snap-0123456789abcdef0" })),
    "InvalidSnapshot.NotFound",
    400,
  ],
  [
    "CreateVolume smaller than its snapshot",
    () => ec2().send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: r.snap, Size: 0 })),
    "InvalidParameterValue",
    400,
  ],
  [
    "DescribeVolumes with an unknown volume",
    () => ec2().send(new DescribeVolumesCommand({ VolumeIds: ["vol-0123456789abcdef0"] })),
    "InvalidVolume.NotFound",
    400,
  ],
  [
    "DescribeVolumes with a malformed volume id",
    () => ec2().send(new DescribeVolumesCommand({ VolumeIds: ["volume-1"] })),
    "InvalidVolumeID.Malformed",
    400,
  ],
  [
    "AttachVolume across availability zones",
    () => ec2().send(new AttachVolumeCommand({ VolumeId: r.volB, InstanceId: r.inst, Device: "/dev/sdg" })),
    "InvalidVolume.ZoneMismatch",
    400,
  ],
  [
    "AttachVolume of a volume attached elsewhere",
    () => ec2().send(new AttachVolumeCommand({ VolumeId: r.volA, InstanceId: r.inst, Device: "/dev/sdh" })),
    "VolumeInUse",
    400,
  ],
  [
    "AttachVolume at a device name in use",
    () => ec2().send(new AttachVolumeCommand({ VolumeId: r.volA2, InstanceId: r.inst, Device: "/dev/sdf" })),
    "InvalidParameterValue",
    400,
  ],
  [
    "AttachVolume at an invalid device name",
    () => ec2().send(new AttachVolumeCommand({ VolumeId: r.volA2, InstanceId: r.inst, Device: "/dev/nvme1" })),
    "InvalidParameterValue",
    400,
  ],
  [
    "AttachVolume without a device",
    () => ec2().send(new AttachVolumeCommand({ VolumeId: r.volA2, InstanceId: r.inst } as never)),
    "MissingParameter",
    400,
  ],
  [
    "AttachVolume to a terminated instance",
    () => ec2().send(new AttachVolumeCommand({ VolumeId: r.volA2, InstanceId: r.dead, Device: "/dev/sdg" })),
    "IncorrectInstanceState",
    400,
  ],
  [
    "AttachVolume of a volume still being created",
    () => slow.ec2.send(new AttachVolumeCommand({ VolumeId: r.slowCreating, InstanceId: r.slowPending, Device: "/dev/sdg" })),
    "IncorrectState",
    400,
  ],
  [
    "DetachVolume of the root volume of a running instance",
    () => ec2().send(new DetachVolumeCommand({ VolumeId: r.root })),
    "IncorrectState",
    400,
  ],
  [
    "DetachVolume of a volume that is not attached",
    () => ec2().send(new DetachVolumeCommand({ VolumeId: r.volA2 })),
    "IncorrectState",
    400,
  ],
  [
    "DetachVolume naming the wrong instance",
    () => ec2().send(new DetachVolumeCommand({ VolumeId: r.volA, InstanceId: r.dead })),
    "InvalidAttachment.NotFound",
    400,
  ],
  ["DeleteVolume of an attached volume", () => ec2().send(new DeleteVolumeCommand({ VolumeId: r.volA })), "VolumeInUse", 400],
  [
    "CreateSnapshot of a volume still being created",
    () => slow.ec2.send(new CreateSnapshotCommand({ VolumeId: r.slowCreating })),
    "IncorrectState",
    400,
  ],
  [
    "DeleteSnapshot of a snapshot used by an image",
    () => ec2().send(new DeleteSnapshotCommand({ SnapshotId: r.snap })),
    "InvalidSnapshot.InUse",
    400,
  ],
  [
    "DeleteSnapshot of an unknown snapshot",
    () => ec2().send(new DeleteSnapshotCommand({ SnapshotId: "snap-0123456789abcdef0" })),
    "InvalidSnapshot.NotFound",
    400,
  ],
  [
    "RegisterImage from a pending snapshot",
    () =>
      slow.ec2.send(
        new RegisterImageCommand({
          Name: "pending-img",
          RootDeviceName: "/dev/xvda",
          BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: r.slowPendingSnap } }],
        }),
      ),
    "IncorrectState",
    400,
  ],
  [
    "RegisterImage without a root device mapping",
    () =>
      ec2().send(
        new RegisterImageCommand({
          Name: "no-root",
          RootDeviceName: "/dev/xvda",
          BlockDeviceMappings: [{ DeviceName: "/dev/sdf", Ebs: { SnapshotId: r.snap } }],
        }),
      ),
    "InvalidBlockDeviceMapping",
    400,
  ],
  [
    "RegisterImage with a duplicate name",
    () =>
      ec2().send(
        new RegisterImageCommand({
          Name: "rejections-img",
          RootDeviceName: "/dev/xvda",
          BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: r.snap } }],
        }),
      ),
    "InvalidAMIName.Duplicate",
    400,
  ],
  [
    "RegisterImage with a malformed name",
    () =>
      ec2().send(
        new RegisterImageCommand({
          Name: "x!",
          RootDeviceName: "/dev/xvda",
          BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: r.snap } }],
        }),
      ),
    "InvalidAMIName.Malformed",
    400,
  ],
  [
    "RegisterImage without a name",
    () => ec2().send(new RegisterImageCommand({ RootDeviceName: "/dev/xvda" } as never)),
    "MissingParameter",
    400,
  ],
  [
    "DescribeImages with an unknown image",
    () => ec2().send(new DescribeImagesCommand({ ImageIds: ["ami-0123456789abcdef0"] })),
    "InvalidAMIID.NotFound",
    400,
  ],
  [
    "DeregisterImage of an unknown image",
    () => ec2().send(new DeregisterImageCommand({ ImageId: "ami-0123456789abcdef0" })),
    "InvalidAMIID.NotFound",
    400,
  ],
  [
    "CreateNetworkInterface with a private IP in use",
    () => ec2().send(new CreateNetworkInterfaceCommand({ SubnetId: r.subnetA, PrivateIpAddress: r.instIp })),
    "InvalidIPAddress.InUse",
    400,
  ],
  ["CreateNetworkInterface without a subnet", () => ec2().send(new CreateNetworkInterfaceCommand({} as never)), "MissingParameter", 400],
  [
    "AttachNetworkInterface of an ENI in use",
    () => ec2().send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: r.instEni, InstanceId: r.inst, DeviceIndex: 1 })),
    "InvalidNetworkInterface.InUse",
    400,
  ],
  [
    "AttachNetworkInterface across availability zones",
    () => ec2().send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: r.eniB, InstanceId: r.inst, DeviceIndex: 1 })),
    "InvalidParameterCombination",
    400,
  ],
  [
    "DetachNetworkInterface at device index 0",
    () => ec2().send(new DetachNetworkInterfaceCommand({ AttachmentId: r.instEniAttach })),
    "OperationNotPermitted",
    400,
  ],
  [
    "DetachNetworkInterface of an unknown attachment",
    () => ec2().send(new DetachNetworkInterfaceCommand({ AttachmentId: "eni-attach-0123456789abcdef0" })),
    "InvalidAttachmentID.NotFound",
    400,
  ],
  [
    "DeleteNetworkInterface of an ENI in use",
    () => ec2().send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: r.instEni })),
    "InvalidNetworkInterface.InUse",
    400,
  ],
  [
    "CreateTags on an unknown instance",
    () => ec2().send(new CreateTagsCommand({ Resources: ["i-0123456789abcdef0"], Tags: [{ Key: "a", Value: "b" }] })),
    "InvalidInstanceID.NotFound",
    400,
  ],
  [
    "CreateTags on a malformed resource id",
    () => ec2().send(new CreateTagsCommand({ Resources: ["nonsense"], Tags: [{ Key: "a", Value: "b" }] })),
    "InvalidID",
    400,
  ],
  [
    "CreateTags with a reserved aws: key",
    () => ec2().send(new CreateTagsCommand({ Resources: [r.inst], Tags: [{ Key: "aws:x", Value: "b" }] })),
    "InvalidParameterValue",
    400,
  ],
  [
    "DescribeInstanceTypes with an unknown type",
    () => ec2().send(new DescribeInstanceTypesCommand({ InstanceTypes: ["z9.huge" as never] })),
    "InvalidInstanceType",
    400,
  ],
  [
    "DescribeSpotInstanceRequests with an unknown request",
    () => ec2().send(new DescribeSpotInstanceRequestsCommand({ SpotInstanceRequestIds: ["sir-0123456789abcdef0"] })),
    "InvalidSpotInstanceRequestID.NotFound",
    400,
  ],
  [
    "DryRun of a valid request",
    () => ec2().send(new TerminateInstancesCommand({ InstanceIds: [r.inst], DryRun: true })),
    "DryRunOperation",
    412,
  ],
];

describe("rejections (exact code and HTTP status)", () => {
  it("covers at least 40 distinct rules", () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
    expect(new Set(cases.map((c) => c[0])).size).toBe(cases.length);
  });
  it.each(cases)("%s -> %s", async (_name, call, code, status) => {
    const stateBefore = env.cloud.world.instances.size;
    await expectEc2Error(call(), code, status);
    if (code !== "IdempotentParameterMismatch") expect(env.cloud.world.instances.size).toBe(stateBefore);
  });
});
