import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { realClock } from "../../shared/clock.js";
import type { MessageOf } from "../../shared/protocol.js";
import { restoreVolumes, mountedSource } from "../../agent/restore/restore.js";
import { byIdName, findVolumeDevice, listVolumeDevices } from "../../agent/storage/devices.js";
import { silentLogger } from "../../agent/log.js";
import { collectInventory } from "../../agent/storage/inventory.js";
import { LOOP_PREFIX, cleanupLoops, makeLoopFs, rootSkipReason, type LoopFs } from "./loopdev.js";

const VOL = "vol-0123456789abcdef0";
const VOL2 = "vol-0fedcba9876543210";

function plan(over: Partial<MessageOf<"restore-plan">> = {}): MessageOf<"restore-plan"> {
  return {
    v: 1,
    id: "c-plan-1",
    type: "restore-plan",
    statefulInstance: "orders-db",
    generation: 2,
    previousClean: true,
    volumes: [{ volumeId: VOL, device: "/dev/sdf", mountPoint: "/var/lib/data", fsType: "ext4" }],
    hooks: { timeoutSeconds: 5 },
    deviceTimeoutMs: 2000,
    ...over,
  };
}

describe("restore of directory volumes (process runtime)", () => {
  let base: string, devDir: string, rootDir: string, volDir: string;
  const deps = () => ({ devDir, rootDir, clock: realClock, log: silentLogger, scale: (ms: number) => ms });
  beforeEach(() => {
    base = mkdtempSync(join(tmpdir(), "spotkeep-restore-"));
    devDir = join(base, "dev");
    rootDir = join(base, "root");
    volDir = join(base, "volumes", VOL);
    mkdirSync(devDir, { recursive: true });
    mkdirSync(rootDir);
    mkdirSync(volDir, { recursive: true });
    writeFileSync(join(volDir, "records"), "1\n2\n");
  });
  afterEach(() => rmSync(base, { recursive: true, force: true }));

  it("maps volume ids and device names to links, reporting directory volumes", () => {
    symlinkSync(volDir, join(devDir, byIdName(VOL)));
    symlinkSync(volDir, join(devDir, "sdf"));
    expect(listVolumeDevices(devDir)).toEqual([
      { volumeId: VOL, path: join(devDir, byIdName(VOL)), real: realpathSync(volDir), kind: "directory", requestedName: "/dev/sdf" },
    ]);
  });

  it("links the mount point to the volume, replacing an empty directory, then runs postRestore", async () => {
    symlinkSync(volDir, join(devDir, byIdName(VOL)));
    mkdirSync(join(rootDir, "var/lib/data"), { recursive: true });
    const r = await restoreVolumes(
      plan({ hooks: { postRestore: `cat ${join(rootDir, "var/lib/data/records")}`, timeoutSeconds: 5 } }),
      deps(),
    );
    expect(r.ok).toBe(true);
    expect(lstatSync(join(rootDir, "var/lib/data")).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(rootDir, "var/lib/data/records"), "utf8")).toBe("1\n2\n");
    expect(r.volumes).toEqual([
      { volumeId: VOL, device: join(devDir, byIdName(VOL)), mountPoint: "/var/lib/data", checked: false, ms: expect.any(Number) },
    ]);
    expect(r.steps.at(-1)).toMatchObject({ name: "postRestore", ok: true, detail: "exit 0\n1\n2\n" });
    // Idempotent: a second run accepts the existing link.
    expect((await restoreVolumes(plan(), deps())).ok).toBe(true);
  });

  it("waits for a device that appears after the plan arrives", async () => {
    setTimeout(() => symlinkSync(volDir, join(devDir, byIdName(VOL))), 300);
    const r = await restoreVolumes(plan(), deps());
    expect(r.ok).toBe(true);
    expect(r.steps[0]!.ms).toBeGreaterThanOrEqual(200);
  });

  it("fails with the volume id when its device never appears", async () => {
    const r = await restoreVolumes(plan({ deviceTimeoutMs: 300 }), deps());
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/waiting for the device of vol-0123456789abcdef0 \(\/dev\/sdf\) in .*: not there after 300 ms/);
  });

  it("refuses to hide a non-empty directory at the mount point", async () => {
    symlinkSync(volDir, join(devDir, byIdName(VOL)));
    mkdirSync(join(rootDir, "var/lib/data"), { recursive: true });
    writeFileSync(join(rootDir, "var/lib/data/keep"), "x");
    const r = await restoreVolumes(plan(), deps());
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/exists and is not empty/);
    expect(existsSync(join(rootDir, "var/lib/data/keep"))).toBe(true);
  });

  it("does not take another volume's device through the device-name fallback", () => {
    const other = join(base, "volumes", VOL2);
    mkdirSync(other);
    symlinkSync(other, join(devDir, byIdName(VOL2)));
    symlinkSync(other, join(devDir, "sdf"));
    expect(findVolumeDevice(devDir, VOL, "/dev/sdf")).toBeNull();
  });

  it("reports a failed postRestore hook as a failed restore", async () => {
    symlinkSync(volDir, join(devDir, byIdName(VOL)));
    const r = await restoreVolumes(plan({ hooks: { postRestore: "echo no db; exit 4", timeoutSeconds: 5 } }), deps());
    expect(r.ok).toBe(false);
    expect(r.reason).toMatch(/postRestore hook failed: exit 4/);
  });
});

const skip = rootSkipReason();
if (skip) console.log(`skipping loop-device restore tests: ${skip}`);

describe.skipIf(skip !== null)("restore of a loop-device ext4 found by volume id (root)", () => {
  let fs: LoopFs;
  let devDir: string;
  beforeAll(() => {
    cleanupLoops();
    fs = makeLoopFs("restore");
    writeFileSync(join(fs.mountPoint, "records"), "acked-1\nacked-2\n");
    execFileSync("umount", [fs.mountPoint]);
    devDir = join(fs.dir, "by-id");
    mkdirSync(devDir);
  });
  afterAll(() => cleanupLoops());

  it("checks the filesystem when the previous generation was not clean, mounts it at the mount point and verifies", async () => {
    setTimeout(() => symlinkSync(fs.device, join(devDir, byIdName(VOL))), 200); // the attach completes a bit later
    const mp = join(fs.dir, "restored", "data");
    const r = await restoreVolumes(
      plan({ previousClean: false, volumes: [{ volumeId: VOL, device: "/dev/sdf", mountPoint: mp, fsType: "ext4" }] }),
      {
        devDir,
        clock: realClock,
        log: silentLogger,
        scale: (ms) => ms,
      },
    );
    expect(r.reason).toBeUndefined();
    expect(r.ok).toBe(true);
    expect(r.volumes[0]).toMatchObject({ volumeId: VOL, checked: true, mountPoint: mp });
    expect(r.steps.map((s) => s.name)).toEqual([`device:${VOL}`, `fsck:${VOL}`, `mount:${mp}`]);
    expect(realpathSync(mountedSource(mp)!)).toBe(fs.device);
    expect(readFileSync(join(mp, "records"), "utf8")).toBe("acked-1\nacked-2\n");
    // Idempotent: already mounted there -> ok without a second mount.
    const again = await restoreVolumes(plan({ volumes: [{ volumeId: VOL, device: "/dev/sdf", mountPoint: mp, fsType: "ext4" }] }), {
      devDir,
      clock: realClock,
      log: silentLogger,
      scale: (ms) => ms,
    });
    expect(again.ok).toBe(true);

    // Inventory describes the block device through lsblk.
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
    const inv = await collectInventory({ imds, devDir });
    expect(inv.devices).toEqual([
      expect.objectContaining({ volumeId: VOL, kind: "block", fsType: "ext4", mountPoint: mp, sizeBytes: 32 * 1024 * 1024 }),
    ]);
  });
});

describe.skipIf(skip !== null)("restore formats a brand-new blank volume, never one with data (root)", () => {
  let dir: string;
  let device: string;
  let devDir: string;
  const NEW_VOL = "vol-0fedcba9876543211";
  beforeAll(() => {
    cleanupLoops();
    // A blank loop device (no filesystem), named with the shared prefix so cleanupLoops() removes it.
    dir = mkdtempSync(join(tmpdir(), `${LOOP_PREFIX}${process.pid}-blank-`));
    execFileSync("truncate", ["-s", "32M", join(dir, "disk.img")]);
    device = execFileSync("losetup", ["-f", "--show", join(dir, "disk.img")], { encoding: "utf8" }).trim();
    devDir = join(dir, "by-id");
    mkdirSync(devDir);
    symlinkSync(device, join(devDir, byIdName(NEW_VOL)));
  });
  afterAll(() => cleanupLoops());

  it("creates the spec's filesystem on a blank device, then leaves it alone on the next restore", async () => {
    const mp = join(dir, "mnt", "data");
    const vol = { volumeId: NEW_VOL, device: "/dev/sdg", mountPoint: mp, fsType: "ext4", formatIfBlank: true };
    const r = await restoreVolumes(plan({ previousClean: true, volumes: [vol] }), {
      devDir,
      clock: realClock,
      log: silentLogger,
      scale: (ms) => ms,
    });
    expect(r.reason).toBeUndefined();
    expect(r.steps.find((s) => s.name === `format:${NEW_VOL}`)?.detail).toBe("formatted as ext4");
    writeFileSync(join(mp, "precious"), "data\n");
    execFileSync("umount", [mp]);
    const again = await restoreVolumes(plan({ previousClean: true, volumes: [vol] }), {
      devDir,
      clock: realClock,
      log: silentLogger,
      scale: (ms) => ms,
    });
    expect(again.ok).toBe(true);
    expect(again.steps.find((s) => s.name === `format:${NEW_VOL}`)?.detail).toBe("has a signature; not formatted");
    expect(readFileSync(join(mp, "precious"), "utf8")).toBe("data\n");
    execFileSync("umount", [mp]);
  });
});
