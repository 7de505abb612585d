/**
 * The `inventory` message: who this instance is (IMDS) and what storage it sees (device links,
 * plus sizes/filesystems/UUIDs/mount points from systeminformation for block devices).
 * systeminformation is best effort: a failure or a slow lsblk leaves those fields empty. It is
 * loaded only when there are block devices to describe (it adds ~10 MB of RSS, and the agent's
 * budget is 50 MB); the freeze/thaw path never depends on it.
 */
import { readFileSync, realpathSync } from "node:fs";
import { basename } from "node:path";
import { safeTimeout } from "../../shared/clock.js";
import type { BlockDevice, Eni, Mount } from "../../shared/protocol.js";
import type { Imds } from "../imds/client.js";
import { hostPath } from "../config.js";
import { listVolumeDevices } from "./devices.js";

export interface InventoryBody {
  type: "inventory";
  instanceId: string;
  instanceType: string;
  availabilityZone: string;
  imageId: string;
  enis: Eni[];
  devices: BlockDevice[];
}

type SiBlock = { name: string; type: string; fsType: string; mount: string; size: number; uuid: string };

export async function blockDevicesInfo(timeoutMs = 5000): Promise<SiBlock[]> {
  try {
    const si = (await import("systeminformation")).default;
    const list = await Promise.race([
      si.blockDevices(),
      new Promise<never>((_, rej) => safeTimeout(timeoutMs, () => rej(new Error("timeout")), { unref: true })),
    ]);
    return list as SiBlock[];
  } catch {
    return [];
  }
}

export async function collectInventory(args: {
  imds: Pick<Imds, "instanceInfo" | "networkInterfaces">;
  devDir: string;
  rootDir?: string;
  mounts?: Mount[];
  blockInfo?: () => Promise<SiBlock[]>;
}): Promise<InventoryBody> {
  const [info, enis] = await Promise.all([args.imds.instanceInfo(), args.imds.networkInterfaces()]);
  const found = listVolumeDevices(args.devDir);
  const blocks = found.some((d) => d.kind === "block") ? await (args.blockInfo ?? blockDevicesInfo)() : [];
  const mounted = found.some((d) => d.kind === "block") ? mountsBySource() : new Map<string, { mountPoint: string; fsType: string }>();
  const devices: BlockDevice[] = found.map((d) => {
    const dev: BlockDevice = { device: d.path, kind: d.kind };
    if (d.volumeId) dev.volumeId = d.volumeId;
    if (d.requestedName) dev.requestedName = d.requestedName;
    if (d.kind === "block") {
      const b = blocks.find((x) => x.name === basename(d.real));
      if (b) {
        if (b.size) dev.sizeBytes = b.size;
        if (b.fsType) dev.fsType = b.fsType;
        if (b.uuid) dev.uuid = b.uuid;
        if (b.mount) dev.mountPoint = b.mount;
      }
      // lsblk may lack udev data (containers, minimal images): the kernel's mount table has the rest.
      const m = mounted.get(d.real);
      if (m) {
        dev.mountPoint ??= m.mountPoint;
        dev.fsType ??= m.fsType;
      }
    } else {
      // A directory volume is "mounted" by a link from the mount point (see restore).
      for (const m of args.mounts ?? []) {
        try {
          if (realpathSync(hostPath({ rootDir: args.rootDir }, m.mountPoint)) === d.real) dev.mountPoint = m.mountPoint;
        } catch {
          /* not linked (yet) */
        }
      }
    }
    return dev;
  });
  return {
    type: "inventory",
    instanceId: info.instanceId,
    instanceType: info.instanceType,
    availabilityZone: info.availabilityZone,
    imageId: info.imageId,
    enis: enis
      .filter((e) => e.privateIps.length > 0)
      .map((e) => ({
        mac: e.mac,
        interfaceId: e.interfaceId,
        deviceNumber: e.deviceNumber,
        privateIps: e.privateIps,
        ...(e.subnetId ? { subnetId: e.subnetId } : {}),
      })),
    devices,
  };
}

/** Resolved source device -> first mount point and fs type, from /proc/self/mountinfo. */
function mountsBySource(): Map<string, { mountPoint: string; fsType: string }> {
  const out = new Map<string, { mountPoint: string; fsType: string }>();
  let text = "";
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return out;
  }
  const unescapeOctal = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  for (const line of text.split("\n")) {
    const parts = line.split(" ");
    const sep = parts.indexOf("-");
    if (sep < 0 || !parts[4]) continue;
    const source = parts[sep + 2];
    if (!source?.startsWith("/dev/")) continue;
    let real: string;
    try {
      real = realpathSync(unescapeOctal(source));
    } catch {
      continue;
    }
    if (!out.has(real)) out.set(real, { mountPoint: unescapeOctal(parts[4]), fsType: parts[sep + 1] ?? "" });
  }
  return out;
}
