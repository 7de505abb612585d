/**
 * Volume id <-> device. On Nitro the stable name is the udev by-id link
 * `nvme-Amazon_Elastic_Block_Store_vol<id without dash>` (the NVMe serial); `/dev/nvme1n1`
 * itself may change between boots, so it is never assumed. Xen instances expose `/dev/sdf` as
 * `/dev/xvdf`; those names are reported as the requested device name and are the fallback when a
 * volume has no by-id link. In localcloud's process runtime the links point to folders
 * ("directory volumes").
 */
import { readdirSync, realpathSync, statSync } from "node:fs";
import { basename, join } from "node:path";

const BY_ID_PREFIX = "nvme-Amazon_Elastic_Block_Store_";

export interface VolumeDevice {
  volumeId?: string;
  /** The link or device path as found (what mount is given). */
  path: string;
  /** Resolved target (/dev/nvme1n1, /dev/loop3, or a folder). */
  real: string;
  kind: "block" | "directory";
  /** /dev/sdf when a device-name link points at the same target. */
  requestedName?: string;
}

export function byIdName(volumeId: string): string {
  return BY_ID_PREFIX + volumeId.replace("-", "");
}

function volumeIdFromLink(name: string): string | null {
  const m = /^nvme-Amazon_Elastic_Block_Store_vol([0-9a-f]{8,17})$/.exec(name);
  return m ? `vol-${m[1]}` : null;
}

const DEVICE_NAME = /^(sd[a-z]{1,2}|xvd[a-z]{1,2}|hd[a-z])$/;

function resolve(path: string): { real: string; kind: "block" | "directory" } | null {
  try {
    const real = realpathSync(path);
    const st = statSync(real);
    if (st.isDirectory()) return { real, kind: "directory" };
    if (st.isBlockDevice()) return { real, kind: "block" };
    return null;
  } catch {
    return null;
  }
}

/** Every EBS volume visible in devDir, plus Xen-named devices without a by-id link. */
export function listVolumeDevices(devDir: string): VolumeDevice[] {
  let names: string[];
  try {
    names = readdirSync(devDir);
  } catch {
    return [];
  }
  const byReal = new Map<string, VolumeDevice>();
  for (const name of names.sort()) {
    const volumeId = volumeIdFromLink(name);
    if (!volumeId) continue;
    const path = join(devDir, name);
    const r = resolve(path);
    if (r) byReal.set(r.real, { volumeId, path, ...r });
  }
  for (const name of names.sort()) {
    if (!DEVICE_NAME.test(name)) continue;
    const path = join(devDir, name);
    const r = resolve(path);
    if (!r) continue;
    const requestedName = `/dev/${name.replace(/^xvd/, "sd")}`;
    const known = byReal.get(r.real);
    if (known) known.requestedName ??= requestedName;
    else byReal.set(r.real, { path, requestedName, ...r });
  }
  return [...byReal.values()];
}

/** Candidate paths for a volume: its by-id link, then its device name as sdX / xvdX. */
export function deviceCandidates(devDir: string, volumeId: string, deviceName?: string): string[] {
  const out = [join(devDir, byIdName(volumeId))];
  if (deviceName) {
    const base = basename(deviceName);
    const xen = base.replace(/^sd/, "xvd");
    out.push(join(devDir, base), join(devDir, xen));
    if (devDir === "/dev/disk/by-id") out.push(`/dev/${base}`, `/dev/${xen}`);
  }
  return [...new Set(out)];
}

/** The device for a volume if it is visible now (by-id first; the name fallback only without by-id links). */
export function findVolumeDevice(devDir: string, volumeId: string, deviceName?: string): VolumeDevice | null {
  const [byId, ...byName] = deviceCandidates(devDir, volumeId, deviceName);
  const r = resolve(byId!);
  if (r) return { volumeId, path: byId!, ...r };
  // A name link is only trusted when it is not another volume's by-id target.
  const claimed = new Set(
    listVolumeDevices(devDir)
      .filter((d) => d.volumeId && d.volumeId !== volumeId)
      .map((d) => d.real),
  );
  for (const p of byName) {
    const rr = resolve(p);
    if (rr && !claimed.has(rr.real)) return { volumeId, path: p, ...rr, requestedName: deviceName };
  }
  return null;
}
