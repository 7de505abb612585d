import { describe, expect, it } from "vitest";
import type { DataVolume } from "./db/store.js";
import { type InventoryData, readInventory, usedRatio } from "./inventory.js";

const GiB = 1024 ** 3;
const vol = (device: string, volumeId: string | null, mountPoint: string | null): DataVolume => ({
  instance: "db",
  device,
  mountPoint,
  fsType: "ext4",
  volumeId,
  availabilityZone: "us-east-1a",
  latestSnapshotId: null,
});
const base: InventoryData = {
  type: "inventory",
  instanceId: "i-0123456789abcdef0",
  instanceType: "m5.large",
  availabilityZone: "us-east-1a",
  imageId: "ami-0123456789abcdef0",
  enis: [],
  devices: [],
};
const fs = (mountPoint: string, used: number, available: number, volumeId?: string) => ({
  device: "/dev/nvme1n1",
  mountPoint,
  fsType: "ext4",
  sizeBytes: used + available,
  usedBytes: used,
  availableBytes: available,
  ...(volumeId ? { volumeId } : {}),
});

describe("reading an inventory", () => {
  it("computes use as df does (reserved blocks are neither used nor available) and refuses nothing-sized filesystems", () => {
    expect(usedRatio({ usedBytes: 9, availableBytes: 1 })).toBe(0.9);
    expect(usedRatio({ usedBytes: 0, availableBytes: 0 })).toBeNull();
  });

  it("finds a kept volume's filesystem by volume id, or by the device's mount point from an older agent, and flags 90% and more", () => {
    const volumes = [vol("/dev/sdf", "vol-1", "/data"), vol("/dev/sdg", "vol-2", "/logs")];
    const r = readInventory(
      {
        ...base,
        devices: [
          { device: "/dev/disk/by-id/a", volumeId: "vol-1", mountPoint: "/data", kind: "block" },
          { device: "/dev/disk/by-id/b", volumeId: "vol-2", mountPoint: "/logs", kind: "block" },
        ],
        filesystems: [fs("/data", 9 * GiB, 1 * GiB, "vol-1"), fs("/logs", 8 * GiB, 2 * GiB)],
      },
      volumes,
      null,
    );
    expect(r.usage).toEqual([
      { device: "/dev/sdf", ratio: 0.9 },
      { device: "/dev/sdg", ratio: 0.8 },
    ]);
    expect(r.conditions.map((c) => c.key)).toEqual(["usage:/dev/sdf"]);
  });

  it("names attached volumes the instance does not keep, except the root disk (flagged by the agent or by its device name)", () => {
    const r = readInventory(
      {
        ...base,
        devices: [
          { device: "/dev/nvme0n1", volumeId: "vol-root", root: true, kind: "block" },
          { device: "/dev/xvda", volumeId: "vol-root2", requestedName: "/dev/xvda", kind: "block" },
          { device: "/dev/nvme2n1", volumeId: "vol-x", kind: "block" },
          { device: "/dev/nvme2n1", volumeId: "vol-x", kind: "block" },
          { device: "/dev/nvme1n1", volumeId: "vol-1", mountPoint: "/data", kind: "block" },
        ],
      },
      [vol("/dev/sdf", "vol-1", "/data")],
      "/dev/xvda",
    );
    expect(r.conditions).toEqual([
      { key: "extra:vol-x", kind: "volume-unexpected", message: "vol-x is attached (/dev/nvme2n1) but the spec does not list it" },
    ]);
  });

  it("flags a kept volume not visible, not mounted or mounted elsewhere; one the spec leaves unmounted is not checked", () => {
    const volumes = [
      vol("/dev/sdf", "vol-1", "/data"),
      vol("/dev/sdg", "vol-2", "/logs"),
      vol("/dev/sdh", "vol-3", "/x"),
      vol("/dev/sdi", "vol-4", null),
    ];
    const r = readInventory(
      {
        ...base,
        devices: [
          { device: "/dev/nvme1n1", volumeId: "vol-1", kind: "block" },
          { device: "/dev/nvme2n1", volumeId: "vol-2", mountPoint: "/elsewhere\u001b[31m", kind: "block" },
        ],
      },
      volumes,
      null,
    );
    expect(r.conditions.map((c) => [c.key, c.message])).toEqual([
      ["mount:/dev/sdf", "/dev/sdf (vol-1) is not mounted; the spec mounts it at /data"],
      ["mount:/dev/sdg", "/dev/sdg (vol-2) is mounted at /elsewhere?[31m; the spec mounts it at /logs"],
      ["mount:/dev/sdh", "/dev/sdh (vol-3) is not attached as the agent sees it; the spec mounts it at /x"],
    ]);
  });

  it("checks nothing of a volume not yet created (no volume id)", () => {
    expect(readInventory(base, [vol("/dev/sdf", null, "/data")], null)).toEqual({ conditions: [], usage: [] });
  });
});
