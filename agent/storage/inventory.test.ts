import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import type { NetworkInterfaceInfo } from "node:os";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeMessage, parseMessage } from "../../shared/protocol.js";
import { collectInventory, type FsRow, type InventorySources } from "./inventory.js";

const VOL = "vol-0123456789abcdef0";
const imds = {
  instanceInfo: async () => ({
    instanceId: "i-0123456789abcdef0",
    instanceType: "m5.large",
    availabilityZone: "us-east-1a",
    imageId: "ami-0a887e401f7654935",
    privateIp: "10.0.1.10",
    lifecycle: "spot",
  }),
  networkInterfaces: async () => [],
};

const nic = (address: string, cidr: string, internal = false): NetworkInterfaceInfo =>
  ({
    address,
    cidr,
    internal,
    mac: internal ? "00:00:00:00:00:00" : "0e:49:61:0f:c3:11",
    family: "IPv4",
    netmask: "",
  }) as NetworkInterfaceInfo;

function sources(o: Partial<InventorySources> = {}): InventorySources {
  return {
    blockDevices: async () => [],
    fsSize: async () => [],
    statfs: async () => ({ bsize: 4096, blocks: 1000, bfree: 50, bavail: 40 }),
    networkInterfaces: () => ({
      lo: [nic("127.0.0.1", "127.0.0.1/8", true)],
      ens5: [nic("10.0.1.10", "10.0.1.10/24"), nic("10.0.1.11", "10.0.1.11/24")],
    }),
    ...o,
  };
}

describe("inventory collection", () => {
  let dir: string;
  let devDir: string;
  let rootDir: string;
  beforeEach(() => {
    // localcloud's process runtime: the volume is a folder behind a by-id link, mounted by a link from its mount point.
    dir = mkdtempSync(join(tmpdir(), "spotkeep-inventory-"));
    devDir = join(dir, "dev");
    rootDir = join(dir, "root");
    mkdirSync(join(dir, "vol"));
    mkdirSync(devDir);
    mkdirSync(rootDir);
    symlinkSync(join(dir, "vol"), join(devDir, `nvme-Amazon_Elastic_Block_Store_${VOL.replace("-", "")}`));
    symlinkSync(join(dir, "vol"), join(rootDir, "data"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const mounts = [{ volumeId: VOL, device: "/dev/sdf", mountPoint: "/data", fsType: "ext4" }];

  it("reports a directory volume's usage from statfs of its mount point, disk filesystems from df, and interfaces with every address", async () => {
    const df: FsRow[] = [
      { fs: "/dev/vda", type: "ext4", size: 8e9, used: 2e9, available: 6e9, mount: "/" },
      { fs: "tmpfs", type: "tmpfs", size: 1e9, used: 0, available: 1e9, mount: "/run" },
      { fs: "/dev/zram0", type: "tmpfs", size: 1e9, used: 0, available: 1e9, mount: "/tmp" },
    ];
    const statfsAsked: string[] = [];
    const inv = await collectInventory({
      imds,
      devDir,
      rootDir,
      mounts,
      sources: sources({
        fsSize: async () => df,
        statfs: async (p) => {
          statfsAsked.push(p);
          return { bsize: 4096, blocks: 1000, bfree: 50, bavail: 40 };
        },
      }),
    });
    expect(statfsAsked).toEqual([join(rootDir, "data")]);
    expect(inv.devices).toEqual([expect.objectContaining({ volumeId: VOL, kind: "directory", mountPoint: "/data" })]);
    expect(inv.filesystems).toEqual([
      { device: "/dev/vda", mountPoint: "/", fsType: "ext4", sizeBytes: 8e9, usedBytes: 2e9, availableBytes: 6e9 },
      {
        device: inv.devices[0]!.device,
        volumeId: VOL,
        mountPoint: "/data",
        fsType: "directory",
        sizeBytes: 4096 * 1000,
        usedBytes: 4096 * 950,
        availableBytes: 4096 * 40,
      },
    ]);
    expect(inv.networkInterfaces).toEqual([{ name: "ens5", mac: "0e:49:61:0f:c3:11", addresses: ["10.0.1.10/24", "10.0.1.11/24"] }]);
    // What the agent sends is what the coordinator accepts.
    expect(parseMessage(encodeMessage({ v: 1, id: "a1", ...inv }, "from-agent")).ok).toBe(true);
  });

  it("leaves out what a failing, hanging or misbehaving source would have given, and still validates", async () => {
    const timers: Array<() => void> = [];
    const setTimer = (_ms: number, fn: () => void) => {
      timers.push(fn);
      return () => undefined;
    };
    const pending = collectInventory({
      imds,
      devDir,
      rootDir,
      mounts,
      setTimer,
      sources: sources({
        fsSize: () => new Promise<FsRow[]>(() => undefined),
        statfs: async () => ({ bsize: 4096, blocks: Number.NaN, bfree: -5, bavail: Number.POSITIVE_INFINITY }),
        networkInterfaces: () => {
          throw new Error("no interfaces");
        },
      }),
    });
    // df never answers: its timer (model time) gives up on it.
    while (timers.length === 0) await new Promise((r) => setImmediate(r));
    for (const fire of timers.splice(0)) fire();
    const inv = await pending;
    expect(inv.filesystems).toEqual([
      {
        device: inv.devices[0]!.device,
        volumeId: VOL,
        mountPoint: "/data",
        fsType: "directory",
        sizeBytes: 0,
        usedBytes: 0,
        availableBytes: 0,
      },
    ]);
    expect(inv.networkInterfaces).toEqual([]);
    expect(parseMessage(encodeMessage({ v: 1, id: "a1", ...inv }, "from-agent")).ok).toBe(true);
  });

  it("cuts rows and strings to the protocol's bounds and the whole to one frame", async () => {
    const df: FsRow[] = Array.from({ length: 300 }, (_, i) => ({
      fs: `/dev/${"x".repeat(5000)}${i}`,
      type: "e".repeat(100),
      size: 10,
      used: 5,
      available: 5,
      mount: `/m${i}`,
    }));
    const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`eth${"n".repeat(80)}${i}`, [nic("10.0.0.1", "10.0.0.1/24")]]));
    const inv = await collectInventory({ imds, devDir, sources: sources({ fsSize: async () => df, networkInterfaces: () => many }) });
    // 128 rows of 4 KiB paths would overflow the frame: the agent sends as many as fit.
    expect(inv.filesystems.length).toBeGreaterThan(10);
    expect(inv.filesystems.length).toBeLessThan(128);
    expect(inv.filesystems.every((f) => f.device.length <= 4096 && f.fsType.length <= 64)).toBe(true);
    // Filesystems not on a volume are dropped before interfaces.
    expect(inv.networkInterfaces).toHaveLength(64);
    expect(inv.networkInterfaces.every((n) => n.name.length <= 64)).toBe(true);
    expect(parseMessage(encodeMessage({ v: 1, id: "a1", ...inv }, "from-agent")).ok).toBe(true);
  });
});

describe("an inventory that fits", () => {
  it("keeps up to 64 interfaces when the frame has room", async () => {
    const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`eth${i}`, [nic("10.0.0.1", "10.0.0.1/24")]]));
    const inv = await collectInventory({ imds, devDir: "/nonexistent", sources: sources({ networkInterfaces: () => many }) });
    expect(inv.networkInterfaces).toHaveLength(64);
  });
});
