/**
 * Contract: what DescribeInstances and DescribeImages report about an instance's identity (key pair,
 * instance profile, platform) and network, through the real SDK (instant profile).
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CreateImageCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeSpotInstanceRequestsCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  waitUntilImageAvailable,
  waitUntilInstanceRunning,
  waitUntilInstanceStopped,
  waitUntilInstanceTerminated,
  type Filter,
  type RunInstancesCommandInput,
} from "@aws-sdk/client-ec2";
import { describeKeyPairs } from "../../localcloud/ec2/actions/catalog.js";
import { regionCatalog, WINDOWS_IMAGE_NAME } from "../../localcloud/world/catalog.js";
import type { ProcessRuntime } from "../../localcloud/runtime/process.js";
import { expectEc2Error, fast, startEnv, until, type Env } from "./helpers.js";

let env: Env;
let ami: string;
let windowsAmi: string;
beforeAll(async () => {
  env = await startEnv();
  ami = env.cloud.world.baseImageId;
  windowsAmi = env.cloud.world.windowsImageId;
});
afterAll(async () => {
  await env?.stop();
});

const ACCOUNT = "123456789012";
const run = (extra: Partial<RunInstancesCommandInput> = {}) =>
  env.ec2.send(new RunInstancesCommand({ ImageId: ami, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro", ...extra }));
const describeOne = async (id: string) =>
  (await env.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;
const filtered = async (Filters: Filter[]) =>
  (await env.ec2.send(new DescribeInstancesCommand({ Filters }))).Reservations!.flatMap((r) => r.Instances!.map((i) => i.InstanceId));
const instanceCount = () => env.cloud.world.instances.size;

describe("key pairs", () => {
  it("RunInstances stores KeyName; RunInstances and DescribeInstances report it; the key-name filter finds it", async () => {
    const out = await run({ KeyName: "localcloud-key" });
    const id = out.Instances![0]!.InstanceId!;
    expect(out.Instances![0]!.KeyName).toBe("localcloud-key");
    expect((await describeOne(id)).KeyName).toBe("localcloud-key");
    const other = (await run({ KeyName: "localcloud-ops" })).Instances![0]!.InstanceId!;
    const none = (await run()).Instances![0]!.InstanceId!;
    expect((await describeOne(none)).KeyName).toBeUndefined();
    const found = await filtered([{ Name: "key-name", Values: ["localcloud-key"] }]);
    expect(found).toContain(id);
    expect(found).not.toContain(other);
    expect(found).not.toContain(none);
  });

  it("an unknown KeyName is InvalidKeyPair.NotFound (also under DryRun) and launches nothing", async () => {
    const before = instanceCount();
    const e = await expectEc2Error(run({ KeyName: "no-such-key" }), "InvalidKeyPair.NotFound", 400);
    expect(e.message).toBe("The key pair 'no-such-key' does not exist");
    await expectEc2Error(run({ KeyName: "no-such-key", DryRun: true }), "InvalidKeyPair.NotFound", 400);
    await expectEc2Error(run({ KeyName: "localcloud-key", DryRun: true }), "DryRunOperation", 412);
    expect(instanceCount()).toBe(before);
  });

  it("DescribeKeyPairs lists the seeded ED25519 keys, by name, id and filter; an unknown name or id is InvalidKeyPair.NotFound", () => {
    const ctx = { world: env.cloud.world, action: "DescribeKeyPairs" };
    const all = describeKeyPairs(ctx, {}).KeyPairs;
    expect(all.map((k) => k.KeyName)).toEqual(["localcloud-key", "localcloud-ops"]);
    for (const k of all) {
      expect(k.KeyPairId).toMatch(/^key-[0-9a-f]{17}$/);
      expect(k.KeyType).toBe("ed25519");
      expect(k.PublicKey).toBeUndefined();
    }
    const [withKey] = describeKeyPairs(ctx, { KeyNames: ["localcloud-key"], IncludePublicKey: true }).KeyPairs;
    expect(withKey!.PublicKey).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5[A-Za-z0-9+/=]+ localcloud-key$/);
    // The fingerprint is base64 SHA-256 of the public key blob, as EC2 shows ED25519 fingerprints.
    const blob = Buffer.from(withKey!.PublicKey!.split(" ")[1]!, "base64");
    expect(withKey!.KeyFingerprint).toBe(createHash("sha256").update(blob).digest("base64"));
    expect(describeKeyPairs(ctx, { KeyPairIds: [all[1]!.KeyPairId!] }).KeyPairs.map((k) => k.KeyName)).toEqual(["localcloud-ops"]);
    expect(describeKeyPairs(ctx, { Filters: [{ Name: "key-name", Values: ["*-ops"] }] }).KeyPairs.map((k) => k.KeyName)).toEqual([
      "localcloud-ops",
    ]);
    expect(() => describeKeyPairs(ctx, { KeyNames: ["localcloud-key", "nope"] })).toThrow(
      expect.objectContaining({ code: "InvalidKeyPair.NotFound", message: "The key pair 'nope' does not exist" }),
    );
    expect(() => describeKeyPairs(ctx, { KeyPairIds: ["key-00000000000000000"] })).toThrow(
      expect.objectContaining({ code: "InvalidKeyPair.NotFound" }),
    );
    // The keys are the same on every start (derived from their names).
    expect(regionCatalog("us-east-1").keyPairs.map((k) => k.fingerprint)).toEqual(all.map((k) => k.KeyFingerprint));
  });
});

describe("instance profiles", () => {
  it("by Name: DescribeInstances reports this account's profile ARN and a stable AIPA id", async () => {
    const a = (await run({ IamInstanceProfile: { Name: "spotkeep-workload-db" } })).Instances![0]!;
    expect(a.IamInstanceProfile).toEqual({
      Arn: `arn:aws:iam::${ACCOUNT}:instance-profile/spotkeep-workload-db`,
      Id: expect.stringMatching(/^AIPA[A-Z2-7]{17}$/),
    });
    const described = await describeOne(a.InstanceId!);
    expect(described.IamInstanceProfile).toEqual(a.IamInstanceProfile);
    const b = (await run({ IamInstanceProfile: { Name: "spotkeep-workload-db" } })).Instances![0]!;
    expect(b.IamInstanceProfile!.Id).toBe(a.IamInstanceProfile!.Id);
    const c = (await run({ IamInstanceProfile: { Name: "other-profile" } })).Instances![0]!;
    expect(c.IamInstanceProfile!.Id).not.toBe(a.IamInstanceProfile!.Id);
    expect((await describeOne((await run()).Instances![0]!.InstanceId!)).IamInstanceProfile).toBeUndefined();
    const found = await filtered([{ Name: "iam-instance-profile.arn", Values: [a.IamInstanceProfile!.Arn!] }]);
    expect(found.sort()).toEqual([a.InstanceId, b.InstanceId].sort());
  });

  it("by Arn (with a path): the ARN is kept as given; Name and Arn together must agree", async () => {
    const arn = `arn:aws:iam::${ACCOUNT}:instance-profile/team/db/spotkeep-workload-db`;
    const byArn = (await run({ IamInstanceProfile: { Arn: arn } })).Instances![0]!;
    const byName = (await run({ IamInstanceProfile: { Name: "spotkeep-workload-db" } })).Instances![0]!;
    expect((await describeOne(byArn.InstanceId!)).IamInstanceProfile).toEqual({ Arn: arn, Id: byName.IamInstanceProfile!.Id });
    const both = (await run({ IamInstanceProfile: { Arn: arn, Name: "spotkeep-workload-db" } })).Instances![0]!;
    expect(both.IamInstanceProfile!.Arn).toBe(arn);
    await expectEc2Error(run({ IamInstanceProfile: { Arn: arn, Name: "another" } }), "InvalidParameterCombination", 400);
  });

  it("a malformed name or ARN is InvalidParameterValue and launches nothing", async () => {
    const before = instanceCount();
    const e = await expectEc2Error(run({ IamInstanceProfile: { Name: "no spaces!" } }), "InvalidParameterValue", 400);
    expect(e.message).toBe("Value (no spaces!) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name");
    await expectEc2Error(run({ IamInstanceProfile: { Name: "x".repeat(129) } }), "InvalidParameterValue", 400);
    for (const bad of [
      "spotkeep-workload-db",
      `arn:aws:iam::${ACCOUNT}:role/spotkeep-workload-db`,
      `arn:aws:iam::${ACCOUNT}:instance-profile/`,
      "arn:aws:iam::210987654321:instance-profile/spotkeep-workload-db",
      `arn:aws:iam::${ACCOUNT}:instance-profile/bad name`,
    ]) {
      const err = await expectEc2Error(run({ IamInstanceProfile: { Arn: bad } }), "InvalidParameterValue", 400);
      expect(err.message).toBe(`Value (${bad}) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN`);
    }
    expect(instanceCount()).toBe(before);
  });
});

describe("platform", () => {
  it("DescribeImages reports the Windows image's Platform and billing; Linux images have no Platform", async () => {
    const win = (await env.ec2.send(new DescribeImagesCommand({ Filters: [{ Name: "name", Values: [WINDOWS_IMAGE_NAME] }] }))).Images!;
    expect(win).toHaveLength(1);
    expect(win[0]).toMatchObject({
      ImageId: windowsAmi,
      Platform: "windows",
      PlatformDetails: "Windows",
      UsageOperation: "RunInstances:0002",
      Architecture: "x86_64",
      RootDeviceType: "ebs",
      RootDeviceName: "/dev/sda1",
      ImageOwnerAlias: "amazon",
      State: "available",
    });
    const linux = (await env.ec2.send(new DescribeImagesCommand({ ImageIds: [ami] }))).Images![0]!;
    expect(linux.Platform).toBeUndefined();
    expect(linux).toMatchObject({ PlatformDetails: "Linux/UNIX", UsageOperation: "RunInstances" });
    const windowsOnly = (await env.ec2.send(new DescribeImagesCommand({ Filters: [{ Name: "platform", Values: ["windows"] }] }))).Images!;
    expect(windowsOnly.map((i) => i.ImageId)).toEqual([windowsAmi]);
  });

  it("an instance of the Windows image reports Platform windows, runs, and its image is a Windows image too", async () => {
    const out = await run({ ImageId: windowsAmi });
    const i = out.Instances![0]!;
    expect(i).toMatchObject({ Platform: "windows", PlatformDetails: "Windows", UsageOperation: "RunInstances:0002" });
    expect(i.RootDeviceName).toBe("/dev/sda1");
    expect(i.BlockDeviceMappings!.map((b) => b.DeviceName)).toEqual(["/dev/sda1"]);
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [i.InstanceId!] });
    const d = await describeOne(i.InstanceId!);
    expect(d).toMatchObject({ Platform: "windows", PlatformDetails: "Windows", UsageOperation: "RunInstances:0002" });
    expect(d.UsageOperationUpdateTime).toEqual(d.LaunchTime);
    const linux = (await run()).Instances![0]!;
    expect(linux.Platform).toBeUndefined();
    expect(linux).toMatchObject({ PlatformDetails: "Linux/UNIX", UsageOperation: "RunInstances" });
    const found = await filtered([{ Name: "platform", Values: ["windows"] }]);
    expect(found).toContain(i.InstanceId);
    expect(found).not.toContain(linux.InstanceId);
    expect(await filtered([{ Name: "platform-details", Values: ["Linux/UNIX"] }])).toContain(linux.InstanceId);

    const img = await env.ec2.send(new CreateImageCommand({ InstanceId: i.InstanceId!, Name: "windows-copy", NoReboot: true }));
    await waitUntilImageAvailable(fast(env), { ImageIds: [img.ImageId!] });
    const copy = (await env.ec2.send(new DescribeImagesCommand({ ImageIds: [img.ImageId!] }))).Images![0]!;
    expect(copy).toMatchObject({ Platform: "windows", PlatformDetails: "Windows", UsageOperation: "RunInstances:0002" });
  });

  it("a Spot Instance of the Windows image has a Windows spot request", async () => {
    const i = (await run({ ImageId: windowsAmi, InstanceMarketOptions: { MarketType: "spot" } })).Instances![0]!;
    const req = (await env.ec2.send(new DescribeSpotInstanceRequestsCommand({ SpotInstanceRequestIds: [i.SpotInstanceRequestId!] })))
      .SpotInstanceRequests![0]!;
    expect(req.ProductDescription).toBe("Windows");
    const l = (await run({ InstanceMarketOptions: { MarketType: "spot" } })).Instances![0]!;
    const lreq = (await env.ec2.send(new DescribeSpotInstanceRequestsCommand({ SpotInstanceRequestIds: [l.SpotInstanceRequestId!] })))
      .SpotInstanceRequests![0]!;
    expect(lreq.ProductDescription).toBe("Linux/UNIX");
  });
});

describe("a stopped instance", () => {
  it("keeps reporting its network, root device type, key pair, profile and usage operation time; a start keeps them", async () => {
    const out = await run({ KeyName: "localcloud-key", IamInstanceProfile: { Name: "spotkeep-workload-db" } });
    const id = out.Instances![0]!.InstanceId!;
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    const running = await describeOne(id);
    expect(running.RootDeviceType).toBe("ebs");
    expect(running.VpcId).toBe(env.cloud.world.defaultVpc().id);
    expect(running.SubnetId).toMatch(/^subnet-/);
    await env.ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    await waitUntilInstanceStopped(fast(env), { InstanceIds: [id] });
    const stopped = await describeOne(id);
    expect(stopped.State!.Name).toBe("stopped");
    const same = (i: typeof running) => ({
      SubnetId: i.SubnetId,
      VpcId: i.VpcId,
      PrivateIpAddress: i.PrivateIpAddress,
      PrivateDnsName: i.PrivateDnsName,
      RootDeviceType: i.RootDeviceType,
      RootDeviceName: i.RootDeviceName,
      KeyName: i.KeyName,
      IamInstanceProfile: i.IamInstanceProfile,
      PlatformDetails: i.PlatformDetails,
      UsageOperationUpdateTime: i.UsageOperationUpdateTime,
      SecurityGroups: i.SecurityGroups,
      NetworkInterfaces: i.NetworkInterfaces!.map((n) => ({
        NetworkInterfaceId: n.NetworkInterfaceId,
        SubnetId: n.SubnetId,
        VpcId: n.VpcId,
        PrivateIpAddress: n.PrivateIpAddress,
        MacAddress: n.MacAddress,
        Status: n.Status,
        DeviceIndex: n.Attachment?.DeviceIndex,
      })),
    });
    expect(same(stopped)).toEqual(same(running));
    expect(stopped.NetworkInterfaces).toHaveLength(1);
    expect(stopped.NetworkInterfaces![0]!.Status).toBe("in-use");
    await env.ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    expect(same(await describeOne(id))).toEqual(same(running));
  });
});

describe("the Windows image on the process runtime", () => {
  it("boots like any other image: its user-data runs as a process (no Windows behaviour is simulated)", async () => {
    const penv = await startEnv({ runtime: "process" });
    try {
      const rt = penv.cloud.runtime as ProcessRuntime;
      const id = (
        await penv.ec2.send(
          new RunInstancesCommand({
            ImageId: penv.cloud.world.windowsImageId,
            MinCount: 1,
            MaxCount: 1,
            UserData: Buffer.from("#!/bin/bash\necho booted > booted.txt\n").toString("base64"),
          }),
        )
      ).Instances![0]!.InstanceId!;
      await waitUntilInstanceRunning(fast(penv), { InstanceIds: [id] });
      const file = path.join(rt.rootDir(id), "booted.txt");
      await until(async () => existsSync(file) && (await readFile(file, "utf8")).trim() === "booted", "the user-data's file");
      await penv.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
      await waitUntilInstanceTerminated(fast(penv), { InstanceIds: [id] });
    } finally {
      await penv.stop();
    }
  });
});
