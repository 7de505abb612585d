/**
 * localcloud's KMS and EBS encryption through the unmodified SDKs (@aws-sdk/client-kms and
 * @aws-sdk/client-ec2): keys and aliases with KMS's error codes, encrypted volumes, snapshots,
 * copies, images and launches, the account's default encryption, keys EC2 cannot use (disabled,
 * pending deletion, unknown), and the KMS permissions EC2 needs from the caller's IAM policy for a
 * customer-managed key (restricted to EC2 by kms:ViaService). Runtime "none" (the EC2 model alone),
 * except the snapshot copy's data path, on the process runtime (file copies, no instance boots).
 */
import {
  AttachVolumeCommand,
  CopySnapshotCommand,
  CreateSnapshotCommand,
  CreateVolumeCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  DisableEbsEncryptionByDefaultCommand,
  EnableEbsEncryptionByDefaultCommand,
  GetEbsDefaultKmsKeyIdCommand,
  GetEbsEncryptionByDefaultCommand,
  ModifyEbsDefaultKmsKeyIdCommand,
  RegisterImageCommand,
  ResetEbsDefaultKmsKeyIdCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
} from "@aws-sdk/client-ec2";
import {
  CancelKeyDeletionCommand,
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  KMSClient,
  ListAliasesCommand,
  ListKeysCommand,
  ScheduleKeyDeletionCommand,
} from "@aws-sdk/client-kms";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EBS_KMS_ACTIONS, viaEc2Context } from "../../localcloud/ec2/encryption.js";
import { contextOf, evaluate, parsePolicy } from "../../localcloud/iam/policy.js";
import { control, type Env, expectEc2Error, startEnv, until } from "./helpers.js";

let env: Env;
let kms: KMSClient;
const ARN_PREFIX = "arn:aws:kms:us-east-1:123456789012:";

beforeAll(async () => {
  env = await startEnv();
  kms = new KMSClient({
    endpoint: env.cloud.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "x", secretAccessKey: "x" },
    maxAttempts: 1,
  });
});
afterAll(async () => {
  kms?.destroy();
  await env?.stop();
});
afterEach(async () => {
  await control(env.cloud, "DELETE", "iam/policy");
  await env.ec2.send(new DisableEbsEncryptionByDefaultCommand({}));
  await env.ec2.send(new ResetEbsDefaultKmsKeyIdCommand({}));
});

async function kmsError(p: Promise<unknown>, type: string): Promise<Error> {
  const err = await p.then(
    () => null,
    (e: unknown) => e as Error,
  );
  expect(err, `expected ${type}`).toBeInstanceOf(Error);
  expect(err!.name, err!.message).toBe(type);
  return err!;
}

async function newKey(alias?: string): Promise<{ id: string; arn: string }> {
  const k = (await kms.send(new CreateKeyCommand({ Description: "test key" }))).KeyMetadata!;
  if (alias) await kms.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: k.KeyId! }));
  return { id: k.KeyId!, arn: k.Arn! };
}

async function volumeState(id: string): Promise<string> {
  const r = await env.ec2.send(new DescribeVolumesCommand({ VolumeIds: [id] })).catch((e: Error) => e);
  return r instanceof Error ? r.name : r.Volumes![0]!.State!;
}

async function completedSnapshot(volumeId: string): Promise<string> {
  const s = await env.ec2.send(new CreateSnapshotCommand({ VolumeId: volumeId }));
  await until(
    async () => (await env.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [s.SnapshotId!] }))).Snapshots![0]!.State === "completed",
    "snapshot completed",
  );
  return s.SnapshotId!;
}

async function snapshot(id: string) {
  return (await env.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }))).Snapshots![0]!;
}

async function instance(id: string) {
  return (await env.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;
}

describe("localcloud KMS", () => {
  it("creates symmetric keys and describes them by key id, key ARN, alias name and alias ARN", async () => {
    const k = (await kms.send(new CreateKeyCommand({ Description: "orders" }))).KeyMetadata!;
    expect(k).toMatchObject({ KeyState: "Enabled", Enabled: true, KeyManager: "CUSTOMER", KeySpec: "SYMMETRIC_DEFAULT" });
    expect(k.KeyUsage).toBe("ENCRYPT_DECRYPT");
    expect(k.Arn).toBe(`${ARN_PREFIX}key/${k.KeyId}`);
    expect(k.CreationDate).toBeInstanceOf(Date);
    await kms.send(new CreateAliasCommand({ AliasName: "alias/orders", TargetKeyId: k.KeyId }));
    for (const ref of [k.KeyId!, k.Arn!, "alias/orders", `${ARN_PREFIX}alias/orders`])
      expect((await kms.send(new DescribeKeyCommand({ KeyId: ref }))).KeyMetadata!.Arn).toBe(k.Arn);
    const keys = (await kms.send(new ListKeysCommand({}))).Keys!;
    expect(keys.map((x) => x.KeyArn)).toContain(k.Arn);
    const aliases = (await kms.send(new ListAliasesCommand({ KeyId: k.KeyId }))).Aliases!;
    expect(aliases).toEqual([
      expect.objectContaining({ AliasName: "alias/orders", AliasArn: `${ARN_PREFIX}alias/orders`, TargetKeyId: k.KeyId }),
    ]);
  });

  it("has the AWS-managed alias/aws/ebs key in every account, which the caller cannot manage", async () => {
    const ebs = (await kms.send(new DescribeKeyCommand({ KeyId: "alias/aws/ebs" }))).KeyMetadata!;
    expect(ebs.KeyManager).toBe("AWS");
    expect((await kms.send(new ListAliasesCommand({}))).Aliases!.map((a) => a.AliasName)).toContain("alias/aws/ebs");
    await kmsError(kms.send(new DisableKeyCommand({ KeyId: ebs.KeyId })), "AccessDeniedException");
    await kmsError(kms.send(new CreateAliasCommand({ AliasName: "alias/aws/mine", TargetKeyId: ebs.KeyId })), "NotAuthorizedException");
  });

  it("the control API creates a customer-managed key with an alias, and refuses a bad or taken alias", async () => {
    const r = await control(env.cloud, "POST", "kms/keys", { description: "from control", alias: "alias/control" });
    expect(r.status).toBe(200);
    expect((await kms.send(new DescribeKeyCommand({ KeyId: "alias/control" }))).KeyMetadata).toMatchObject({
      Arn: r.json.arn,
      KeyManager: "CUSTOMER",
      Description: "from control",
    });
    expect((await control(env.cloud, "POST", "kms/keys", { alias: "alias/control" })).status).toBe(409);
    const bad = await control(env.cloud, "POST", "kms/keys", { alias: "alias/aws/x" });
    expect(bad.status).toBe(400);
    expect(bad.json.error).toMatch(/alias/);
  });

  it("answers KMS's error codes", async () => {
    const k = await newKey("alias/dup");
    await kmsError(kms.send(new DescribeKeyCommand({ KeyId: "00000000-0000-0000-0000-000000000000" })), "NotFoundException");
    await kmsError(kms.send(new DescribeKeyCommand({ KeyId: "alias/none" })), "NotFoundException");
    await kmsError(kms.send(new DescribeKeyCommand({ KeyId: "not a key" })), "NotFoundException");
    await kmsError(kms.send(new CreateAliasCommand({ AliasName: "alias/dup", TargetKeyId: k.id })), "AlreadyExistsException");
    await kmsError(kms.send(new CreateAliasCommand({ AliasName: "alias/x2", TargetKeyId: "alias/dup" })), "ValidationException");
    await kmsError(kms.send(new CreateAliasCommand({ AliasName: "orders", TargetKeyId: k.id })), "ValidationException");
    await kmsError(kms.send(new CreateKeyCommand({ KeySpec: "RSA_2048", KeyUsage: "SIGN_VERIFY" })), "UnsupportedOperationException");
    await kmsError(kms.send(new CreateKeyCommand({ KeySpec: "NOPE" as never })), "ValidationException");
    await kmsError(kms.send(new ScheduleKeyDeletionCommand({ KeyId: k.id, PendingWindowInDays: 3 })), "ValidationException");
  });

  it("disables, enables and schedules deletion as KMS does", async () => {
    const k = await newKey();
    await kms.send(new DisableKeyCommand({ KeyId: k.id }));
    expect((await kms.send(new DescribeKeyCommand({ KeyId: k.id }))).KeyMetadata).toMatchObject({ KeyState: "Disabled", Enabled: false });
    await kms.send(new EnableKeyCommand({ KeyId: k.arn }));
    const del = await kms.send(new ScheduleKeyDeletionCommand({ KeyId: k.id, PendingWindowInDays: 7 }));
    expect(del).toMatchObject({ KeyId: k.arn, KeyState: "PendingDeletion", PendingWindowInDays: 7 });
    expect(del.DeletionDate).toBeInstanceOf(Date);
    await kmsError(kms.send(new EnableKeyCommand({ KeyId: k.id })), "KMSInvalidStateException");
    await kmsError(kms.send(new CreateAliasCommand({ AliasName: "alias/late", TargetKeyId: k.id })), "KMSInvalidStateException");
    await kms.send(new CancelKeyDeletionCommand({ KeyId: k.id }));
    expect((await kms.send(new DescribeKeyCommand({ KeyId: k.id }))).KeyMetadata!.KeyState).toBe("Disabled");
  });
});

describe("EBS encryption", () => {
  it("encrypts a volume under the key named by id, ARN, alias or alias ARN and reports the key's ARN", async () => {
    const k = await newKey("alias/vols");
    for (const ref of [k.id, k.arn, "alias/vols", `${ARN_PREFIX}alias/vols`]) {
      const v = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1, Encrypted: true, KmsKeyId: ref }));
      expect({ e: v.Encrypted, k: v.KmsKeyId }).toEqual({ e: true, k: k.arn });
      await until(async () => (await volumeState(v.VolumeId!)) === "available", "volume available");
    }
    const plain = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
    expect({ e: plain.Encrypted, k: plain.KmsKeyId }).toEqual({ e: false, k: undefined });
    const aws = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1, Encrypted: true }));
    expect(aws.KmsKeyId).toBe((await kms.send(new DescribeKeyCommand({ KeyId: "alias/aws/ebs" }))).KeyMetadata!.Arn);
  });

  it("refuses KmsKeyId without Encrypted=true as EC2 does", async () => {
    const k = await newKey();
    const e = await expectEc2Error(
      env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1, KmsKeyId: k.id })),
      "InvalidParameterDependency",
      400,
    );
    expect(e.message).toMatch(/KmsKeyId requires the parameter Encrypted/);
    const bdm = await expectEc2Error(
      env.ec2.send(
        new RunInstancesCommand({
          ImageId: env.cloud.world.baseImageId,
          MinCount: 1,
          MaxCount: 1,
          BlockDeviceMappings: [{ DeviceName: "/dev/sdf", Ebs: { VolumeSize: 1, Encrypted: false, KmsKeyId: k.arn } }],
        }),
      ),
      "InvalidParameterDependency",
      400,
    );
    expect(bdm.message).toMatch(/BlockDeviceMapping\.1\.Ebs\.KmsKeyId requires/);
  });

  it("encrypts by default when the account asks, under the default key it names", async () => {
    const k = await newKey();
    expect((await env.ec2.send(new GetEbsEncryptionByDefaultCommand({}))).EbsEncryptionByDefault).toBe(false);
    expect((await env.ec2.send(new EnableEbsEncryptionByDefaultCommand({}))).EbsEncryptionByDefault).toBe(true);
    const ebsArn = (await kms.send(new DescribeKeyCommand({ KeyId: "alias/aws/ebs" }))).KeyMetadata!.Arn;
    expect((await env.ec2.send(new GetEbsDefaultKmsKeyIdCommand({}))).KmsKeyId).toBe(ebsArn);
    expect((await env.ec2.send(new ModifyEbsDefaultKmsKeyIdCommand({ KmsKeyId: k.id }))).KmsKeyId).toBe(k.arn);
    expect((await env.ec2.send(new GetEbsDefaultKmsKeyIdCommand({}))).KmsKeyId).toBe(k.arn);
    const v = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
    expect({ e: v.Encrypted, k: v.KmsKeyId }).toEqual({ e: true, k: k.arn });
    expect((await env.ec2.send(new ResetEbsDefaultKmsKeyIdCommand({}))).KmsKeyId).toBe(ebsArn);
    expect((await env.ec2.send(new DisableEbsEncryptionByDefaultCommand({}))).EbsEncryptionByDefault).toBe(false);
    expect((await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }))).Encrypted).toBe(false);
  });

  it("carries encryption through snapshots, copies, volumes and images", async () => {
    const a = await newKey();
    const b = await newKey("alias/copies");
    const v = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1, Encrypted: true, KmsKeyId: a.id }));
    await until(async () => (await volumeState(v.VolumeId!)) === "available", "volume available");
    const snap = await completedSnapshot(v.VolumeId!);
    expect(await snapshot(snap)).toMatchObject({ Encrypted: true, KmsKeyId: a.arn });
    // A volume from an encrypted snapshot is encrypted under the snapshot's key, or under another key named.
    const same = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: snap }));
    expect({ e: same.Encrypted, k: same.KmsKeyId }).toEqual({ e: true, k: a.arn });
    const other = await env.ec2.send(
      new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: snap, Encrypted: true, KmsKeyId: "alias/copies" }),
    );
    expect(other.KmsKeyId).toBe(b.arn);
    // A copy re-encrypts under the key named; an encrypted snapshot's copy stays encrypted even when asked otherwise.
    const copy = await env.ec2.send(
      new CopySnapshotCommand({ SourceRegion: "us-east-1", SourceSnapshotId: snap, Encrypted: true, KmsKeyId: b.arn }),
    );
    await until(async () => (await snapshot(copy.SnapshotId!)).State === "completed", "copy completed");
    expect(await snapshot(copy.SnapshotId!)).toMatchObject({ Encrypted: true, KmsKeyId: b.arn });
    const still = await env.ec2.send(new CopySnapshotCommand({ SourceRegion: "us-east-1", SourceSnapshotId: snap, Encrypted: false }));
    expect((await snapshot(still.SnapshotId!)).Encrypted).toBe(true);
    await expectEc2Error(
      env.ec2.send(new CopySnapshotCommand({ SourceRegion: "us-east-1", SourceSnapshotId: snap, KmsKeyId: b.arn })),
      "InvalidParameterDependency",
      400,
    );
    // An unencrypted snapshot's volume or copy can be encrypted.
    const plainVol = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
    await until(async () => (await volumeState(plainVol.VolumeId!)) === "available", "volume available");
    const plainSnap = await completedSnapshot(plainVol.VolumeId!);
    expect((await snapshot(plainSnap)).Encrypted).toBe(false);
    const enc = await env.ec2.send(
      new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: plainSnap, Encrypted: true, KmsKeyId: a.id }),
    );
    expect(enc.KmsKeyId).toBe(a.arn);
    const encCopy = await env.ec2.send(
      new CopySnapshotCommand({ SourceRegion: "us-east-1", SourceSnapshotId: plainSnap, Encrypted: true }),
    );
    expect((await snapshot(encCopy.SnapshotId!)).Encrypted).toBe(true);
    // An image keeps its snapshot's encryption; its instances' root volume inherits the key.
    const img = await env.ec2.send(
      new RegisterImageCommand({
        Name: "encrypted-root",
        RootDeviceName: "/dev/xvda",
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snap } }],
      }),
    );
    await until(
      async () => (await env.ec2.send(new DescribeImagesCommand({ ImageIds: [img.ImageId!] }))).Images![0]!.State === "available",
      "image available",
    );
    const image = (await env.ec2.send(new DescribeImagesCommand({ ImageIds: [img.ImageId!] }))).Images![0]!;
    expect(image.BlockDeviceMappings![0]!.Ebs!.Encrypted).toBe(true);
    const run = await env.ec2.send(
      new RunInstancesCommand({
        ImageId: img.ImageId,
        MinCount: 1,
        MaxCount: 1,
        BlockDeviceMappings: [{ DeviceName: "/dev/sdf", Ebs: { VolumeSize: 1, Encrypted: true, KmsKeyId: "alias/copies" } }],
      }),
    );
    const id = run.Instances![0]!.InstanceId!;
    await until(async () => (await instance(id)).State!.Name === "running", "instance running");
    const vols = (await env.ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: "attachment.instance-id", Values: [id] }] }))).Volumes!;
    const byDevice = Object.fromEntries(vols.map((x) => [x.Attachments![0]!.Device, { e: x.Encrypted, k: x.KmsKeyId }]));
    expect(byDevice).toEqual({ "/dev/xvda": { e: true, k: a.arn }, "/dev/sdf": { e: true, k: b.arn } });
  });

  it("encrypts a launch's root volume when its mapping asks", async () => {
    const k = await newKey();
    const run = await env.ec2.send(
      new RunInstancesCommand({
        ImageId: env.cloud.world.baseImageId,
        MinCount: 1,
        MaxCount: 1,
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { Encrypted: true, KmsKeyId: k.arn } }],
      }),
    );
    const inst = run.Instances![0]!;
    await until(async () => (await instance(inst.InstanceId!)).State!.Name === "running", "instance running");
    const root = (
      await env.ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: "attachment.instance-id", Values: [inst.InstanceId!] }] }))
    ).Volumes![0]!;
    expect({ e: root.Encrypted, k: root.KmsKeyId }).toEqual({ e: true, k: k.arn });
  });
});

describe("keys EC2 cannot use", () => {
  it("CreateVolume answers creating, then the volume is gone (disabled, pending deletion or unknown key)", async () => {
    const disabled = await newKey();
    await kms.send(new DisableKeyCommand({ KeyId: disabled.id }));
    const pending = await newKey();
    await kms.send(new ScheduleKeyDeletionCommand({ KeyId: pending.id, PendingWindowInDays: 7 }));
    for (const ref of [disabled.id, pending.arn, "alias/does-not-exist"]) {
      const v = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1, Encrypted: true, KmsKeyId: ref }));
      expect(v.State).toBe("creating");
      await until(async () => (await volumeState(v.VolumeId!)) === "InvalidVolume.NotFound", `volume under ${ref} gone`);
    }
    // A retry with the ClientToken of a volume that is gone is refused, as EC2 refuses it.
    const input = { AvailabilityZone: "us-east-1a", Size: 1, Encrypted: true, KmsKeyId: disabled.id, ClientToken: "kms-retry-1" };
    const first = await env.ec2.send(new CreateVolumeCommand(input));
    await until(async () => (await volumeState(first.VolumeId!)) === "InvalidVolume.NotFound", "tokened volume gone");
    const e = await expectEc2Error(env.ec2.send(new CreateVolumeCommand(input)), "IdempotentParameterMismatch", 400);
    expect(e.message).toMatch(/associated with a resource that is already deleted/);
  });

  it("a launch under a key not enabled goes pending -> terminated with Client.InvalidKMSKey.InvalidState", async () => {
    const k = await newKey();
    await kms.send(new ScheduleKeyDeletionCommand({ KeyId: k.id, PendingWindowInDays: 7 }));
    const run = await env.ec2.send(
      new RunInstancesCommand({
        ImageId: env.cloud.world.baseImageId,
        MinCount: 1,
        MaxCount: 1,
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { Encrypted: true, KmsKeyId: k.id } }],
      }),
    );
    const id = run.Instances![0]!.InstanceId!;
    expect(run.Instances![0]!.State!.Name).toBe("pending");
    const done = await until(async () => {
      const i = await instance(id);
      return i.State!.Name === "terminated" && i;
    }, "instance terminated");
    expect(done.StateReason).toEqual({
      Code: "Client.InvalidKMSKey.InvalidState",
      Message: "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state",
    });
  });

  it("a start of a stopped instance whose volume's key was disabled goes pending -> stopped with the key's state reason", async () => {
    const k = await newKey();
    const run = await env.ec2.send(
      new RunInstancesCommand({
        ImageId: env.cloud.world.baseImageId,
        MinCount: 1,
        MaxCount: 1,
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { Encrypted: true, KmsKeyId: k.id } }],
      }),
    );
    const id = run.Instances![0]!.InstanceId!;
    await until(async () => (await instance(id)).State!.Name === "running", "instance running");
    await env.ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    await until(async () => (await instance(id)).State!.Name === "stopped", "instance stopped");
    await kms.send(new DisableKeyCommand({ KeyId: k.id }));
    const start = await env.ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    expect(start.StartingInstances![0]!.CurrentState!.Name).toBe("pending");
    const stopped = await until(async () => {
      const i = await instance(id);
      return i.State!.Name === "stopped" && i.StateReason?.Code !== "Client.UserInitiatedShutdown" && i;
    }, "start failed");
    expect(stopped.StateReason!.Code).toBe("Client.InvalidKMSKey.InvalidState");
    await kms.send(new EnableKeyCommand({ KeyId: k.id }));
    await env.ec2.send(new StartInstancesCommand({ InstanceIds: [id] }));
    await until(async () => (await instance(id)).State!.Name === "running", "instance running again");
  });

  it("an attachment of a volume whose key was disabled answers attaching, then the volume is available again", async () => {
    const k = await newKey();
    const v = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1, Encrypted: true, KmsKeyId: k.id }));
    await until(async () => (await volumeState(v.VolumeId!)) === "available", "volume available");
    const run = await env.ec2.send(
      new RunInstancesCommand({
        ImageId: env.cloud.world.baseImageId,
        MinCount: 1,
        MaxCount: 1,
        Placement: { AvailabilityZone: "us-east-1a" },
      }),
    );
    const id = run.Instances![0]!.InstanceId!;
    await until(async () => (await instance(id)).State!.Name === "running", "instance running");
    await kms.send(new DisableKeyCommand({ KeyId: k.arn }));
    const att = await env.ec2.send(new AttachVolumeCommand({ VolumeId: v.VolumeId, InstanceId: id, Device: "/dev/sdf" }));
    expect(att.State).toBe("attaching");
    await until(async () => {
      const vol = (await env.ec2.send(new DescribeVolumesCommand({ VolumeIds: [v.VolumeId!] }))).Volumes![0]!;
      return vol.State === "available" && vol.Attachments!.length === 0;
    }, "attachment dropped");
    await kms.send(new EnableKeyCommand({ KeyId: k.arn }));
    await env.ec2.send(new AttachVolumeCommand({ VolumeId: v.VolumeId, InstanceId: id, Device: "/dev/sdf" }));
    await until(async () => (await volumeState(v.VolumeId!)) === "in-use", "volume attached");
  });

  it("a snapshot copy under an unknown key goes to error with a StateMessage", async () => {
    const v = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
    await until(async () => (await volumeState(v.VolumeId!)) === "available", "volume available");
    const snap = await completedSnapshot(v.VolumeId!);
    const copy = await env.ec2.send(
      new CopySnapshotCommand({ SourceRegion: "us-east-1", SourceSnapshotId: snap, Encrypted: true, KmsKeyId: "alias/nothing" }),
    );
    const failed = await until(async () => {
      const s = await snapshot(copy.SnapshotId!);
      return s.State === "error" && s;
    }, "copy failed");
    expect(failed.StateMessage).toBe("Given key ID is not accessible");
  });
});

describe("KMS permissions under an enforced IAM policy", () => {
  const ec2All = { Sid: "Ec2", Effect: "Allow", Action: "ec2:*", Resource: "*" };
  const kmsStatements = (keyArn: string) => [
    {
      Sid: "EbsKeyUse",
      Effect: "Allow",
      Action: ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*"],
      Resource: keyArn,
      Condition: { StringEquals: { "kms:ViaService": "ec2.us-east-1.amazonaws.com" } },
    },
    {
      Sid: "EbsKeyGrant",
      Effect: "Allow",
      Action: "kms:CreateGrant",
      Resource: keyArn,
      Condition: { StringEquals: { "kms:ViaService": "ec2.us-east-1.amazonaws.com" }, Bool: { "kms:GrantIsForAWSResource": "true" } },
    },
  ];

  async function launch(keyArn: string): Promise<string> {
    const run = await env.ec2.send(
      new RunInstancesCommand({
        ImageId: env.cloud.world.baseImageId,
        MinCount: 1,
        MaxCount: 1,
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { Encrypted: true, KmsKeyId: keyArn } }],
      }),
    );
    const id = run.Instances![0]!.InstanceId!;
    await until(async () => ["running", "terminated"].includes((await instance(id)).State!.Name!), "launch settled");
    return id;
  }

  it("fails a launch with a customer-managed key when the policy has no KMS statements, and runs it when it has them", async () => {
    const k = await newKey();
    expect((await control(env.cloud, "PUT", "iam/policy", { Version: "2012-10-17", Statement: [ec2All] })).status).toBe(200);
    const denied = await instance(await launch(k.arn));
    expect(denied.State!.Name).toBe("terminated");
    expect(denied.StateReason).toEqual({ Code: "Client.InternalError", Message: "Client.InternalError: Client error on launch" });
    // The AWS-managed aws/ebs key needs no KMS permission.
    const ebsArn = env.cloud.world.kms.ebsKey.arn;
    expect((await instance(await launch(ebsArn))).State!.Name).toBe("running");
    await control(env.cloud, "PUT", "iam/policy", { Version: "2012-10-17", Statement: [ec2All, ...kmsStatements(k.arn)] });
    expect((await instance(await launch(k.arn))).State!.Name).toBe("running");
    // The same statements restricted to another service do not let EC2 use the key.
    const other = kmsStatements(k.arn).map((s) => ({
      ...s,
      Condition: { ...s.Condition, StringEquals: { "kms:ViaService": "rds.us-east-1.amazonaws.com" } },
    }));
    await control(env.cloud, "PUT", "iam/policy", { Version: "2012-10-17", Statement: [ec2All, ...other] });
    expect((await instance(await launch(k.arn))).State!.Name).toBe("terminated");
  });

  it("a volume under a customer-managed key the policy does not let EC2 use is gone after creating", async () => {
    const k = await newKey();
    await control(env.cloud, "PUT", "iam/policy", { Version: "2012-10-17", Statement: [ec2All] });
    const v = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1, Encrypted: true, KmsKeyId: k.id }));
    await until(async () => (await volumeState(v.VolumeId!)) === "InvalidVolume.NotFound", "volume gone");
  });

  it("evaluates kms:ViaService and kms:GrantIsForAWSResource in the context EC2's use of a key carries", () => {
    const key = `${ARN_PREFIX}key/11111111-2222-3333-4444-555555555555`;
    const p = parsePolicy({ Version: "2012-10-17", Statement: kmsStatements(key) });
    for (const action of EBS_KMS_ACTIONS)
      expect(evaluate(p, { action, resource: key, context: viaEc2Context(action, "us-east-1") }).allowed, action).toBe(true);
    // The caller's own calls carry no kms:ViaService, and its own grants are not for an AWS resource.
    const direct = contextOf({ "kms:CallerAccount": "123456789012" });
    expect(evaluate(p, { action: "kms:Decrypt", resource: key, context: direct }).allowed).toBe(false);
    const notForResource = contextOf({ "kms:ViaService": "ec2.us-east-1.amazonaws.com", "kms:GrantIsForAWSResource": "false" });
    expect(evaluate(p, { action: "kms:CreateGrant", resource: key, context: notForResource }).allowed).toBe(false);
    expect(
      evaluate(p, { action: "kms:Decrypt", resource: `${ARN_PREFIX}key/other`, context: viaEc2Context("kms:Decrypt", "us-east-1") })
        .allowed,
    ).toBe(false);
  });

  it("authorises KMS's own actions: AccessDeniedException without a statement", async () => {
    const k = await newKey();
    await control(env.cloud, "PUT", "iam/policy", {
      Version: "2012-10-17",
      Statement: [{ Sid: "Describe", Effect: "Allow", Action: "kms:DescribeKey", Resource: k.arn }],
    });
    expect((await kms.send(new DescribeKeyCommand({ KeyId: k.id }))).KeyMetadata!.Arn).toBe(k.arn);
    const e = await kmsError(kms.send(new DisableKeyCommand({ KeyId: k.id })), "AccessDeniedException");
    expect(e.message).toMatch(/not authorized to perform: kms:DisableKey on resource: arn:aws:kms:/);
    await kmsError(kms.send(new CreateKeyCommand({})), "AccessDeniedException");
  });
});

describe("snapshot copies on the process runtime", () => {
  it("a copy holds the source's data, and a volume made from the copy holds it too", async () => {
    const penv = await startEnv({ runtime: "process" });
    try {
      const v = await penv.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
      await until(
        async () => (await penv.ec2.send(new DescribeVolumesCommand({ VolumeIds: [v.VolumeId!] }))).Volumes![0]!.State === "available",
        "volume available",
      );
      const dir = join(penv.cloud.stateDir, "volumes", v.VolumeId!);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "record"), "acknowledged\n");
      const snap = await penv.ec2.send(new CreateSnapshotCommand({ VolumeId: v.VolumeId }));
      const done = (id: string) => async () =>
        (await penv.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }))).Snapshots![0]!.State === "completed";
      await until(done(snap.SnapshotId!), "snapshot completed");
      const copy = await penv.ec2.send(
        new CopySnapshotCommand({ SourceRegion: "us-east-1", SourceSnapshotId: snap.SnapshotId, Encrypted: true }),
      );
      await until(done(copy.SnapshotId!), "copy completed");
      expect(await readFile(join(penv.cloud.stateDir, "snapshots", copy.SnapshotId!, "record"), "utf8")).toBe("acknowledged\n");
      const restored = await penv.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: copy.SnapshotId }));
      expect(restored.Encrypted).toBe(true);
      await until(
        async () =>
          (await penv.ec2.send(new DescribeVolumesCommand({ VolumeIds: [restored.VolumeId!] }))).Volumes![0]!.State === "available",
        "restored volume available",
      );
      expect(await readFile(join(penv.cloud.stateDir, "volumes", restored.VolumeId!, "record"), "utf8")).toBe("acknowledged\n");
    } finally {
      await penv.stop();
    }
  });
});
