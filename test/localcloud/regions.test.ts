/**
 * Several regions on one localcloud, through the unmodified SDKs: each client's `region` picks the
 * world its requests reach; resources of one region are invisible in another; IMDS answers from the
 * instance's own region; CopySnapshot and CopyImage copy across regions under the destination's keys;
 * an unserved region is refused as AWS refuses a region the account has not enabled; IAM applies per region.
 */
import {
  CopyImageCommand,
  CopySnapshotCommand,
  CreateSnapshotCommand,
  CreateVolumeCommand,
  DescribeAvailabilityZonesCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeRegionsCommand,
  DescribeSnapshotsCommand,
  DescribeSubnetsCommand,
  DescribeVolumesCommand,
  EC2Client,
  RegisterImageCommand,
  RunInstancesCommand,
} from "@aws-sdk/client-ec2";
import {
  CreateTargetGroupCommand,
  DescribeTargetGroupsCommand,
  ElasticLoadBalancingV2Client,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { KMSClient, ListKeysCommand } from "@aws-sdk/client-kms";
import { CreateQueueCommand, GetQueueAttributesCommand, ListQueuesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLocalCloud } from "../../localcloud/index.js";
import { PROFILES } from "../../localcloud/profiles.js";
import { FakeClock } from "../../shared/clock.js";
import { control, expectEc2Error, startEnv, until, type Env } from "./helpers.js";

const credentials = { accessKeyId: "x", secretAccessKey: "x" };
let env: Env;
let east: EC2Client;
let west: EC2Client;
const kmsFor = (region: string) => new KMSClient({ endpoint: env.cloud.endpoint, region, credentials, maxAttempts: 1 });
const ec2For = (region: string) => new EC2Client({ endpoint: env.cloud.endpoint, region, credentials, maxAttempts: 1 });

beforeAll(async () => {
  env = await startEnv({ regions: ["us-east-1", "us-west-2"] });
  east = env.ec2;
  west = ec2For("us-west-2");
});

afterAll(async () => {
  west?.destroy();
  await env?.stop();
});

async function completedSnapshot(client: EC2Client, az: string): Promise<string> {
  const v = await client.send(new CreateVolumeCommand({ AvailabilityZone: az, Size: 1 }));
  await until(
    async () => (await client.send(new DescribeVolumesCommand({ VolumeIds: [v.VolumeId!] }))).Volumes?.[0]?.State === "available",
    "volume",
  );
  const s = await client.send(new CreateSnapshotCommand({ VolumeId: v.VolumeId! }));
  await until(async () => (await snapshot(client, s.SnapshotId!)).State === "completed", "snapshot completed");
  return s.SnapshotId!;
}

async function snapshot(client: EC2Client, id: string) {
  return (await client.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }))).Snapshots![0]!;
}

async function image(client: EC2Client, id: string) {
  return (await client.send(new DescribeImagesCommand({ ImageIds: [id] }))).Images![0]!;
}

async function key(region: string, alias?: string): Promise<string> {
  const r = await control(env.cloud, "POST", "kms/keys", { region, description: `key in ${region}`, alias });
  expect(r.status, r.text).toBe(200);
  expect(r.json.region).toBe(region);
  return r.json.arn;
}

describe("localcloud with two regions", () => {
  it("keeps each region's resources, AZs, images and keys to itself", async () => {
    const eastWorld = env.cloud.worldFor("us-east-1");
    const westWorld = env.cloud.worldFor("us-west-2");
    expect(env.cloud.world).toBe(eastWorld);
    expect([...env.cloud.worlds.keys()]).toEqual(["us-east-1", "us-west-2"]);
    expect(westWorld.region).toBe("us-west-2");
    expect(westWorld.baseImageId).not.toBe(eastWorld.baseImageId);
    expect(() => env.cloud.worldFor("eu-west-1")).toThrow(/eu-west-1/);

    const regions = (await west.send(new DescribeRegionsCommand({}))).Regions!;
    expect(regions.map((r) => [r.RegionName, r.Endpoint, r.OptInStatus])).toEqual([
      ["us-east-1", "ec2.us-east-1.amazonaws.com", "opt-in-not-required"],
      ["us-west-2", "ec2.us-west-2.amazonaws.com", "opt-in-not-required"],
    ]);
    await expectEc2Error(east.send(new DescribeRegionsCommand({ RegionNames: ["eu-west-1"] })), "InvalidParameterValue", 400);
    const zones = (await west.send(new DescribeAvailabilityZonesCommand({}))).AvailabilityZones!;
    expect(zones.map((z) => [z.ZoneName, z.ZoneId, z.RegionName])).toEqual([
      ["us-west-2a", "usw2-az1", "us-west-2"],
      ["us-west-2b", "usw2-az2", "us-west-2"],
      ["us-west-2c", "usw2-az3", "us-west-2"],
    ]);
    const westSubnets = (await west.send(new DescribeSubnetsCommand({}))).Subnets!;
    expect(westSubnets.every((s) => s.AvailabilityZone!.startsWith("us-west-2") && s.SubnetArn!.includes(":us-west-2:"))).toBe(true);
    const eastSubnets = (await east.send(new DescribeSubnetsCommand({}))).Subnets!;
    expect(eastSubnets.map((s) => s.SubnetId)).not.toContain(westSubnets[0]!.SubnetId);

    // AMI ids are regional: us-east-1's base image is not in us-west-2.
    await expectEc2Error(
      west.send(new RunInstancesCommand({ ImageId: eastWorld.baseImageId, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro" })),
      "InvalidAMIID.NotFound",
      400,
    );
    const run = await west.send(
      new RunInstancesCommand({ ImageId: westWorld.baseImageId, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro" }),
    );
    const id = run.Instances![0]!.InstanceId!;
    expect(run.Instances![0]!.Placement!.AvailabilityZone).toBe("us-west-2a");
    const westIds = (await west.send(new DescribeInstancesCommand({}))).Reservations!.flatMap((r) => r.Instances!.map((i) => i.InstanceId));
    expect(westIds).toContain(id);
    const eastIds = (await east.send(new DescribeInstancesCommand({}))).Reservations!.flatMap((r) => r.Instances!.map((i) => i.InstanceId));
    expect(eastIds).not.toContain(id);
    await expectEc2Error(east.send(new DescribeInstancesCommand({ InstanceIds: [id] })), "InvalidInstanceID.NotFound", 400);

    const vol = await east.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
    expect((await west.send(new DescribeVolumesCommand({}))).Volumes!.map((v) => v.VolumeId)).not.toContain(vol.VolumeId);
    await expectEc2Error(west.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 })), "InvalidZone.NotFound", 400);
    expect((await east.send(new DescribeImagesCommand({ Owners: ["amazon"] }))).Images!.map((i) => i.ImageId)).not.toContain(
      westWorld.baseImageId,
    );

    const westKey = await key("us-west-2");
    expect(westKey).toMatch(/^arn:aws:kms:us-west-2:123456789012:key\//);
    const westKms = kmsFor("us-west-2");
    const eastKms = kmsFor("us-east-1");
    try {
      expect((await westKms.send(new ListKeysCommand({}))).Keys!.map((k) => k.KeyArn)).toContain(westKey);
      expect((await eastKms.send(new ListKeysCommand({}))).Keys!.map((k) => k.KeyArn)).not.toContain(westKey);
    } finally {
      westKms.destroy();
      eastKms.destroy();
    }
  });

  it("keeps target groups and SQS queues to their region, their ARNs naming it", async () => {
    const elb = (region: string) => new ElasticLoadBalancingV2Client({ endpoint: env.cloud.endpoint, region, credentials, maxAttempts: 1 });
    const sqs = (region: string) => new SQSClient({ endpoint: env.cloud.endpoint, region, credentials, maxAttempts: 1 });
    const [elbWest, elbEast, sqsWest, sqsEast] = [elb("us-west-2"), elb("us-east-1"), sqs("us-west-2"), sqs("us-east-1")];
    try {
      const vpcId = env.cloud.worldFor("us-west-2").defaultVpc().id;
      const tg = (await elbWest.send(new CreateTargetGroupCommand({ Name: "west-tg", Protocol: "HTTP", Port: 80, VpcId: vpcId })))
        .TargetGroups![0]!;
      expect(tg.TargetGroupArn).toMatch(/^arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup\/west-tg\//);
      expect((await elbEast.send(new DescribeTargetGroupsCommand({}))).TargetGroups ?? []).toEqual([]);
      // us-west-2's VPC is not in us-east-1.
      await expect(
        elbEast.send(new CreateTargetGroupCommand({ Name: "east-tg", Protocol: "HTTP", Port: 80, VpcId: vpcId })),
      ).rejects.toThrow(/not found/);
      const url = (await sqsWest.send(new CreateQueueCommand({ QueueName: "west-queue" }))).QueueUrl!;
      const attrs = await sqsWest.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }));
      expect(attrs.Attributes!.QueueArn).toBe("arn:aws:sqs:us-west-2:123456789012:west-queue");
      expect((await sqsEast.send(new ListQueuesCommand({}))).QueueUrls ?? []).not.toContain(url);
    } finally {
      for (const c of [elbWest, elbEast, sqsWest, sqsEast]) c.destroy();
    }
  });

  it("answers each instance's IMDS from its own region", async () => {
    const westWorld = env.cloud.worldFor("us-west-2");
    const run = await west.send(
      new RunInstancesCommand({
        ImageId: westWorld.baseImageId,
        MinCount: 1,
        MaxCount: 1,
        InstanceType: "t3.micro",
        Placement: { AvailabilityZone: "us-west-2b" },
      }),
    );
    const id = run.Instances![0]!.InstanceId!;
    await until(() => westWorld.instances.get(id)?.imdsEndpoint, "IMDS endpoint");
    const imds = await control(env.cloud, "GET", `instances/${id}/imds`);
    expect(imds.status, imds.text).toBe(200);
    const base = imds.json.endpoint as string;
    const token = await (
      await fetch(`${base}/latest/api/token`, { method: "PUT", headers: { "x-aws-ec2-metadata-token-ttl-seconds": "60" } })
    ).text();
    const get = async (p: string) => (await fetch(`${base}${p}`, { headers: { "x-aws-ec2-metadata-token": token } })).text();
    const doc = JSON.parse(await get("/latest/dynamic/instance-identity/document"));
    expect({ region: doc.region, az: doc.availabilityZone, id: doc.instanceId, image: doc.imageId }).toEqual({
      region: "us-west-2",
      az: "us-west-2b",
      id,
      image: westWorld.baseImageId,
    });
    expect(await get("/latest/meta-data/placement/region")).toBe("us-west-2");
    expect(await get("/latest/meta-data/placement/availability-zone")).toBe("us-west-2b");
    expect(await get("/latest/meta-data/placement/availability-zone-id")).toBe("usw2-az2");

    // The control API finds the instance in its region.
    const interrupted = await control(env.cloud, "POST", `instances/${id}/rebalance`, {});
    expect(interrupted.status, interrupted.text).toBe(200);
    const state = await control(env.cloud, "GET", "state?region=us-west-2");
    expect(state.json.region).toBe("us-west-2");
    expect(state.json.instances.map((i: { id: string }) => i.id)).toContain(id);
    const ids = await control(env.cloud, "GET", "ids?region=us-west-2");
    expect(ids.json.region).toBe("us-west-2");
    expect(ids.json.subnets.map((s: { availabilityZone: string }) => s.availabilityZone)).toEqual([
      "us-west-2a",
      "us-west-2b",
      "us-west-2c",
    ]);
  });

  it("refuses a region it does not serve, naming it, as AWS refuses a region the account has not enabled", async () => {
    const eu = ec2For("eu-west-1");
    const euKms = kmsFor("eu-west-1");
    try {
      const err = await expectEc2Error(eu.send(new DescribeInstancesCommand({})), "AuthFailure", 401);
      expect(err.message).toMatch(/eu-west-1/);
      const kerr = await euKms.send(new ListKeysCommand({})).catch((e: Error & { $metadata?: { httpStatusCode?: number } }) => e);
      expect(kerr).toBeInstanceOf(Error);
      expect({
        name: (kerr as Error).name,
        status: (kerr as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode,
      }).toEqual({
        name: "UnrecognizedClientException",
        status: 400,
      });
      expect((kerr as Error).message).toMatch(/eu-west-1/);
    } finally {
      eu.destroy();
      euKms.destroy();
    }
    const r = await control(env.cloud, "POST", "kms/keys", { region: "eu-west-1" });
    expect({ status: r.status, error: r.json.error }).toEqual({ status: 400, error: expect.stringMatching(/region: .*eu-west-1/) });
    expect((await control(env.cloud, "POST", "kms/keys?region=ap-south-1", {})).status).toBe(400);
  });

  it("copies a snapshot from us-east-1 into us-west-2 under a us-west-2 key, and fails a copy under the wrong region's key", async () => {
    const src = await completedSnapshot(east, "us-east-1a");
    const westKey = await key("us-west-2");
    const eastKey = await key("us-east-1");
    const copy = await west.send(
      new CopySnapshotCommand({
        SourceRegion: "us-east-1",
        SourceSnapshotId: src,
        Encrypted: true,
        KmsKeyId: westKey,
        TagSpecifications: [{ ResourceType: "snapshot", Tags: [{ Key: "dr", Value: "yes" }] }],
      }),
    );
    const done = await until(async () => {
      const s = await snapshot(west, copy.SnapshotId!);
      return s.State === "completed" && s;
    }, "copy completed");
    expect({ enc: done.Encrypted, key: done.KmsKeyId, tags: done.Tags, desc: done.Description }).toEqual({
      enc: true,
      key: westKey,
      tags: [{ Key: "dr", Value: "yes" }],
      desc: `[Copied ${src} from us-east-1]`,
    });
    // The copy is in us-west-2 only.
    await expectEc2Error(east.send(new DescribeSnapshotsCommand({ SnapshotIds: [copy.SnapshotId!] })), "InvalidSnapshot.NotFound", 400);
    // A us-east-1 key names no key in us-west-2: EC2 accepts the call and the copy fails.
    const bad = await west.send(
      new CopySnapshotCommand({ SourceRegion: "us-east-1", SourceSnapshotId: src, Encrypted: true, KmsKeyId: eastKey }),
    );
    const failed = await until(async () => {
      const s = await snapshot(west, bad.SnapshotId!);
      return s.State === "error" && s;
    }, "copy failed");
    expect(failed.StateMessage).toBe("Given key ID is not accessible");
    // The source must be in the source region; an unserved source region is refused.
    await expectEc2Error(
      west.send(new CopySnapshotCommand({ SourceRegion: "us-west-2", SourceSnapshotId: src })),
      "InvalidSnapshot.NotFound",
      400,
    );
    const e = await expectEc2Error(
      west.send(new CopySnapshotCommand({ SourceRegion: "eu-west-1", SourceSnapshotId: src })),
      "InvalidRegion",
      400,
    );
    expect(e.message).toMatch(/eu-west-1/);
    // Same-region copies keep working.
    const same = await east.send(new CopySnapshotCommand({ SourceRegion: "us-east-1", SourceSnapshotId: src }));
    await until(async () => (await snapshot(east, same.SnapshotId!)).State === "completed", "same-region copy");
  });

  it("copies an image from us-east-1 into us-west-2: its snapshots copied and encrypted, ClientToken idempotent", async () => {
    const eastWorld = env.cloud.worldFor("us-east-1");
    const westKey = await key("us-west-2");
    const params = {
      SourceRegion: "us-east-1",
      SourceImageId: eastWorld.baseImageId,
      Name: "dr-copy-1",
      Encrypted: true,
      KmsKeyId: westKey,
      ClientToken: "copy-image-token-1",
      TagSpecifications: [
        { ResourceType: "image" as const, Tags: [{ Key: "role", Value: "dr" }] },
        { ResourceType: "snapshot" as const, Tags: [{ Key: "role", Value: "dr-snap" }] },
      ],
    };
    const first = await west.send(new CopyImageCommand(params));
    const again = await west.send(new CopyImageCommand(params));
    expect(again.ImageId).toBe(first.ImageId);
    await expectEc2Error(west.send(new CopyImageCommand({ ...params, Name: "dr-copy-other" })), "IdempotentParameterMismatch", 400);
    const ready = await until(async () => {
      const i = await image(west, first.ImageId!);
      return i.State === "available" && i;
    }, "image available");
    expect(ready.Name).toBe("dr-copy-1");
    expect(ready.Tags).toEqual([{ Key: "role", Value: "dr" }]);
    const snapId = ready.BlockDeviceMappings![0]!.Ebs!.SnapshotId!;
    expect(snapId).not.toBe(eastWorld.baseSnapshotId);
    const snap = await snapshot(west, snapId);
    expect({ state: snap.State, enc: snap.Encrypted, key: snap.KmsKeyId, tags: snap.Tags }).toEqual({
      state: "completed",
      enc: true,
      key: westKey,
      tags: [{ Key: "role", Value: "dr-snap" }],
    });
    expect(ready.BlockDeviceMappings![0]!.Ebs!.Encrypted).toBe(true);
    // The copy launches in us-west-2 with an encrypted root.
    const run = await west.send(new RunInstancesCommand({ ImageId: first.ImageId!, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro" }));
    const inst = env.cloud.worldFor("us-west-2").instances.get(run.Instances![0]!.InstanceId!)!;
    expect(env.cloud.worldFor("us-west-2").volumes.get(inst.rootVolumeId)?.kmsKeyId).toBe(westKey);
    // The image is in us-west-2 only.
    await expectEc2Error(east.send(new DescribeImagesCommand({ ImageIds: [first.ImageId!] })), "InvalidAMIID.NotFound", 400);
  });

  it("fails an image copy under the wrong region's key with a StateReason, and refuses bad CopyImage requests as EC2 does", async () => {
    const eastWorld = env.cloud.worldFor("us-east-1");
    const eastKey = await key("us-east-1");
    const base = { SourceRegion: "us-east-1", SourceImageId: eastWorld.baseImageId };
    const bad = await west.send(new CopyImageCommand({ ...base, Name: "dr-wrong-key", Encrypted: true, KmsKeyId: eastKey }));
    const failed = await until(async () => {
      const i = await image(west, bad.ImageId!);
      return i.State === "failed" && i;
    }, "image failed");
    expect(failed.StateReason?.Message).toBe("Given key ID is not accessible");

    await expectEc2Error(west.send(new CopyImageCommand({ ...base, Name: undefined as unknown as string })), "MissingParameter", 400);
    await expectEc2Error(
      west.send(new CopyImageCommand({ ...base, SourceImageId: "ami-nothex", Name: "x-1" })),
      "InvalidAMIID.Malformed",
      400,
    );
    await expectEc2Error(
      west.send(new CopyImageCommand({ ...base, SourceImageId: "ami-0123456789abcdef0", Name: "x-2" })),
      "InvalidAMIID.NotFound",
      400,
    );
    await expectEc2Error(west.send(new CopyImageCommand({ ...base, SourceRegion: "eu-west-1", Name: "x-3" })), "InvalidRegion", 400);
    await expectEc2Error(west.send(new CopyImageCommand({ ...base, Name: "x-4", KmsKeyId: eastKey })), "InvalidParameterDependency", 400);
    await expectEc2Error(west.send(new CopyImageCommand({ ...base, Name: "x-5", DryRun: true })), "DryRunOperation", 412);
    const before = env.cloud.worldFor("us-west-2").images.size;
    await expectEc2Error(west.send(new CopyImageCommand({ ...base, Name: "dr-wrong-key" })), "InvalidAMIName.Duplicate", 400);
    expect(env.cloud.worldFor("us-west-2").images.size).toBe(before);
  });

  it("refuses Encrypted or KmsKeyId on a snapshot mapping of RegisterImage, as EC2 does", async () => {
    const src = await completedSnapshot(east, "us-east-1b");
    for (const Ebs of [
      { SnapshotId: src, Encrypted: true },
      { SnapshotId: src, Encrypted: false },
    ]) {
      const e = await expectEc2Error(
        east.send(
          new RegisterImageCommand({
            Name: `reg-${String(Ebs.Encrypted)}`,
            RootDeviceName: "/dev/xvda",
            BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs }],
          }),
        ),
        "InvalidParameterCombination",
        400,
      );
      expect(e.message).toMatch(/BlockDeviceMapping\.1\.Ebs\.Encrypted/);
    }
  });

  it("enforces one IAM policy in every region, with each request's region in its condition keys and ARNs", async () => {
    const eastWorld = env.cloud.worldFor("us-east-1");
    const policy = (copySource: boolean) => ({
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "Describe",
          Effect: "Allow",
          Action: "ec2:Describe*",
          Resource: "*",
          Condition: { StringEquals: { "aws:RequestedRegion": "us-west-2" } },
        },
        {
          Sid: "CopyInto",
          Effect: "Allow",
          Action: "ec2:CopyImage",
          Resource: ["arn:aws:ec2:us-west-2::image/*", ...(copySource ? ["arn:aws:ec2:us-east-1::image/*"] : [])],
        },
      ],
    });
    try {
      expect((await control(env.cloud, "PUT", "iam/policy", policy(false))).status).toBe(200);
      await west.send(new DescribeInstancesCommand({}));
      await expectEc2Error(east.send(new DescribeInstancesCommand({})), "UnauthorizedOperation", 403);
      const e = await expectEc2Error(
        west.send(
          new CopyImageCommand({ SourceRegion: "us-east-1", SourceImageId: eastWorld.baseImageId, Name: "iam-copy", DryRun: true }),
        ),
        "UnauthorizedOperation",
        403,
      );
      expect(e.message).toContain(`arn:aws:ec2:us-east-1::image/${eastWorld.baseImageId}`);
      expect((await control(env.cloud, "PUT", "iam/policy", policy(true))).status).toBe(200);
      await expectEc2Error(
        west.send(
          new CopyImageCommand({ SourceRegion: "us-east-1", SourceImageId: eastWorld.baseImageId, Name: "iam-copy", DryRun: true }),
        ),
        "DryRunOperation",
        412,
      );
    } finally {
      await control(env.cloud, "DELETE", "iam/policy");
    }
  });
});

describe("cross-region copy timing", () => {
  it("keeps a copied image pending until its snapshot copies complete, a copy into another region taking the per-GiB term longer", async () => {
    const clock = new FakeClock();
    const timed = await startEnv({ regions: ["us-east-1", "us-west-2"], profile: "realistic", throttle: false, clock });
    const w = new EC2Client({ endpoint: timed.cloud.endpoint, region: "us-west-2", credentials, maxAttempts: 1 });
    try {
      const eastWorld = timed.cloud.worldFor("us-east-1");
      const westWorld = timed.cloud.worldFor("us-west-2");
      const copy = await w.send(
        new CopyImageCommand({ SourceRegion: "us-east-1", SourceImageId: eastWorld.baseImageId, Name: "timed-copy" }),
      );
      const img = westWorld.images.get(copy.ImageId!)!;
      const snap = westWorld.snapshots.get(img.blockDeviceMappings[0]!.snapshotId!)!;
      const P = PROFILES.realistic;
      const sameRegion = P.snapshotBase + P.snapshotPerGiB * snap.volumeSize;
      const crossRegion = sameRegion + P.snapshotCopyCrossRegionPerGiB! * snap.volumeSize;
      expect(P.snapshotCopyCrossRegionPerGiB).toBeGreaterThan(0);
      await clock.advance(sameRegion);
      expect({ image: img.state, snapshot: snap.state }).toEqual({ image: "pending", snapshot: "pending" });
      await clock.advance(crossRegion - sameRegion);
      expect(snap.state).toBe("completed");
      await clock.advance(P.image);
      expect(img.state).toBe("available");
    } finally {
      w.destroy();
      await timed.stop();
    }
  });
});

describe("cross-region copies on the process runtime", () => {
  it("a snapshot copied into another region holds the source's data, and so does a volume made there from it", async () => {
    const penv = await startEnv({ runtime: "process", regions: ["us-east-1", "us-west-2"] });
    const w = new EC2Client({ endpoint: penv.cloud.endpoint, region: "us-west-2", credentials, maxAttempts: 1 });
    try {
      const v = await penv.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
      await until(
        async () => (await penv.ec2.send(new DescribeVolumesCommand({ VolumeIds: [v.VolumeId!] }))).Volumes![0]!.State === "available",
        "volume",
      );
      const dir = join(penv.cloud.stateDir, "volumes", v.VolumeId!);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "record"), "acknowledged\n");
      const snap = await penv.ec2.send(new CreateSnapshotCommand({ VolumeId: v.VolumeId }));
      await until(async () => (await snapshot(penv.ec2, snap.SnapshotId!)).State === "completed", "snapshot completed");
      const copy = await w.send(new CopySnapshotCommand({ SourceRegion: "us-east-1", SourceSnapshotId: snap.SnapshotId }));
      await until(async () => (await snapshot(w, copy.SnapshotId!)).State === "completed", "copy completed");
      const restored = await w.send(new CreateVolumeCommand({ AvailabilityZone: "us-west-2c", SnapshotId: copy.SnapshotId }));
      await until(
        async () => (await w.send(new DescribeVolumesCommand({ VolumeIds: [restored.VolumeId!] }))).Volumes![0]!.State === "available",
        "restored",
      );
      expect(await readFile(join(penv.cloud.stateDir, "volumes", restored.VolumeId!, "record"), "utf8")).toBe("acknowledged\n");
    } finally {
      w.destroy();
      await penv.stop();
    }
  });
});

describe("localcloud regions option", () => {
  it("refuses a bad region list, and several regions under the linux runtime, before starting anything", async () => {
    await expect(startLocalCloud({ port: 0, runtime: "none", regions: ["us-east-1", "us-east-1"] })).rejects.toThrow(
      /us-east-1 is named twice/,
    );
    await expect(startLocalCloud({ port: 0, runtime: "none", regions: ["useast1"] })).rejects.toThrow(/"useast1" is not a region name/);
    await expect(startLocalCloud({ port: 0, runtime: "none", regions: [] })).rejects.toThrow(/at least one region/);
    await expect(startLocalCloud({ port: 0, runtime: "linux", regions: ["us-east-1", "eu-west-1"] })).rejects.toThrow(
      /linux runtime serves one region/,
    );
  });

  it("serves one region other than us-east-1 as its home", async () => {
    const one = await startEnv({ regions: ["eu-central-1"] });
    const c = new EC2Client({ endpoint: one.cloud.endpoint, region: "eu-central-1", credentials, maxAttempts: 1 });
    try {
      expect(one.cloud.region).toBe("eu-central-1");
      const zones = (await c.send(new DescribeAvailabilityZonesCommand({}))).AvailabilityZones!;
      expect(zones.map((z) => z.ZoneId)).toEqual(["euc1-az1", "euc1-az2", "euc1-az3"]);
      await expectEc2Error(one.ec2.send(new DescribeInstancesCommand({})), "AuthFailure", 401);
    } finally {
      c.destroy();
      await one.stop();
    }
  });
});
