/**
 * What the coordinator reads in an agent's inventory: the usage of the kept volumes' filesystems,
 * EBS volumes attached that the instance does not keep, and kept volumes not mounted where the
 * spec says. An inventory is a claim from the instance: each finding is an event on the timeline
 * (and the usage a gauge), never a reason to attach, detach or delete anything; EC2 stays the
 * source of truth for that.
 *
 * A condition is raised once: the keys of the conditions on the timeline are recorded with the
 * inventory, and only a condition missing from the previous inventory's list is raised again. A
 * usage condition that no longer holds is cleared with an event of its own, so the next crossing
 * is raised again.
 */
import type { Inventory } from "../shared/protocol.js";
import type { DataVolume } from "./db/store.js";

/** The used share of a kept volume's filesystem (used / (used + available), as df's Use%) that raises an event. */
export const VOLUME_USAGE_THRESHOLD = 0.9;

/** The inventory as recorded: the message without its envelope. */
export type InventoryData = Omit<Inventory, "v" | "id" | "ts">;

export type ConditionKind = "volume-usage-high" | "volume-unexpected" | "volume-not-mounted";

export interface Condition {
  /** Stable while the condition holds: `usage:<device>`, `extra:<volume id>`, `mount:<device>`. */
  key: string;
  kind: ConditionKind;
  message: string;
}

export interface InventoryReading {
  conditions: Condition[];
  /** Used share of each kept volume's filesystem the inventory reports, by the spec's device name. */
  usage: Array<{ device: string; ratio: number }>;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
/** A string the agent reported, for a timeline message: control characters shown as "?", at most 256 characters. */
const said = (s: string): string => s.slice(0, 256).replace(CONTROL, "?");

const pct = (r: number) => `${Math.round(r * 1000) / 10}%`;

/** Used share as df computes Use%: the reserved blocks count as neither used nor available. */
export function usedRatio(f: { usedBytes: number; availableBytes: number }): number | null {
  const total = f.usedBytes + f.availableBytes;
  if (!(total > 0) || !Number.isFinite(total)) return null;
  return Math.min(1, Math.max(0, f.usedBytes / total));
}

/**
 * The conditions an inventory shows. `volumes` are the instance's kept data volumes (the spec's,
 * with the EBS volume currently holding each); `rootDeviceName` the root's device name, when known.
 */
export function readInventory(
  inv: InventoryData,
  volumes: readonly DataVolume[],
  rootDeviceName: string | null,
  threshold = VOLUME_USAGE_THRESHOLD,
): InventoryReading {
  const conditions: Condition[] = [];
  const usage: InventoryReading["usage"] = [];
  const kept = volumes.filter((v): v is DataVolume & { volumeId: string } => v.volumeId !== null);
  const filesystems = inv.filesystems ?? [];
  for (const v of kept) {
    const dev = inv.devices.find((d) => d.volumeId === v.volumeId);
    const fs =
      filesystems.find((f) => f.volumeId === v.volumeId) ??
      (dev?.mountPoint ? filesystems.find((f) => f.mountPoint === dev.mountPoint) : undefined);
    const ratio = fs ? usedRatio(fs) : null;
    if (fs && ratio !== null) {
      usage.push({ device: v.device, ratio });
      if (ratio >= threshold)
        conditions.push({
          key: `usage:${v.device}`,
          kind: "volume-usage-high",
          message: `${v.device} (${v.volumeId}) on ${said(fs.mountPoint)} is ${pct(ratio)} full, at or past the ${pct(threshold)} threshold`,
        });
    }
    if (v.mountPoint === null) continue;
    if (!dev)
      conditions.push({
        key: `mount:${v.device}`,
        kind: "volume-not-mounted",
        message: `${v.device} (${v.volumeId}) is not attached as the agent sees it; the spec mounts it at ${v.mountPoint}`,
      });
    else if (dev.mountPoint !== v.mountPoint)
      conditions.push({
        key: `mount:${v.device}`,
        kind: "volume-not-mounted",
        message: dev.mountPoint
          ? `${v.device} (${v.volumeId}) is mounted at ${said(dev.mountPoint)}; the spec mounts it at ${v.mountPoint}`
          : `${v.device} (${v.volumeId}) is not mounted; the spec mounts it at ${v.mountPoint}`,
      });
  }
  const keptIds = new Set(kept.map((v) => v.volumeId));
  const seen = new Set<string>();
  for (const d of inv.devices) {
    if (!d.volumeId || keptIds.has(d.volumeId) || seen.has(d.volumeId)) continue;
    if (d.root || (rootDeviceName && d.requestedName === rootDeviceName)) continue;
    seen.add(d.volumeId);
    conditions.push({
      key: `extra:${d.volumeId}`,
      kind: "volume-unexpected",
      message: `${d.volumeId} is attached (${said(d.device)}${d.mountPoint ? `, mounted at ${said(d.mountPoint)}` : ""}) but the spec does not list it`,
    });
  }
  return { conditions, usage };
}
