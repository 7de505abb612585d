/** EBS volumes: creating -> available <-> in-use -> deleting, attachments. */
import type {
  AttachVolumeRequest,
  CreateVolumeRequest,
  DeleteVolumeRequest,
  DescribeVolumesRequest,
  DetachVolumeRequest,
  Volume as SdkVolume,
  VolumeAttachment,
} from "@aws-sdk/client-ec2";
import { createHash } from "node:crypto";
import type { Ctx } from "../common.js";
import { applyFilters, checkId, dryRun, integer, noIdsWithMaxResults, oneOf, paginate, required, tagList, tagSpecs } from "../common.js";
import { Ec2Error, missing } from "../errors.js";
import { DEVICE_NAME_RE, VOLUME_TYPES } from "../../world/catalog.js";
import { ID_PREFIX, newId } from "../../world/ids.js";
import type { Volume } from "../../world/types.js";
import type { World } from "../../world/world.js";
import { lookupInstances } from "./instances.js";
import { chooseEncryption, describeFailure, encryptionFailure, type EncryptionFailure } from "../encryption.js";

/** Nitro instances take at most this many EBS attachments (28 slots minus the ENI). */
const MAX_ATTACHMENTS = 27;

export function describeVolume(v: Volume): SdkVolume {
  return {
    VolumeId: v.id,
    Size: v.size,
    SnapshotId: v.snapshotId,
    AvailabilityZone: v.az,
    State: v.state === "deleted" ? "deleted" : v.state,
    CreateTime: v.createTime,
    VolumeType: v.volumeType as SdkVolume["VolumeType"],
    Iops: v.iops,
    Throughput: v.throughput,
    Encrypted: v.encrypted,
    KmsKeyId: v.encrypted ? v.kmsKeyId : undefined,
    MultiAttachEnabled: false,
    Attachments: v.attachment ? [attachmentOf(v)] : [],
    Tags: v.tags.size ? tagList(v.tags) : undefined,
  };
}

function attachmentOf(v: Volume): VolumeAttachment {
  const a = v.attachment!;
  return {
    VolumeId: v.id,
    InstanceId: a.instanceId,
    Device: a.device,
    State: a.state,
    AttachTime: a.attachTime,
    DeleteOnTermination: a.deleteOnTermination,
  };
}

export function lookupVolume(w: World, id: string | undefined, param = "VolumeId"): Volume {
  const vid = required(id, param);
  checkId(vid, "vol", "InvalidVolumeID.Malformed");
  const v = w.volumes.get(vid);
  if (!v) throw new Ec2Error("InvalidVolume.NotFound", `The volume '${vid}' does not exist.`);
  return v;
}

export function createVolume(ctx: Ctx, input: CreateVolumeRequest): SdkVolume {
  const w = ctx.world;
  if (input.ClientToken !== undefined) {
    const prior = w.clientTokens.get(`CreateVolume:${input.ClientToken}`);
    const fp = fingerprint(input);
    if (prior) {
      if (prior.fingerprint !== fp)
        throw new Ec2Error("IdempotentParameterMismatch", `The client token '${input.ClientToken}' was used with different parameters`);
      if (prior.deleted) throw tokenOfDeletedVolume();
      const v = w.volumes.get(prior.ids[0]!);
      if (v) {
        dryRun(ctx, input);
        return describeVolume(v);
      }
    }
  }
  const az = required(input.AvailabilityZone, "AvailabilityZone");
  if (!ctx.world.catalog.azs.includes(az)) throw new Ec2Error("InvalidZone.NotFound", `The zone '${az}' does not exist.`);
  const volumeType = oneOf(input.VolumeType, "VolumeType", Object.keys(VOLUME_TYPES)) ?? "gp2";
  const limits = VOLUME_TYPES[volumeType]!;
  let snapSize = 0;
  let source: { encrypted: boolean; kmsKeyId?: string } | undefined;
  if (input.SnapshotId !== undefined) {
    checkId(input.SnapshotId, "snap", "InvalidSnapshotID.Malformed");
    const snap = w.snapshots.get(input.SnapshotId);
    if (!snap) throw new Ec2Error("InvalidSnapshot.NotFound", `The snapshot '${input.SnapshotId}' does not exist.`);
    if (snap.state !== "completed")
      throw new Ec2Error(
        "IncorrectState",
        `Snapshot '${snap.id}' is in state '${snap.state}': a volume can only be created from a completed snapshot`,
      );
    snapSize = snap.volumeSize;
    source = snap;
  }
  const size = integer(input.Size, "Size") ?? (snapSize || undefined);
  if (size === undefined) throw new Ec2Error("MissingParameter", "The request must contain the parameter size or snapshotId");
  if (size < snapSize)
    throw new Ec2Error(
      "InvalidParameterValue",
      `Volume of ${size}GiB is too small; minimum is ${snapSize}GiB (the size of snapshot ${input.SnapshotId}).`,
    );
  if (size < limits.min || size > limits.max)
    throw new Ec2Error(
      "InvalidParameterValue",
      `Volume of ${size}GiB is out of range for ${volumeType}: must be ${limits.min}-${limits.max}GiB.`,
    );
  if (input.Iops !== undefined && limits.iops === "none")
    throw new Ec2Error("InvalidParameterDependency", `The parameter iops is not supported for ${volumeType} volumes.`);
  if (input.Iops === undefined && limits.iops === "required") throw missing("Iops");
  if (input.Throughput !== undefined && volumeType !== "gp3")
    throw new Ec2Error("InvalidParameterDependency", `The parameter throughput is only supported for gp3 volumes.`);
  const tags = tagSpecs(input.TagSpecifications, ["volume"]);
  const enc = chooseEncryption(w, { encrypted: input.Encrypted, kmsKeyId: input.KmsKeyId, source });
  dryRun(ctx, input);
  const keyFailure = encryptionFailure(w, [enc]);
  const v: Volume = {
    id: newId(ID_PREFIX.volume),
    size,
    snapshotId: input.SnapshotId ?? "",
    az,
    state: "creating",
    createTime: w.wallNow(),
    volumeType,
    iops: input.Iops ?? limits.defaultIops?.(size),
    throughput: input.Throughput ?? (volumeType === "gp3" ? 125 : undefined),
    encrypted: enc.encrypted,
    kmsKeyId: enc.kmsKeyId,
    tags: tags.get("volume") ?? new Map(),
    ready: Promise.resolve(),
    clientToken: input.ClientToken,
    noNode: (input.SnapshotId !== undefined && w.snapshots.get(input.SnapshotId)?.noNode) || undefined,
  };
  const created = w.runtime.createVolume({ volumeId: v.id, sizeGiB: size }, input.SnapshotId);
  v.ready = w.track(`creating ${v.id}`, created).then(() => undefined);
  w.volumes.set(v.id, v);
  if (input.ClientToken !== undefined)
    w.clientTokens.set(`CreateVolume:${input.ClientToken}`, { fingerprint: fingerprint(input), ids: [v.id] });
  const out = describeVolume(v);
  w.after(w.profile.createVolume, `creating ${v.id}`, async () => {
    if (keyFailure) return vanishVolume(w, v, keyFailure);
    try {
      await created;
      if (v.state === "creating") v.state = "available";
    } catch {
      if (v.state === "creating") v.state = "error";
    }
  });
  return out;
}

/**
 * A volume EC2 could not encrypt (its key unknown, not enabled, or not usable by the caller through
 * EC2): CreateVolume answered `creating`, then the volume is gone and DescribeVolumes says
 * InvalidVolume.NotFound, as EC2 does.
 */
function vanishVolume(w: World, v: Volume, f: EncryptionFailure): void {
  if (v.state !== "creating") return;
  w.log(`${v.id} could not be created: ${describeFailure(f)}`);
  v.state = "deleting";
  w.volumes.delete(v.id);
  // A retry with the same ClientToken is refused: the token's volume is gone.
  const token = v.clientToken === undefined ? undefined : w.clientTokens.get(`CreateVolume:${v.clientToken}`);
  if (token?.ids[0] === v.id) token.deleted = true;
  w.track(
    `deleting ${v.id}`,
    v.ready.then(() => w.runtime.deleteVolume(v.id)),
  );
}

/** EC2's answer to a CreateVolume retry whose ClientToken made a volume that is gone. */
function tokenOfDeletedVolume(): Ec2Error {
  return new Ec2Error(
    "IdempotentParameterMismatch",
    "The client token you have provided is associated with a resource that is already deleted. Please use a different client token.",
  );
}

/**
 * An attachment of an encrypted volume whose key EC2 cannot use for the caller: AttachVolume
 * answered `attaching`, then the attachment is dropped and the volume is available again.
 */
function failAttachment(w: World, v: Volume, f: EncryptionFailure): void {
  w.log(`${v.id} could not be attached: ${describeFailure(f)}`);
  v.attachment = undefined;
  if (v.state === "in-use") v.state = "available";
}

function fingerprint(input: object): string {
  const { ClientToken: _t, DryRun: _d, ...rest } = input as Record<string, unknown>;
  return createHash("sha256").update(JSON.stringify(rest)).digest("hex");
}

const volumeFilters = {
  "volume-id": (v: Volume) => v.id,
  status: (v: Volume) => v.state,
  "availability-zone": (v: Volume) => v.az,
  "attachment.instance-id": (v: Volume) => v.attachment?.instanceId,
  "attachment.device": (v: Volume) => v.attachment?.device,
  "attachment.status": (v: Volume) => v.attachment?.state,
  "attachment.delete-on-termination": (v: Volume) => (v.attachment ? String(v.attachment.deleteOnTermination) : undefined),
  "snapshot-id": (v: Volume) => v.snapshotId,
  size: (v: Volume) => v.size,
  "volume-type": (v: Volume) => v.volumeType,
  encrypted: (v: Volume) => String(v.encrypted),
};

export function describeVolumes(ctx: Ctx, input: DescribeVolumesRequest) {
  const w = ctx.world;
  noIdsWithMaxResults(input.VolumeIds, input, "VolumeIds");
  let vols = [...w.volumes.values()];
  if (input.VolumeIds?.length) vols = input.VolumeIds.map((id) => lookupVolume(w, id));
  vols = applyFilters(vols, input.Filters, volumeFilters, (v) => v.tags);
  const { page, nextToken } = paginate(vols, input, "DescribeVolumes", [5, 500]);
  dryRun(ctx, input);
  return { Volumes: page.map(describeVolume), NextToken: nextToken };
}

export function attachVolume(ctx: Ctx, input: AttachVolumeRequest): VolumeAttachment {
  const w = ctx.world;
  const device = required(input.Device, "Device");
  const instanceId = required(input.InstanceId, "InstanceId");
  const v = lookupVolume(w, input.VolumeId);
  const inst = lookupInstances(w, [instanceId])[0]!;
  if (!DEVICE_NAME_RE.test(device) && device !== inst.rootDeviceName)
    throw new Ec2Error(
      "InvalidParameterValue",
      `Value (${device}) for parameter device is invalid. ${device} is not a valid EBS device name.`,
    );
  if (v.state === "creating") throw new Ec2Error("IncorrectState", `The volume '${v.id}' is still being created (state creating).`);
  if (v.state === "in-use") throw new Ec2Error("VolumeInUse", `${v.id} is already attached to an instance`);
  if (v.state !== "available") throw new Ec2Error("IncorrectState", `The volume '${v.id}' is '${v.state}' and cannot be attached.`);
  if (v.az !== inst.az)
    throw new Ec2Error("InvalidVolume.ZoneMismatch", `The volume '${v.id}' is not in the same availability zone as instance '${inst.id}'`);
  if (inst.state !== "running" && inst.state !== "stopped")
    throw new Ec2Error("IncorrectInstanceState", `The instance '${inst.id}' is not 'running' or 'stopped' (it is '${inst.state}').`);
  const attached = [...w.volumes.values()].filter((x) => x.attachment?.instanceId === inst.id);
  if (attached.some((x) => x.attachment!.device === device))
    throw new Ec2Error("InvalidParameterValue", `Invalid value '${device}' for unixDevice. Attachment point ${device} is already in use`);
  if (attached.length >= MAX_ATTACHMENTS)
    throw new Ec2Error("AttachmentLimitExceeded", `The instance '${inst.id}' has reached its limit of ${MAX_ATTACHMENTS} EBS attachments`);
  dryRun(ctx, input);
  const keyFailure = v.encrypted ? encryptionFailure(w, [{ encrypted: true, keyRef: v.kmsKeyId }]) : undefined;
  const a = { instanceId: inst.id, device, state: "attaching" as const, attachTime: w.wallNow(), deleteOnTermination: false };
  v.state = "in-use";
  v.attachment = { ...a };
  const out = attachmentOf(v);
  const att = v.attachment;
  w.after(w.profile.attachVolume, `attaching ${v.id} to ${inst.id}`, async () => {
    if (v.attachment !== att || att.state !== "attaching") return;
    if (keyFailure) return failAttachment(w, v, keyFailure);
    await v.ready;
    await w.runtime.attachVolume(inst.id, v.id, device);
    if (v.attachment === att && att.state === "attaching") att.state = "attached";
  });
  return out;
}

export function detachVolume(ctx: Ctx, input: DetachVolumeRequest): VolumeAttachment {
  const w = ctx.world;
  const v = lookupVolume(w, input.VolumeId);
  const a = v.attachment;
  if (input.InstanceId !== undefined) {
    checkId(input.InstanceId, "i", "InvalidInstanceID.Malformed");
    if (!w.instances.has(input.InstanceId))
      throw new Ec2Error("InvalidInstanceID.NotFound", `The instance ID '${input.InstanceId}' does not exist`);
  }
  if (!a) throw new Ec2Error("IncorrectState", `Volume '${v.id}' is in the '${v.state}' state.`);
  if (input.InstanceId !== undefined && input.InstanceId !== a.instanceId)
    throw new Ec2Error(
      "InvalidAttachment.NotFound",
      `Volume ${v.id} can not be detached from ${input.InstanceId} because it is not attached`,
    );
  if (input.Device !== undefined && input.Device !== a.device)
    throw new Ec2Error(
      "InvalidAttachment.NotFound",
      `The volume ${v.id} is not attached to instance ${a.instanceId} as device ${input.Device}`,
    );
  const inst = w.instances.get(a.instanceId);
  if (inst && inst.rootVolumeId === v.id && a.device === inst.rootDeviceName && inst.state !== "stopped") {
    throw new Ec2Error("IncorrectState", `Unable to detach root volume '${v.id}' from instance '${inst.id}'`);
  }
  if (a.state === "detaching" && !input.Force)
    throw new Ec2Error("IncorrectState", `Volume '${v.id}' is already detaching from '${a.instanceId}'.`);
  dryRun(ctx, input);
  a.state = "detaching";
  const out = attachmentOf(v);
  const finish = async () => {
    if (v.attachment !== a) return;
    await w.runtime.detachVolume(a.instanceId, v.id, a.device);
    if (v.attachment === a) {
      v.attachment = undefined;
      v.state = "available";
    }
  };
  // Force is the last resort for stuck attachments: the volume comes free at once.
  w.after(input.Force ? 0 : w.profile.detachVolume, `detaching ${v.id} from ${a.instanceId}`, finish);
  return out;
}

export function deleteVolume(ctx: Ctx, input: DeleteVolumeRequest) {
  const w = ctx.world;
  const v = lookupVolume(w, input.VolumeId);
  if (v.attachment) throw new Ec2Error("VolumeInUse", `Volume ${v.id} is currently attached to ${v.attachment.instanceId}`);
  if (v.state !== "available" && v.state !== "error")
    throw new Ec2Error("IncorrectState", `The volume '${v.id}' is '${v.state}' and cannot be deleted.`);
  dryRun(ctx, input);
  v.state = "deleting";
  w.track(
    `deleting ${v.id}`,
    v.ready.then(() => w.runtime.deleteVolume(v.id)),
  );
  w.after(w.profile.deleteVolume, `deleting ${v.id}`, () => {
    w.volumes.delete(v.id);
  });
  return {};
}
