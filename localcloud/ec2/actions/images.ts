/** Snapshots and AMIs. */
import type {
  CreateImageRequest,
  CreateSnapshotRequest,
  DeleteSnapshotRequest,
  DeregisterImageRequest,
  DescribeImagesRequest,
  DescribeSnapshotsRequest,
  Image as SdkImage,
  PlatformValues as SdkPlatform,
  RegisterImageRequest,
  Snapshot as SdkSnapshot,
} from "@aws-sdk/client-ec2";
import type { Ctx } from "../common.js";
import { applyFilters, checkId, dryRun, noIdsWithMaxResults, oneOf, paginate, required, tagList, tagSpecs } from "../common.js";
import { Ec2Error, missing } from "../errors.js";
import { ACCOUNT_ID, VOLUME_TYPES, platformInfo } from "../../world/catalog.js";
import { ID_PREFIX, newId } from "../../world/ids.js";
import type { Image, ImageBdm, Snapshot, Tags } from "../../world/types.js";
import type { World } from "../../world/world.js";
import { lookupVolume } from "./volumes.js";
import { lookupInstances } from "./instances.js";

const MAX_PENDING_PER_VOLUME = 5;

export function describeSnapshot(s: Snapshot): SdkSnapshot {
  return {
    SnapshotId: s.id,
    VolumeId: s.volumeId,
    State: s.state,
    StartTime: s.startTime,
    Progress: `${Math.round(s.progress)}%`,
    OwnerId: s.ownerId,
    VolumeSize: s.volumeSize,
    Description: s.description,
    Encrypted: s.encrypted,
    KmsKeyId: s.encrypted ? s.kmsKeyId : undefined,
    StateMessage: s.state === "error" ? s.stateMessage : undefined,
    StorageTier: "standard",
    Tags: s.tags.size ? tagList(s.tags) : undefined,
  };
}

/** Take a point-in-time copy now (runtime), then pending -> completed after the profile delay. */
function startSnapshot(w: World, volumeId: string, size: number, description: string, tags: Tags): Promise<Snapshot> {
  const s: Snapshot = {
    id: newId(ID_PREFIX.snapshot),
    volumeId,
    state: "pending",
    progress: 0,
    startTime: w.wallNow(),
    volumeSize: size,
    description,
    ownerId: ACCOUNT_ID,
    tags,
    // A snapshot of an encrypted volume is encrypted under the volume's key.
    encrypted: w.volumes.get(volumeId)?.encrypted ?? false,
    kmsKeyId: w.volumes.get(volumeId)?.kmsKeyId,
    ready: Promise.resolve(),
    noNode: w.volumes.get(volumeId)?.noNode,
  };
  const vol = w.volumes.get(volumeId);
  // The snapshot is point-in-time when the call returns, so the copy happens before answering.
  const copy = (vol ? vol.ready : Promise.resolve()).then(() => w.runtime.createSnapshot(s.id, volumeId));
  s.ready = copy;
  w.snapshots.set(s.id, s);
  const total = w.profile.snapshotBase + w.profile.snapshotPerGiB * size;
  // Progress is visible: halfway mark, then completed.
  w.after(total / 2, `snapshot ${s.id} progress`, () => {
    if (s.state === "pending") s.progress = 50;
  });
  w.after(total, `completing ${s.id}`, async () => {
    try {
      await copy;
      if (s.state === "pending") {
        s.state = "completed";
        s.progress = 100;
      }
    } catch (err) {
      s.state = "error";
      throw err;
    }
  });
  return copy.then(
    () => s,
    (err: unknown) => {
      s.state = "error";
      throw new Ec2Error("InternalError", `copying ${volumeId} into ${s.id}: ${(err as Error)?.message ?? String(err)}`);
    },
  );
}

export async function createSnapshot(ctx: Ctx, input: CreateSnapshotRequest): Promise<SdkSnapshot> {
  const w = ctx.world;
  const v = lookupVolume(w, input.VolumeId);
  if (v.state !== "available" && v.state !== "in-use")
    throw new Ec2Error("IncorrectState", `The volume '${v.id}' is '${v.state}': only available or in-use volumes can be snapshotted.`);
  const pending = [...w.snapshots.values()].filter((s) => s.volumeId === v.id && s.state === "pending").length;
  const limit = v.volumeType === "st1" || v.volumeType === "sc1" ? 1 : MAX_PENDING_PER_VOLUME;
  if (pending >= limit)
    throw new Ec2Error(
      "ConcurrentSnapshotLimitExceeded",
      `Maximum allowed in-progress snapshots for a single volume (${limit}) exceeded for ${v.id}.`,
    );
  if ((input.Description ?? "").length > 255) throw new Ec2Error("InvalidParameterValue", "Description is at most 255 characters");
  const tags = tagSpecs(input.TagSpecifications, ["snapshot"]);
  dryRun(ctx, input);
  const s = await startSnapshot(w, v.id, v.size, input.Description ?? "", tags.get("snapshot") ?? new Map());
  return describeSnapshot(s);
}

export function lookupSnapshot(w: World, id: string | undefined): Snapshot {
  const sid = required(id, "SnapshotId");
  checkId(sid, "snap", "InvalidSnapshotID.Malformed");
  const s = w.snapshots.get(sid);
  if (!s) throw new Ec2Error("InvalidSnapshot.NotFound", `The snapshot '${sid}' does not exist.`);
  return s;
}

function ownerMatches(ownerId: string, alias: string | undefined, owners: string[] | undefined): boolean {
  if (!owners || owners.length === 0) return true;
  return owners.some((o) => o === ownerId || (o === "self" && ownerId === ACCOUNT_ID) || (o === "amazon" && alias === "amazon"));
}

export function describeSnapshots(ctx: Ctx, input: DescribeSnapshotsRequest) {
  const w = ctx.world;
  noIdsWithMaxResults(input.SnapshotIds, input, "SnapshotIds");
  let snaps = [...w.snapshots.values()];
  if (input.SnapshotIds?.length) snaps = input.SnapshotIds.map((id) => lookupSnapshot(w, id));
  snaps = snaps.filter((s) => ownerMatches(s.ownerId, s.ownerId === ACCOUNT_ID ? undefined : "amazon", input.OwnerIds));
  snaps = applyFilters(
    snaps,
    input.Filters,
    {
      "snapshot-id": (s: Snapshot) => s.id,
      status: (s: Snapshot) => s.state,
      "volume-id": (s: Snapshot) => s.volumeId,
      "owner-id": (s: Snapshot) => s.ownerId,
      progress: (s: Snapshot) => `${s.progress}%`,
      description: (s: Snapshot) => s.description,
      "volume-size": (s: Snapshot) => s.volumeSize,
      encrypted: (s: Snapshot) => String(s.encrypted),
    },
    (s) => s.tags,
  );
  const { page, nextToken } = paginate(snaps, input, "DescribeSnapshots", [5, 1000]);
  dryRun(ctx, input);
  return { Snapshots: page.map(describeSnapshot), NextToken: nextToken };
}

export function deleteSnapshot(ctx: Ctx, input: DeleteSnapshotRequest) {
  const w = ctx.world;
  const s = lookupSnapshot(w, input.SnapshotId);
  const user = [...w.images.values()].find((i) => i.blockDeviceMappings.some((b) => b.snapshotId === s.id));
  if (user) throw new Ec2Error("InvalidSnapshot.InUse", `The snapshot ${s.id} is currently in use by ${user.id}`);
  if (s.ownerId !== ACCOUNT_ID)
    throw new Ec2Error("UnauthorizedOperation", `You are not authorized to delete snapshot ${s.id} (owner ${s.ownerId})`);
  dryRun(ctx, input);
  w.snapshots.delete(s.id);
  w.track(
    `deleting ${s.id}`,
    s.ready.then(() => w.runtime.deleteSnapshot(s.id)),
  );
  return {};
}

// ---- images ---------------------------------------------------------------------------------

const AMI_NAME_RE = /^[a-zA-Z0-9()[\] ./\-'@_]{3,128}$/;

export function checkName(w: World, name: string | undefined): string {
  const n = required(name, "Name");
  if (!AMI_NAME_RE.test(n))
    throw new Ec2Error(
      "InvalidAMIName.Malformed",
      `AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/', '_', '[', ']', ` +
        `' ', '@' and "'": ${JSON.stringify(n)}`,
    );
  if ([...w.images.values()].some((i) => i.name === n && i.ownerId === ACCOUNT_ID))
    throw new Ec2Error(
      "InvalidAMIName.Duplicate",
      `AMI name ${n} is already in use by AMI ${[...w.images.values()].find((i) => i.name === n)!.id}`,
    );
  return n;
}

export function describeImage(i: Image): SdkImage {
  const billing = platformInfo(i.platform);
  return {
    ImageId: i.id,
    ImageLocation: `${i.ownerAlias ?? i.ownerId}/${i.name}`,
    State: i.state,
    StateReason: i.stateReason ? { Code: i.stateReason.code, Message: i.stateReason.message } : undefined,
    OwnerId: i.ownerId,
    ImageOwnerAlias: i.ownerAlias,
    CreationDate: i.creationDate.toISOString(),
    Public: i.ownerAlias === "amazon",
    Name: i.name,
    Description: i.description,
    Architecture: i.architecture,
    // EC2 sends "windows" (lower case) although the SDK's PlatformValues enum spells "Windows".
    Platform: i.platform as SdkPlatform,
    PlatformDetails: billing.platformDetails,
    UsageOperation: billing.usageOperation,
    ImageType: "machine",
    RootDeviceType: "ebs",
    RootDeviceName: i.rootDeviceName,
    BlockDeviceMappings: i.blockDeviceMappings.map((b) => ({
      DeviceName: b.deviceName,
      Ebs: {
        SnapshotId: b.snapshotId,
        VolumeSize: b.volumeSize,
        VolumeType: b.volumeType as never,
        DeleteOnTermination: b.deleteOnTermination,
        // Whether the mapping's snapshot is encrypted; its key is on the snapshot (DescribeSnapshots).
        Encrypted: b.encrypted ?? false,
      },
    })),
    VirtualizationType: i.virtualizationType as never,
    Hypervisor: "xen",
    EnaSupport: i.enaSupport,
    BootMode: i.bootMode as never,
    ImdsSupport: i.imdsSupport as never,
    Tags: i.tags.size ? tagList(i.tags) : undefined,
  };
}

/** pending -> available once every snapshot is completed and the image delay has passed. */
function scheduleImage(w: World, img: Image): void {
  const check = () => {
    if (!w.images.has(img.id) || img.state !== "pending") return;
    const snaps = img.blockDeviceMappings.map((b) => (b.snapshotId ? w.snapshots.get(b.snapshotId) : undefined));
    if (snaps.some((s) => s?.state === "error" || (s === undefined && img.blockDeviceMappings.some((b) => b.snapshotId)))) {
      img.state = "failed";
      return;
    }
    if (snaps.every((s) => !s || s.state === "completed")) img.state = "available";
    else w.after(Math.max(1, w.profile.image / 4), `waiting for snapshots of ${img.id}`, check);
  };
  w.after(w.profile.image, `registering ${img.id}`, check);
}

export function registerImage(ctx: Ctx, input: RegisterImageRequest) {
  const w = ctx.world;
  const name = checkName(w, input.Name);
  if (input.ImageLocation !== undefined)
    throw new Ec2Error(
      "Unsupported",
      "localcloud registers EBS-backed images only: give BlockDeviceMapping with a snapshot instead of ImageLocation",
    );
  const root = required(input.RootDeviceName, "RootDeviceName");
  const arch = oneOf(input.Architecture, "Architecture", ["x86_64", "arm64", "i386", "x86_64_mac", "arm64_mac"]) ?? "x86_64";
  if (arch !== "x86_64" && arch !== "arm64")
    throw new Ec2Error("InvalidParameterValue", `Architecture ${arch} is not supported by localcloud (x86_64 or arm64)`);
  const vt = oneOf(input.VirtualizationType, "VirtualizationType", ["hvm", "paravirtual"]) ?? "hvm";
  const bootMode = oneOf(input.BootMode, "BootMode", ["legacy-bios", "uefi", "uefi-preferred"]);
  const imds = oneOf(input.ImdsSupport, "ImdsSupport", ["v2.0"]);
  const bdms: ImageBdm[] = [];
  (input.BlockDeviceMappings ?? []).forEach((m, i) => {
    const where = `BlockDeviceMapping.${i + 1}`;
    const dev = required(m.DeviceName, `${where}.DeviceName`);
    if (bdms.some((b) => b.deviceName === dev))
      throw new Ec2Error("InvalidBlockDeviceMapping", `The device '${dev}' is used in more than one block-device mapping`);
    if (m.NoDevice !== undefined || m.VirtualName !== undefined) return;
    const ebs = m.Ebs;
    if (!ebs) throw new Ec2Error("InvalidBlockDeviceMapping", `${where} must have Ebs`);
    let size = ebs.VolumeSize;
    let snapshot: Snapshot | undefined;
    if (ebs.SnapshotId !== undefined) {
      // A volume from a snapshot has the snapshot's encryption: EC2 refuses Encrypted (either value) and KmsKeyId here
      // (CopyImage is how an image gets other encryption).
      for (const p of ["Encrypted", "KmsKeyId"] as const)
        if (ebs[p] !== undefined)
          throw new Ec2Error(
            "InvalidParameterCombination",
            `${where}.Ebs.${p} cannot be given with ${where}.Ebs.SnapshotId: a volume from a snapshot has the snapshot's encryption`,
          );
      const s = lookupSnapshot(w, ebs.SnapshotId);
      snapshot = s;
      if (s.state !== "completed")
        throw new Ec2Error("IncorrectState", `Snapshot ${s.id} is '${s.state}': images can only be registered from completed snapshots`);
      if (size !== undefined && size < s.volumeSize)
        throw new Ec2Error(
          "InvalidBlockDeviceMapping",
          `Volume of size ${size}GB is smaller than snapshot '${s.id}', expect size >= ${s.volumeSize}GB`,
        );
      size ??= s.volumeSize;
    } else if (size === undefined) {
      throw new Ec2Error("InvalidBlockDeviceMapping", `${where}: a snapshot or a volume size is required`);
    }
    const vtype = oneOf(ebs.VolumeType, `${where}.Ebs.VolumeType`, Object.keys(VOLUME_TYPES)) ?? "gp2";
    bdms.push({
      deviceName: dev,
      snapshotId: ebs.SnapshotId,
      volumeSize: size,
      volumeType: vtype,
      deleteOnTermination: ebs.DeleteOnTermination ?? true,
      encrypted: snapshot?.encrypted,
      kmsKeyId: snapshot?.kmsKeyId,
    });
  });
  const rootBdm = bdms.find((b) => b.deviceName === root);
  if (!rootBdm?.snapshotId)
    throw new Ec2Error("InvalidBlockDeviceMapping", `The root device ${root} must have a block device mapping with a snapshot`);
  // RegisterImage tags only the image (EC2 refuses any other ResourceType here; CreateImage can tag snapshots).
  const tags = tagSpecs(input.TagSpecifications, ["image"]);
  dryRun(ctx, input);
  const img: Image = {
    id: newId(ID_PREFIX.image),
    name,
    description: input.Description ?? "",
    state: "pending",
    ownerId: ACCOUNT_ID,
    rootDeviceName: root,
    blockDeviceMappings: bdms,
    architecture: arch,
    creationDate: w.wallNow(),
    tags: tags.get("image") ?? new Map(),
    enaSupport: input.EnaSupport ?? false,
    bootMode,
    imdsSupport: imds,
    virtualizationType: vt,
    // The root disk decides: a snapshot of a no-node image's root makes a no-node image.
    noNode: w.snapshots.get(rootBdm.snapshotId)?.noNode,
  };
  w.images.set(img.id, img);
  scheduleImage(w, img);
  return { ImageId: img.id };
}

export async function createImage(ctx: Ctx, input: CreateImageRequest) {
  const w = ctx.world;
  const id = required(input.InstanceId, "InstanceId");
  const inst = lookupInstances(w, [id])[0]!;
  const name = checkName(w, input.Name);
  if (inst.state !== "running" && inst.state !== "stopped")
    throw new Ec2Error(
      "IncorrectInstanceState",
      `The instance '${inst.id}' is not in a state from which it can be imaged (${inst.state}).`,
    );
  const tags = tagSpecs(input.TagSpecifications, ["image", "snapshot"]);
  dryRun(ctx, input);
  const vols = [...w.volumes.values()].filter((v) => v.attachment?.instanceId === inst.id && v.attachment.state === "attached");
  const excluded = new Set((input.BlockDeviceMappings ?? []).filter((m) => m.NoDevice !== undefined).map((m) => m.DeviceName));
  const bdms: ImageBdm[] = [];
  // NoReboot=false would reboot the instance; localcloud snapshots without rebooting (crash-consistent).
  for (const v of vols) {
    if (excluded.has(v.attachment!.device)) continue;
    const s = await startSnapshot(w, v.id, v.size, `Created by CreateImage(${inst.id}) for ${name}`, new Map(tags.get("snapshot") ?? []));
    bdms.push({
      deviceName: v.attachment!.device,
      snapshotId: s.id,
      volumeSize: v.size,
      volumeType: v.volumeType,
      deleteOnTermination: v.attachment!.device === inst.rootDeviceName,
      encrypted: s.encrypted,
      kmsKeyId: s.kmsKeyId,
    });
  }
  const img: Image = {
    id: newId(ID_PREFIX.image),
    name,
    description: input.Description ?? "",
    state: "pending",
    ownerId: ACCOUNT_ID,
    rootDeviceName: inst.rootDeviceName,
    blockDeviceMappings: bdms,
    architecture: inst.architecture,
    creationDate: w.wallNow(),
    tags: tags.get("image") ?? new Map(),
    enaSupport: true,
    virtualizationType: "hvm",
    // An image of a Windows instance is a Windows image (EC2 keeps the platform and its billing).
    platform: inst.platform,
    noNode: inst.noNode,
  };
  w.images.set(img.id, img);
  scheduleImage(w, img);
  return { ImageId: img.id };
}

export function describeImages(ctx: Ctx, input: DescribeImagesRequest) {
  const w = ctx.world;
  noIdsWithMaxResults(input.ImageIds, input, "ImageIds");
  let imgs = [...w.images.values()];
  if (input.ImageIds?.length) {
    for (const id of input.ImageIds) checkId(id, "ami", "InvalidAMIID.Malformed");
    const missingIds = input.ImageIds.filter((id) => !w.images.has(id));
    if (missingIds.length) throw new Ec2Error("InvalidAMIID.NotFound", `The image id '[${missingIds.join(", ")}]' does not exist`);
    imgs = input.ImageIds.map((id) => w.images.get(id)!);
  }
  imgs = imgs.filter((i) => ownerMatches(i.ownerId, i.ownerAlias, input.Owners));
  imgs = applyFilters(
    imgs,
    input.Filters,
    {
      "image-id": (i: Image) => i.id,
      name: (i: Image) => i.name,
      state: (i: Image) => i.state,
      "owner-id": (i: Image) => i.ownerId,
      "owner-alias": (i: Image) => i.ownerAlias,
      architecture: (i: Image) => i.architecture,
      platform: (i: Image) => i.platform,
      "root-device-name": (i: Image) => i.rootDeviceName,
      "root-device-type": () => "ebs",
      "virtualization-type": (i: Image) => i.virtualizationType,
      "block-device-mapping.snapshot-id": (i: Image) => i.blockDeviceMappings.map((b) => b.snapshotId),
      "block-device-mapping.device-name": (i: Image) => i.blockDeviceMappings.map((b) => b.deviceName),
      description: (i: Image) => i.description,
      "is-public": (i: Image) => String(i.ownerAlias === "amazon"),
      "image-type": () => "machine",
    },
    (i) => i.tags,
  );
  const { page, nextToken } = paginate(imgs, input, "DescribeImages", [1, 1000]);
  dryRun(ctx, input);
  return { Images: page.map(describeImage), NextToken: nextToken };
}

export function deregisterImage(ctx: Ctx, input: DeregisterImageRequest) {
  const w = ctx.world;
  const id = required(input.ImageId, "ImageId");
  checkId(id, "ami", "InvalidAMIID.Malformed");
  const img = w.images.get(id);
  if (!img) throw new Ec2Error("InvalidAMIID.NotFound", `The image id '[${id}]' does not exist`);
  if (img.ownerId !== ACCOUNT_ID)
    throw new Ec2Error("UnauthorizedOperation", `You are not authorized to deregister ${id} (owner ${img.ownerId})`);
  dryRun(ctx, input);
  w.images.delete(id);
  // As in EC2, snapshots survive deregistration unless the caller asks for them to go.
  if ((input as { DeleteAssociatedSnapshots?: boolean }).DeleteAssociatedSnapshots) {
    for (const b of img.blockDeviceMappings) {
      const s = b.snapshotId ? w.snapshots.get(b.snapshotId) : undefined;
      if (s && ![...w.images.values()].some((i) => i.blockDeviceMappings.some((x) => x.snapshotId === s.id))) {
        w.snapshots.delete(s.id);
        w.track(`deleting ${s.id}`, w.runtime.deleteSnapshot(s.id));
      }
    }
  }
  return { Return: true };
}

export { missing };
