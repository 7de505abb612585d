/**
 * What `update` may change in the data volumes of a stateful instance, and what it refuses, each
 * refusal naming the field and the reason. Volumes are matched by device.
 *  - An existing volume may grow (`sizeGiB` up) and change `type`, `iops` and `throughput` within
 *    what EC2's ModifyVolume accepts (size range per type, io1/io2 IOPS per GiB, gp3 IOPS and
 *    throughput ranges); the change is made live by the `grow` runbook.
 *  - A new device is a new volume: created, attached and mounted live by the same runbook.
 *  - Refused: shrinking; changing `fsType`, `volumeId` or `device` of an existing volume, or a
 *    `mountPoint` it already has (one may be given to an adopted volume that had none: the agent
 *    mounts it from the next generation on); removing a volume; a second modification of a volume
 *    within EC2's cool-down (6 hours after its previous modification completed, or while that one
 *    still runs).
 */
import type { StatefulInstanceSpec, VolumeSpec } from "../shared/spec.js";
import type { VolumeModificationInfo } from "./cloud/gateway.js";

/** EC2's wait between two modifications of one volume, counted from the completion of the first (model ms). */
export const MODIFICATION_COOLDOWN_MS = 6 * 3_600_000;

/** A data volume whose EBS volume changes in place (ModifyVolume), then its filesystem grows. */
export interface VolumeGrowth {
  device: string;
  sizeGiB: number;
  volumeType: string;
  iops?: number;
  throughput?: number;
  /** The size grows: the agent grows the filesystem once EC2 has made the device bigger. */
  grows: boolean;
  mountPoint: string | null;
  fsType: string;
}

/** What an update changes in the data volumes: modifications, new volumes, and what it refuses. */
export interface VolumePlan {
  problems: string[];
  grow: VolumeGrowth[];
  /** Devices of new volumes, in spec order. */
  add: string[];
  /** Adopted volumes given a mount point they had none of (stored at once, mounted at the next generation). */
  newMountPoints: string[];
}

/** Filesystems the agent grows online. */
const GROWABLE = /^(ext[234]|xfs)$/;

const gp3 = { minIops: 3000, maxIops: 16000, iopsPerGiB: 500, minThroughput: 125, maxThroughput: 1000, throughputPerIops: 0.25 };
const provisioned: Record<string, { maxIops: number; iopsPerGiB: number }> = {
  io1: { maxIops: 64000, iopsPerGiB: 50 },
  io2: { maxIops: 256000, iopsPerGiB: 1000 },
};

/**
 * Why EC2 would refuse a volume of this type, size, IOPS and throughput (beyond the spec's own
 * per-type checks): io1/io2 need IOPS, at most 50 (io1) or 1,000 (io2) per GiB; gp3 IOPS
 * 3,000–16,000 and at most 500 per GiB above 3,000, throughput 125–1,000 MiB/s and at most 0.25 per
 * IOPS above 125. Null when it would accept it.
 */
export function ebsLimitProblem(v: Pick<VolumeSpec, "type" | "sizeGiB" | "iops" | "throughput">): string | null {
  if (v.type === "gp3") {
    const iops = v.iops ?? gp3.minIops;
    const tp = v.throughput ?? gp3.minThroughput;
    if (iops < gp3.minIops || iops > gp3.maxIops) return `iops: ${iops} is outside ${gp3.minIops}..${gp3.maxIops} for gp3`;
    if (iops > gp3.minIops && iops > v.sizeGiB * gp3.iopsPerGiB)
      return `iops: ${iops} is more than ${gp3.iopsPerGiB} per GiB of a ${v.sizeGiB} GiB gp3 volume`;
    if (tp < gp3.minThroughput || tp > gp3.maxThroughput)
      return `throughput: ${tp} is outside ${gp3.minThroughput}..${gp3.maxThroughput} MiB/s for gp3`;
    if (tp > gp3.minThroughput && tp > iops * gp3.throughputPerIops)
      return `throughput: ${tp} MiB/s is more than ${gp3.throughputPerIops} per IOPS (${iops} IOPS)`;
  }
  const p = provisioned[v.type];
  if (p) {
    if (v.iops === undefined) return `iops: ${v.type} volumes need iops`;
    if (v.iops < 100 || v.iops > p.maxIops) return `iops: ${v.iops} is outside 100..${p.maxIops} for ${v.type}`;
    if (v.iops > v.sizeGiB * p.iopsPerGiB)
      return `iops: ${v.iops} is more than ${p.iopsPerGiB} per GiB of a ${v.sizeGiB} GiB ${v.type} volume`;
  }
  return null;
}

/** The data-volume part of an update from `before` to `after`: what changes live and what is refused. */
export function planVolumeChanges(before: StatefulInstanceSpec, after: StatefulInstanceSpec): VolumePlan {
  const plan: VolumePlan = { problems: [], grow: [], add: [], newMountPoints: [] };
  const old = new Map(before.persistence.volumes.map((v, i) => [v.device, { v, i }]));
  const kept = new Set(after.persistence.volumes.map((v) => v.device));
  for (const [i, v] of after.persistence.volumes.entries()) {
    const at = `persistence.volumes[${i}]`;
    const prev = old.get(v.device);
    if (!prev) {
      // The same position held another device that is gone: a device change, not a new volume.
      const was = before.persistence.volumes[i];
      if (was && !kept.has(was.device)) {
        plan.problems.push(`${at}.device: cannot change on an existing volume (${was.device}); add a new volume with a device of its own`);
        continue;
      }
      if (v.volumeId)
        plan.problems.push(
          `${at}.volumeId: a volume added to a running instance is created by spotkeep; adopting ${v.volumeId} needs a new instance`,
        );
      if (!v.mountPoint) plan.problems.push(`${at}.mountPoint: a volume added to a running instance needs a mount point`);
      const why = ebsLimitProblem(v);
      if (why) plan.problems.push(`${at}.${why}`);
      if (!v.volumeId && v.mountPoint && !why) plan.add.push(v.device);
      continue;
    }
    const o = prev.v;
    const field = (f: string) => `${at}.${f}`;
    if (v.fsType !== o.fsType) plan.problems.push(`${field("fsType")}: cannot change on an existing volume (${o.fsType})`);
    if (v.volumeId !== o.volumeId)
      plan.problems.push(`${field("volumeId")}: cannot change on an existing volume (${o.volumeId ?? "none"})`);
    if (v.mountPoint !== o.mountPoint) {
      if (o.mountPoint === undefined && v.mountPoint !== undefined) plan.newMountPoints.push(v.device);
      else plan.problems.push(`${field("mountPoint")}: cannot change on an existing volume (${o.mountPoint ?? "none"})`);
    }
    if (v.sizeGiB < o.sizeGiB)
      plan.problems.push(`${field("sizeGiB")}: cannot shrink from ${o.sizeGiB} to ${v.sizeGiB} GiB (EBS volumes only grow)`);
    const changed = v.sizeGiB !== o.sizeGiB || v.type !== o.type || v.iops !== o.iops || v.throughput !== o.throughput;
    if (!changed || v.sizeGiB < o.sizeGiB) continue;
    const why = ebsLimitProblem(v);
    if (why) {
      plan.problems.push(`${at}.${why}`);
      continue;
    }
    if (v.sizeGiB > o.sizeGiB && v.mountPoint && !GROWABLE.test(v.fsType)) {
      plan.problems.push(`${field("sizeGiB")}: a ${v.fsType} filesystem is not grown online by spotkeep (ext2/3/4 and xfs are)`);
      continue;
    }
    plan.grow.push({
      device: v.device,
      sizeGiB: v.sizeGiB,
      volumeType: v.type,
      ...(v.iops !== undefined ? { iops: v.iops } : {}),
      ...(v.throughput !== undefined ? { throughput: v.throughput } : {}),
      grows: v.sizeGiB > o.sizeGiB,
      mountPoint: v.mountPoint ?? null,
      fsType: v.fsType,
    });
  }
  for (const [device, { i }] of old)
    if (!kept.has(device) && !plan.problems.some((p) => p.includes(`(${device})`)))
      plan.problems.push(
        `persistence.volumes[${i}]: ${device} cannot be removed from a running instance (its volume holds data; delete the instance with keep to take it away)`,
      );
  return plan;
}

/**
 * Refusals from each growing volume's latest EC2 modification: one still running, or one completed
 * less than 6 hours ago (`modelMsSince` converts EC2's wall-clock end time into model ms elapsed).
 */
export function coolDownProblems(
  grow: ReadonlyArray<Pick<VolumeGrowth, "device">>,
  volumeOf: (device: string) => string | null,
  modifications: ReadonlyArray<VolumeModificationInfo>,
  modelMsSince: (wallMs: number) => number,
): string[] {
  const out: string[] = [];
  for (const g of grow) {
    const volumeId = volumeOf(g.device);
    const m = volumeId ? modifications.find((x) => x.volumeId === volumeId) : undefined;
    if (!m) continue;
    if (m.state === "modifying" || m.state === "optimizing")
      out.push(
        `persistence.volumes (${g.device}): ${volumeId} is still ${m.state} from its previous modification; update again once it completed`,
      );
    else if (m.state === "completed" && m.endTime !== null) {
      const left = MODIFICATION_COOLDOWN_MS - modelMsSince(m.endTime);
      if (left > 0)
        out.push(
          `persistence.volumes (${g.device}): EC2 modifies ${volumeId} again only 6 hours after its previous modification ` +
            `completed (${Math.ceil(left / 60_000)} min from now)`,
        );
    }
  }
  return out;
}
