/**
 * The `inventory` message: who this instance is (IMDS) and what storage it sees (device links,
 * plus sizes/filesystems/UUIDs/mount points from `lsblk -bP` for block devices). lsblk is best
 * effort: a failure or a slow lsblk leaves those fields empty; the freeze/thaw path never depends
 * on it. (It is run directly rather than through systeminformation, which runs the same command
 * but costs the agent ~10 MiB of RSS of its 50 MiB budget once loaded.)
 */
import { execFile } from "node:child_process";
import { readFileSync, realpathSync } from "node:fs";
import { basename } from "node:path";
import { resolveBinary } from "./freezer.js";
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

export type BlockInfo = { name: string; type: string; fsType: string; mount: string; size: number; uuid: string };

/** Block devices as lsblk sees them; [] when lsblk fails, is missing or takes longer than timeoutMs. */
export function blockDevicesInfo(timeoutMs = 5000): Promise<BlockInfo[]> {
  return new Promise((resolve) => {
    try {
      execFile(
        resolveBinary("lsblk"),
        ["-bPo", "NAME,TYPE,SIZE,FSTYPE,MOUNTPOINT,UUID"],
        { timeout: timeoutMs, maxBuffer: 1024 * 1024, killSignal: "SIGKILL" },
        (err, stdout) => resolve(err ? [] : parseLsblkPairs(stdout)),
      );
    } catch {
      resolve([]);
    }
  });
}

/** Parse `lsblk -P` output: one device per line, KEY="value" pairs, special bytes as \xHH. */
export function parseLsblkPairs(text: string): BlockInfo[] {
  const out: BlockInfo[] = [];
  const unhex = (v: string) => v.replace(/\\x([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  for (const line of text.split("\n")) {
    const f: Record<string, string> = {};
    for (const m of line.matchAll(/([A-Z:-]+)="((?:[^"\\]|\\.)*)"/g)) f[m[1]!] = unhex(m[2]!);
    if (!f.NAME) continue;
    out.push({
      name: basename(f.NAME),
      type: f.TYPE ?? "",
      fsType: f.FSTYPE ?? "",
      mount: f.MOUNTPOINT ?? "",
      size: Number(f.SIZE) || 0,
      uuid: f.UUID ?? "",
    });
  }
  return out;
}

export async function collectInventory(args: {
  imds: Pick<Imds, "instanceInfo" | "networkInterfaces">;
  devDir: string;
  rootDir?: string;
  mounts?: Mount[];
  blockInfo?: () => Promise<BlockInfo[]>;
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
        if (!m.mountPoint) continue;
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
