/**
 * The `inventory` message: who this instance is (IMDS), what storage it sees (device links, with
 * size, filesystem, UUID and mount point of each block device), the usage of its mounted
 * filesystems and its network interfaces.
 *
 * Sources, each best effort and bounded in time (a failure or a slow source leaves its fields
 * empty; the freeze/thaw path never depends on any of them):
 *  - block devices and filesystem usage: systeminformation's filesystem module (lsblk and df),
 *    loaded by its own path so the agent bundle carries that module and not the whole library;
 *  - a volume with a mount point and no df row (a directory volume of localcloud's process runtime,
 *    or df not answering in time): statfs of the mount point;
 *  - network interfaces: Node's os.networkInterfaces(), the list systeminformation's network module
 *    itself starts from. That module is not used: on Linux it runs several synchronous commands per
 *    interface (ip, nmcli, cat of /sys files) with no time limit, which would stall the agent's
 *    event loop (heartbeats, the freeze deadline) and could hang it, and it keeps one IPv4 address
 *    per interface where an ENI can carry several.
 */
import { realpathSync } from "node:fs";
import { statfs } from "node:fs/promises";
import { networkInterfaces as osNetworkInterfaces, type NetworkInterfaceInfo } from "node:os";
import { basename } from "node:path";
import { blockDevices, fsSize } from "systeminformation/lib/filesystem.js";
import type { BlockDevice, Eni, FilesystemUsage, Mount, NetworkInterface } from "../../shared/protocol.js";
import { MAX_FRAME_BYTES } from "../link/frames.js";
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
  filesystems: FilesystemUsage[];
  networkInterfaces: NetworkInterface[];
}

/** One block device as lsblk reports it (systeminformation's blockDevices row, the fields used). */
export type BlockInfo = { name: string; fsType: string; mount: string; size: number; uuid: string };
/** One mounted filesystem as df reports it (systeminformation's fsSize row, the fields used). */
export type FsRow = { fs: string; type: string; size: number; used: number; available: number; mount: string };
export type StatfsResult = { bsize: number; blocks: number; bfree: number; bavail: number };

/** Where the inventory's facts come from; tests hand in their own. */
export interface InventorySources {
  blockDevices(): Promise<BlockInfo[]>;
  fsSize(): Promise<FsRow[]>;
  statfs(path: string): Promise<StatfsResult>;
  networkInterfaces(): NodeJS.Dict<NetworkInterfaceInfo[]>;
}

/**
 * One call at a time: a call made while an earlier one still runs (lsblk or df stuck on a hung
 * device, given up on by the timeout) shares it, so stuck commands never pile up.
 */
function single<T>(fn: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | null = null;
  return () => {
    running ??= fn().finally(() => {
      running = null;
    });
    return running;
  };
}

export const SYSTEM_SOURCES: InventorySources = {
  blockDevices: single(() => blockDevices()),
  fsSize: single(() => fsSize()),
  statfs: (path) => statfs(path),
  networkInterfaces: osNetworkInterfaces,
};

/** How long one source may take before its fields are left empty (model ms). */
export const SOURCE_TIMEOUT_MS = 5000;
/** The protocol's bounds (shared/protocol.ts Inventory): rows beyond them are left out, strings cut. */
const MAX_FILESYSTEMS = 128;
const MAX_INTERFACES = 64;
const MAX_ADDRESSES = 64;
/** Filesystem types that are no disk's (memory, kernel views). */
const PSEUDO_FS = new Set(["tmpfs", "devtmpfs", "ramfs", "proc", "sysfs", "cgroup", "cgroup2", "overlay", "squashfs", "efivarfs"]);

type SetTimer = (ms: number, fn: () => void) => () => void;

/** `p`'s value, or `fallback` when it fails or has not settled within `ms`. */
function bounded<T>(p: () => Promise<T>, ms: number, fallback: T, setTimer: SetTimer): Promise<T> {
  return new Promise((resolve) => {
    const cancel = setTimer(ms, () => resolve(fallback));
    let started: Promise<T>;
    try {
      started = p();
    } catch {
      started = Promise.resolve(fallback);
    }
    started.then(
      (v) => {
        cancel();
        resolve(v);
      },
      () => {
        cancel();
        resolve(fallback);
      },
    );
  });
}

/** A byte count as the protocol takes it: finite and nonnegative, else 0. */
const bytes = (n: unknown): number => (typeof n === "number" && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0);
const cut = (s: unknown, max: number): string => (typeof s === "string" ? s.slice(0, max) : "");

function realOf(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
}

export async function collectInventory(args: {
  imds: Pick<Imds, "instanceInfo" | "networkInterfaces">;
  devDir: string;
  rootDir?: string;
  mounts?: Mount[];
  sources?: InventorySources;
  /** The agent's timer (model time); plain timeouts when absent. */
  setTimer?: SetTimer;
  timeoutMs?: number;
}): Promise<InventoryBody> {
  const src = args.sources ?? SYSTEM_SOURCES;
  const setTimer: SetTimer =
    args.setTimer ??
    ((ms, fn) => {
      const t = setTimeout(fn, ms);
      t.unref?.();
      return () => clearTimeout(t);
    });
  const timeoutMs = args.timeoutMs ?? SOURCE_TIMEOUT_MS;
  const [info, enis] = await Promise.all([args.imds.instanceInfo(), args.imds.networkInterfaces()]);
  const found = listVolumeDevices(args.devDir);
  const anyBlock = found.some((d) => d.kind === "block");
  const [blocks, dfRows] = await Promise.all([
    anyBlock ? bounded(() => src.blockDevices(), timeoutMs, [] as BlockInfo[], setTimer) : Promise.resolve([] as BlockInfo[]),
    bounded(() => src.fsSize(), timeoutMs, [] as FsRow[], setTimer),
  ]);

  const devices: BlockDevice[] = found.map((d) => {
    const dev: BlockDevice = { device: d.path, kind: d.kind };
    if (d.volumeId) dev.volumeId = d.volumeId;
    if (d.requestedName) dev.requestedName = d.requestedName;
    if (d.kind === "block") {
      const b = Array.isArray(blocks) ? blocks.find((x) => x?.name === basename(d.real)) : undefined;
      if (b) {
        if (bytes(b.size)) dev.sizeBytes = bytes(b.size);
        if (b.fsType) dev.fsType = cut(b.fsType, 64);
        if (b.uuid) dev.uuid = cut(b.uuid, 128);
        if (b.mount) dev.mountPoint = cut(b.mount, 4096);
      }
      // The root disk is an EBS volume too; the coordinator tells it from a data volume by this.
      const base = basename(d.real);
      const holdsRoot =
        (Array.isArray(blocks) && blocks.some((x) => x?.mount === "/" && typeof x.name === "string" && x.name.startsWith(base))) ||
        (Array.isArray(dfRows) &&
          dfRows.some((r) => r?.mount === "/" && typeof r.fs === "string" && (realOf(r.fs) ?? "").startsWith(d.real)));
      if (holdsRoot) dev.root = true;
      // lsblk may lack udev data (containers, minimal images): df's mount table has the rest.
      const row = Array.isArray(dfRows)
        ? dfRows.find((r) => typeof r?.fs === "string" && r.fs.startsWith("/") && realOf(r.fs) === d.real)
        : undefined;
      if (row) {
        dev.mountPoint ??= cut(row.mount, 4096);
        dev.fsType ??= cut(row.type, 64);
      }
    } else {
      // A directory volume is "mounted" by a link from the mount point (see restore).
      for (const m of args.mounts ?? []) {
        if (!m.mountPoint) continue;
        if (realOf(hostPath({ rootDir: args.rootDir }, m.mountPoint)) === d.real) dev.mountPoint = m.mountPoint;
      }
    }
    return dev;
  });

  const filesystems: FilesystemUsage[] = [];
  const volumeOfReal = new Map(found.filter((d) => d.volumeId).map((d) => [d.real, d.volumeId]));
  for (const r of Array.isArray(dfRows) ? dfRows : []) {
    if (filesystems.length >= MAX_FILESYSTEMS) break;
    if (typeof r?.fs !== "string" || !r.fs.startsWith("/") || typeof r.mount !== "string" || !r.mount.startsWith("/")) continue;
    if (PSEUDO_FS.has(r.type)) continue;
    const real = realOf(r.fs);
    const volumeId = real ? volumeOfReal.get(real) : undefined;
    filesystems.push({
      device: cut(r.fs, 4096),
      mountPoint: cut(r.mount, 4096),
      fsType: cut(r.type, 64),
      sizeBytes: bytes(r.size),
      usedBytes: bytes(r.used),
      availableBytes: bytes(r.available),
      ...(volumeId ? { volumeId } : {}),
    });
  }
  // A volume mounted where df gave no row (a directory volume, or df did not answer): statfs of its mount point.
  for (const dev of devices) {
    if (filesystems.length >= MAX_FILESYSTEMS) break;
    if (!dev.mountPoint || filesystems.some((f) => f.mountPoint === dev.mountPoint)) continue;
    const path = dev.kind === "directory" ? hostPath({ rootDir: args.rootDir }, dev.mountPoint) : dev.mountPoint;
    const st = await bounded(() => src.statfs(path), timeoutMs, null, setTimer);
    if (!st) continue;
    const size = bytes(st.blocks * st.bsize);
    filesystems.push({
      device: dev.device,
      mountPoint: dev.mountPoint,
      fsType: dev.fsType ?? (dev.kind === "directory" ? "directory" : ""),
      sizeBytes: size,
      usedBytes: Math.min(size, bytes((st.blocks - st.bfree) * st.bsize)),
      availableBytes: Math.min(size, bytes(st.bavail * st.bsize)),
      ...(dev.volumeId ? { volumeId: dev.volumeId } : {}),
    });
  }

  return fitFrame({
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
    filesystems,
    networkInterfaces: interfacesOf(src),
  });
}

/** What an inventory may take of the protocol's frame limit (the rest is the envelope and headroom). */
export const INVENTORY_BUDGET_BYTES = MAX_FRAME_BYTES - 16 * 1024;

/**
 * The inventory cut to fit one frame: filesystems not on a volume go first (from the end), then
 * network interfaces, then the rest of the filesystems. A frame over the limit would be refused
 * whole; a shorter list still carries the volumes the coordinator checks.
 */
export function fitFrame(inv: InventoryBody): InventoryBody {
  const size = (v: unknown) => Buffer.byteLength(JSON.stringify(v)) + 1;
  let total = size(inv);
  if (total <= INVENTORY_BUDGET_BYTES) return inv;
  const filesystems = [...inv.filesystems];
  const networkInterfaces = [...inv.networkInterfaces];
  const dropLast = <T>(list: T[], pick: (x: T) => boolean): boolean => {
    for (let i = list.length - 1; i >= 0; i--)
      if (pick(list[i]!)) {
        total -= size(list[i]);
        list.splice(i, 1);
        return true;
      }
    return false;
  };
  while (total > INVENTORY_BUDGET_BYTES) {
    if (dropLast(filesystems, (f) => !f.volumeId)) continue;
    if (dropLast(networkInterfaces, () => true)) continue;
    if (!dropLast(filesystems, () => true)) break;
  }
  return { ...inv, filesystems, networkInterfaces };
}

/** The OS's network interfaces (loopback left out): name, MAC and every address in CIDR notation. */
function interfacesOf(src: InventorySources): NetworkInterface[] {
  let all: NodeJS.Dict<NetworkInterfaceInfo[]>;
  try {
    all = src.networkInterfaces();
  } catch {
    return [];
  }
  const out: NetworkInterface[] = [];
  for (const [name, addrs] of Object.entries(all).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (out.length >= MAX_INTERFACES) break;
    if (!name || !addrs?.length || addrs.every((a) => a.internal)) continue;
    out.push({
      name: cut(name, 64),
      mac: cut(addrs[0]?.mac, 64),
      addresses: addrs.slice(0, MAX_ADDRESSES).map((a) => cut(a.cidr ?? a.address, 64)),
    });
  }
  return out;
}
