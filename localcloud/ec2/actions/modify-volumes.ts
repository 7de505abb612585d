/**
 * Elastic Volumes: ModifyVolume and DescribeVolumesModifications with EC2's rules.
 *  - one modification per volume at a time: a volume whose latest modification is `modifying` or
 *    `optimizing` refuses another (IncorrectModificationState);
 *  - after a modification completes the volume refuses another for 6 model hours
 *    (VolumeModificationRateExceeded);
 *  - the size only grows (InvalidParameterValue "New size cannot be smaller than existing size");
 *    the target must fit its type: size range, io1/io2 IOPS per GiB, gp3 IOPS and throughput ranges;
 *  - `modifying` → `optimizing` after the profile's modifyVolume (the new size is in place and the
 *    runtime grew the backing store: usable from here) → `completed` after optimizeVolume.
 * Progress runs 0–49 while modifying, 50–99 while optimizing, 100 once completed.
 */
import type {
  DescribeVolumesModificationsRequest,
  ModifyVolumeRequest,
  VolumeModification as SdkVolumeModification,
} from "@aws-sdk/client-ec2";
import type { Ctx } from "../common.js";
import { applyFilters, dryRun, integer, oneOf, paginate } from "../common.js";
import { Ec2Error } from "../errors.js";
import { VOLUME_TYPES } from "../../world/catalog.js";
import type { Volume } from "../../world/types.js";
import type { World } from "../../world/world.js";
import { lookupVolume } from "./volumes.js";

/** Model ms a volume refuses a new modification after its previous one completed. */
export const MODIFICATION_COOLDOWN_MS = 6 * 3_600_000;

/** Model ms a modification stays `modifying`, then `optimizing`, when the latency profile does not say. */
const DEFAULT_PHASES = { modifying: 5, optimizing: 10 };

type ModificationState = "modifying" | "optimizing" | "completed" | "failed";

interface Modification {
  volumeId: string;
  state: ModificationState;
  original: { size: number; volumeType: string; iops?: number; throughput?: number };
  target: { size: number; volumeType: string; iops?: number; throughput?: number };
  startTime: Date;
  endTime?: Date;
  /** Model times (the world clock) the phases began and ended; completedAt starts the cool-down. */
  startedAt: number;
  optimizingAt?: number;
  completedAt?: number;
  phases: { modifying: number; optimizing: number };
  statusMessage?: string;
}

/** The latest modification of each volume, per world (EC2 describes only the most recent one). */
const MODIFICATIONS = new WeakMap<World, Map<string, Modification>>();

function modificationsOf(w: World): Map<string, Modification> {
  let m = MODIFICATIONS.get(w);
  if (!m) MODIFICATIONS.set(w, (m = new Map()));
  return m;
}

/** gp3: 3,000–16,000 IOPS, at most 500 per GiB; 125–1,000 MiB/s, at most 0.25 MiB/s per IOPS. */
const GP3 = { minIops: 3000, maxIops: 16000, iopsPerGiB: 500, minThroughput: 125, maxThroughput: 1000, throughputPerIops: 0.25 };
/** Provisioned IOPS: 100 up to the type's maximum, at most this many per GiB. */
const PROVISIONED: Record<string, { maxIops: number; iopsPerGiB: number }> = {
  io1: { maxIops: 64000, iopsPerGiB: 50 },
  io2: { maxIops: 256000, iopsPerGiB: 1000 },
};

/**
 * Why a volume of `type`, `size` GiB, `iops` and `throughput` cannot exist (EC2's limits per type),
 * as an InvalidParameterValue / InvalidParameterDependency error; null when it can.
 */
export function volumeLimitError(type: string, size: number, iops: number | undefined, throughput: number | undefined): Ec2Error | null {
  const limits = VOLUME_TYPES[type];
  if (!limits) return new Ec2Error("InvalidParameterValue", `Value (${type}) for parameter volumeType is invalid.`);
  if (size < limits.min || size > limits.max)
    return new Ec2Error(
      "InvalidParameterValue",
      `Volume of ${size}GiB is out of range for ${type}: must be ${limits.min}-${limits.max}GiB.`,
    );
  if (iops !== undefined && limits.iops === "none")
    return new Ec2Error("InvalidParameterDependency", `The parameter iops is not supported for ${type} volumes.`);
  if (throughput !== undefined && type !== "gp3")
    return new Ec2Error("InvalidParameterDependency", "The parameter throughput is only supported for gp3 volumes.");
  if (type === "gp3") {
    const i = iops ?? GP3.minIops;
    const t = throughput ?? GP3.minThroughput;
    if (i < GP3.minIops || i > GP3.maxIops)
      return new Ec2Error("InvalidParameterValue", `Iops of ${i} is out of range for gp3: must be ${GP3.minIops}-${GP3.maxIops}.`);
    if (i > GP3.minIops && i > size * GP3.iopsPerGiB)
      return new Ec2Error(
        "InvalidParameterValue",
        `Iops to volume size ratio of ${(i / size).toFixed(1)} is too high; maximum is ${GP3.iopsPerGiB}.`,
      );
    if (t < GP3.minThroughput || t > GP3.maxThroughput)
      return new Ec2Error(
        "InvalidParameterValue",
        `Throughput of ${t}MiB/s is out of range for gp3: must be ${GP3.minThroughput}-${GP3.maxThroughput}MiB/s.`,
      );
    if (t > GP3.minThroughput && t > i * GP3.throughputPerIops)
      return new Ec2Error(
        "InvalidParameterValue",
        `Throughput to iops ratio of ${(t / i).toFixed(3)} is too high; maximum is ${GP3.throughputPerIops}.`,
      );
  }
  const p = PROVISIONED[type];
  if (p) {
    if (iops === undefined) return new Ec2Error("MissingParameter", `The request must contain the parameter iops for ${type} volumes.`);
    if (iops < 100 || iops > p.maxIops)
      return new Ec2Error("InvalidParameterValue", `Iops of ${iops} is out of range for ${type}: must be 100-${p.maxIops}.`);
    if (iops > size * p.iopsPerGiB)
      return new Ec2Error(
        "InvalidParameterValue",
        `Iops to volume size ratio of ${(iops / size).toFixed(1)} is too high; maximum is ${p.iopsPerGiB}.`,
      );
  }
  return null;
}

function progressOf(w: World, m: Modification): number {
  const now = w.clock.now();
  const frac = (since: number, span: number) => Math.min(0.99, Math.max(0, (now - since) / Math.max(1, span)));
  if (m.state === "completed") return 100;
  if (m.state === "failed") return 0;
  if (m.state === "modifying") return Math.floor(49 * frac(m.startedAt, m.phases.modifying));
  return 50 + Math.floor(49 * frac(m.optimizingAt ?? now, m.phases.optimizing));
}

function describeModification(w: World, m: Modification): SdkVolumeModification {
  return {
    VolumeId: m.volumeId,
    ModificationState: m.state,
    StatusMessage: m.statusMessage,
    TargetSize: m.target.size,
    TargetIops: m.target.iops,
    TargetVolumeType: m.target.volumeType as SdkVolumeModification["TargetVolumeType"],
    TargetThroughput: m.target.throughput,
    TargetMultiAttachEnabled: false,
    OriginalSize: m.original.size,
    OriginalIops: m.original.iops,
    OriginalVolumeType: m.original.volumeType as SdkVolumeModification["OriginalVolumeType"],
    OriginalThroughput: m.original.throughput,
    OriginalMultiAttachEnabled: false,
    Progress: progressOf(w, m),
    StartTime: m.startTime,
    EndTime: m.endTime,
  };
}

export function modifyVolume(ctx: Ctx, input: ModifyVolumeRequest): { VolumeModification: SdkVolumeModification } {
  const w = ctx.world;
  const v = lookupVolume(w, input.VolumeId);
  const size = integer(input.Size, "Size");
  const type = oneOf(input.VolumeType, "VolumeType", Object.keys(VOLUME_TYPES));
  const iops = integer(input.Iops, "Iops");
  const throughput = integer(input.Throughput, "Throughput");
  if (size === undefined && type === undefined && iops === undefined && throughput === undefined)
    throw new Ec2Error("MissingParameter", "The request must contain at least one of the parameters Size, VolumeType, Iops or Throughput.");
  if (input.MultiAttachEnabled === true) throw new Ec2Error("InvalidParameterValue", "Multi-Attach is not supported by this localcloud.");
  if (v.state !== "in-use" && v.state !== "available")
    throw new Ec2Error("IncorrectState", `The volume '${v.id}' is '${v.state}': only an in-use or available volume can be modified.`);
  const mods = modificationsOf(w);
  const prior = mods.get(v.id);
  if (prior && (prior.state === "modifying" || prior.state === "optimizing"))
    throw new Ec2Error(
      "IncorrectModificationState",
      `Volume ${v.id} cannot be modified in modification state ${prior.state.toUpperCase()}`,
    );
  if (prior?.completedAt !== undefined && w.clock.now() - prior.completedAt < MODIFICATION_COOLDOWN_MS)
    throw new Ec2Error(
      "VolumeModificationRateExceeded",
      "You've reached the maximum modification rate per volume limit. Wait at least 6 hours between modifications per EBS volume.",
    );
  if (size !== undefined && size < v.size) throw new Ec2Error("InvalidParameterValue", "New size cannot be smaller than existing size");
  const targetType = type ?? v.volumeType;
  const targetSize = size ?? v.size;
  const targetIops = targetIopsOf(v, targetType, targetSize, iops);
  const targetThroughput = targetType === "gp3" ? (throughput ?? (v.volumeType === "gp3" ? v.throughput : GP3.minThroughput)) : throughput;
  const perType = VOLUME_TYPES[targetType]?.iops === "none" ? iops : targetIops;
  const limit = volumeLimitError(targetType, targetSize, perType, targetThroughput);
  if (limit) throw limit;
  const finalIops = targetIops;
  if (targetSize === v.size && targetType === v.volumeType && finalIops === v.iops && targetThroughput === v.throughput)
    throw new Ec2Error("InvalidParameterValue", `Volume ${v.id} already has the requested size, type, iops and throughput.`);
  dryRun(ctx, input);
  const phases = {
    modifying: w.profile.modifyVolume ?? DEFAULT_PHASES.modifying,
    optimizing: w.profile.optimizeVolume ?? DEFAULT_PHASES.optimizing,
  };
  const m: Modification = {
    volumeId: v.id,
    state: "modifying",
    original: { size: v.size, volumeType: v.volumeType, iops: v.iops, throughput: v.throughput },
    target: { size: targetSize, volumeType: targetType, iops: finalIops, throughput: targetThroughput },
    startTime: w.wallNow(),
    startedAt: w.clock.now(),
    phases,
  };
  mods.set(v.id, m);
  w.after(phases.modifying, `modifying ${v.id}`, async () => {
    if (mods.get(v.id) !== m || m.state !== "modifying") return;
    try {
      // The runtime grows the backing store first: from `optimizing` on, the instance sees the new size.
      if (targetSize > v.size) await w.runtime.resizeVolume?.(v.id, targetSize);
    } catch (err) {
      m.state = "failed";
      m.statusMessage = `Growing the volume's storage failed: ${(err as Error).message}`;
      m.endTime = w.wallNow();
      return;
    }
    applyTarget(v, m);
    m.state = "optimizing";
    m.optimizingAt = w.clock.now();
    w.after(phases.optimizing, `optimizing ${v.id}`, () => {
      if (mods.get(v.id) !== m || m.state !== "optimizing") return;
      m.state = "completed";
      m.completedAt = w.clock.now();
      m.endTime = w.wallNow();
    });
  });
  return { VolumeModification: describeModification(w, m) };
}

/**
 * The IOPS a modification leaves: the request's; else the volume's own when the type stays (gp2's
 * follow its size); 3,000 on a move to gp3; the provisioned IOPS carried over to io1/io2 (none: the
 * request must name them); none for the other types.
 */
function targetIopsOf(v: Volume, type: string, size: number, iops: number | undefined): number | undefined {
  if (iops !== undefined) return iops;
  if (type === "gp2") return VOLUME_TYPES.gp2!.defaultIops!(size);
  if (type === v.volumeType) return v.iops;
  if (type === "gp3") return GP3.minIops;
  if (PROVISIONED[type]) return PROVISIONED[v.volumeType] || v.volumeType === "gp3" ? v.iops : undefined;
  return undefined;
}

function applyTarget(v: Volume, m: Modification): void {
  v.size = m.target.size;
  v.volumeType = m.target.volumeType;
  v.iops = m.target.iops;
  v.throughput = m.target.throughput;
}

const modificationFilters = {
  "volume-id": (m: Modification) => m.volumeId,
  "modification-state": (m: Modification) => m.state,
  "target-size": (m: Modification) => m.target.size,
  "target-iops": (m: Modification) => m.target.iops,
  "target-volume-type": (m: Modification) => m.target.volumeType,
  "target-throughput": (m: Modification) => m.target.throughput,
  "original-size": (m: Modification) => m.original.size,
  "original-iops": (m: Modification) => m.original.iops,
  "original-volume-type": (m: Modification) => m.original.volumeType,
  "start-time": (m: Modification) => m.startTime.toISOString(),
};

export function describeVolumesModifications(ctx: Ctx, input: DescribeVolumesModificationsRequest) {
  const w = ctx.world;
  const mods = modificationsOf(w);
  let list: Modification[];
  if (input.VolumeIds?.length) {
    list = input.VolumeIds.map((id) => {
      const v = lookupVolume(w, id);
      const m = mods.get(v.id);
      if (!m) throw new Ec2Error("InvalidVolumeModification.NotFound", `Modification for volume '${v.id}' does not exist.`);
      return m;
    });
  } else {
    list = [...mods.values()].filter((m) => w.volumes.has(m.volumeId));
  }
  list = applyFilters(list, input.Filters, modificationFilters);
  const { page, nextToken } = paginate(list, input, "DescribeVolumesModifications", [5, 500]);
  dryRun(ctx, input);
  return { VolumesModifications: page.map((m) => describeModification(w, m)), NextToken: nextToken };
}
