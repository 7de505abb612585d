/**
 * The `inventory` message: who this instance is (IMDS) and what storage it sees (device links,
 * plus sizes/filesystems/UUIDs/mount points from systeminformation for block devices).
 * systeminformation is best effort: a failure or a slow lsblk leaves those fields empty.
 */
import { realpathSync } from "node:fs";
import { basename } from "node:path";
import si from "systeminformation";
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
    const list = await Promise.race([si.blockDevices(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error("timeout")), timeoutMs).unref())]);
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
    enis: enis.filter((e) => e.privateIps.length > 0).map((e) => ({ mac: e.mac, interfaceId: e.interfaceId, deviceNumber: e.deviceNumber, privateIps: e.privateIps, ...(e.subnetId ? { subnetId: e.subnetId } : {}) })),
    devices,
  };
}
