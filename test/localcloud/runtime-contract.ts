/**
 * The Runtime contract (localcloud/runtime/types.ts) as one vitest suite that every runtime runs:
 * `process` in test/localcloud/process-runtime-contract.test.ts, `linux` in test/linux/contract.suite.ts
 * (root only). Runtime-specific ways to see a device or a volume's bytes come from the harness, so the
 * suite itself stays neutral. A contract suite, so it lives under test/: product code never imports it.
 *
 * Usage:
 *   runtimeContract("process", async () => { const dir = mkdtemp…; return { runtime, dir, reopen, devicePath, writeOnVolume, readOnVolume }; });
 *   runtimeContract("linux", make, { skipReason: getuid() !== 0 ? "needs root" : undefined });
 */
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, readFileSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Runtime, RuntimeInstance } from "../../localcloud/runtime/types.js";

export interface RuntimeHarness {
  runtime: Runtime;
  /** The runtime's state dir; the suite removes it after each test. */
  dir: string;
  /** A new Runtime object over the same state dir: a localcloud restarted after a crash. */
  reopen(): Runtime;
  /** Where the device link `name` of an instance appears on the host (e.g. <state>/instances/<id>/dev/<name>). */
  devicePath(instanceId: string, name: string): string;
  /** Put a small named blob on a volume / read it back (null when absent), however the runtime stores content. */
  writeOnVolume(volumeId: string, name: string, content: string): Promise<void>;
  readOnVolume(volumeId: string, name: string): Promise<string | null>;
  /** The RuntimeInstance for a test instance (default: 172.31.32.x in 172.31.32.0/20, a dead IMDS endpoint). */
  instance?(instanceId: string, userData: string, index: number): RuntimeInstance;
  /** Release anything else the harness made. */
  close?(): Promise<void>;
}

export interface ContractOptions {
  /** When set, the suite is skipped and this reason is printed. */
  skipReason?: string;
}

const hex = (n: number) =>
  randomBytes(Math.ceil(n / 2))
    .toString("hex")
    .slice(0, n);
export const newInstanceId = () => `i-${hex(17)}`;
export const newVolumeId = () => `vol-${hex(17)}`;
export const newSnapshotId = () => `snap-${hex(17)}`;
export const byId = (volumeId: string) => `nvme-Amazon_Elastic_Block_Store_${volumeId.replace("-", "")}`;

/** Live means running or sleeping: zombies (orphans nobody reaped yet) are dead for our purpose. */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    if (existsSync("/proc/self/stat")) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/** Poll a condition (instances boot asynchronously); bounded, never a fixed sleep. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const linkExists = (p: string) => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

export function runtimeContract(name: string, make: () => Promise<RuntimeHarness>, opts: ContractOptions = {}): void {
  if (opts.skipReason) console.log(`skipping Runtime contract for ${name}: ${opts.skipReason}`);

  describe.skipIf(Boolean(opts.skipReason))(`Runtime contract: ${name}`, () => {
    let h: RuntimeHarness;
    let extra: Runtime[] = [];
    let count = 0;

    const inst = (id: string, userData = ""): RuntimeInstance =>
      h.instance?.(id, userData, count++) ?? {
        instanceId: id,
        dir: "",
        userData: Buffer.from(userData),
        privateIp: `172.31.32.${10 + (count++ % 200)}`,
        subnetCidr: "172.31.32.0/20",
        imdsEndpoint: "http://127.0.0.1:9",
        env: { SPOTKEEP_TEST: "1" },
      };

    /** A root volume + a booted instance running `userData`. */
    const bootInstance = async (userData = "", runtime = h.runtime): Promise<{ id: string; root: string }> => {
      const id = newInstanceId();
      const root = newVolumeId();
      await runtime.createVolume({ volumeId: root, sizeGiB: 1 });
      await runtime.boot(inst(id, userData), root);
      return { id, root };
    };

    const logOf = (id: string, runtime = h.runtime) => readFile(runtime.logPath(id), "utf8").catch(() => "");
    const pidsIn = async (id: string, label: string, runtime = h.runtime): Promise<number> =>
      waitFor(`${label} pid in ${id}'s log`, async () => {
        const m = new RegExp(`^${label} (\\d+)$`, "m").exec(await logOf(id, runtime));
        return m?.[1] ? Number(m[1]) : null;
      });

    beforeEach(async () => {
      h = await make();
      extra = [];
      await h.runtime.init();
    });

    afterEach(async () => {
      for (const r of [h.runtime, ...extra]) await r.cleanup().catch(() => undefined);
      await h.close?.();
      await rm(h.dir, { recursive: true, force: true });
    });

    it("exposes an attached volume under its by-id name and its device name, and removes both on detach", async () => {
      const { id } = await bootInstance();
      const vol = newVolumeId();
      await h.runtime.createVolume({ volumeId: vol, sizeGiB: 1 });
      await h.runtime.attachVolume(id, vol, "/dev/sdf");
      expect(linkExists(h.devicePath(id, byId(vol)))).toBe(true);
      expect(linkExists(h.devicePath(id, "sdf"))).toBe(true);
      await h.runtime.detachVolume(id, vol, "/dev/sdf");
      expect(linkExists(h.devicePath(id, byId(vol)))).toBe(false);
      expect(linkExists(h.devicePath(id, "sdf"))).toBe(false);
    });

    it("attach, detach, create and delete are idempotent and never throw for what is already gone", async () => {
      const { id } = await bootInstance();
      const vol = newVolumeId();
      await h.runtime.createVolume({ volumeId: vol, sizeGiB: 1 });
      await h.writeOnVolume(vol, "keep.txt", "kept");
      await h.runtime.createVolume({ volumeId: vol, sizeGiB: 1 });
      expect(await h.readOnVolume(vol, "keep.txt")).toBe("kept");
      await h.runtime.attachVolume(id, vol, "/dev/sdg");
      await h.runtime.attachVolume(id, vol, "/dev/sdg");
      expect(linkExists(h.devicePath(id, byId(vol)))).toBe(true);
      await h.runtime.detachVolume(id, vol, "/dev/sdg");
      await h.runtime.detachVolume(id, vol, "/dev/sdg");
      await h.runtime.deleteVolume(vol);
      await h.runtime.deleteVolume(vol);
      await h.runtime.deleteVolume(newVolumeId());
      await h.runtime.deleteSnapshot(newSnapshotId());
      await h.runtime.shutdown(newInstanceId(), 0);
    });

    it("keeps a volume's content across detach and attach to another instance", async () => {
      const a = await bootInstance();
      const b = await bootInstance();
      const vol = newVolumeId();
      await h.runtime.createVolume({ volumeId: vol, sizeGiB: 1 });
      await h.runtime.attachVolume(a.id, vol, "/dev/sdf");
      await h.writeOnVolume(vol, "data.txt", "acknowledged write");
      await h.runtime.detachVolume(a.id, vol, "/dev/sdf");
      await h.runtime.shutdown(a.id, 1000);
      await h.runtime.attachVolume(b.id, vol, "/dev/sdh");
      expect(linkExists(h.devicePath(b.id, byId(vol)))).toBe(true);
      expect(await h.readOnVolume(vol, "data.txt")).toBe("acknowledged write");
    });

    it("snapshots are point in time and restore into a new volume; a snapshot taken twice keeps the first copy", async () => {
      const vol = newVolumeId();
      const snap = newSnapshotId();
      await h.runtime.createVolume({ volumeId: vol, sizeGiB: 1 });
      await h.writeOnVolume(vol, "v.txt", "one");
      await h.runtime.createSnapshot(snap, vol);
      await h.writeOnVolume(vol, "v.txt", "two");
      await h.runtime.createSnapshot(snap, vol);
      const restored = newVolumeId();
      await h.runtime.createVolume({ volumeId: restored, sizeGiB: 1 }, snap);
      expect(await h.readOnVolume(restored, "v.txt")).toBe("one");
      expect(await h.readOnVolume(vol, "v.txt")).toBe("two");
      await h.runtime.deleteSnapshot(snap);
      await h.runtime.deleteSnapshot(snap);
      await expect(h.runtime.createVolume({ volumeId: newVolumeId(), sizeGiB: 1 }, snap)).rejects.toThrow(snap);
      // The restored volume is independent of the snapshot it came from.
      expect(await h.readOnVolume(restored, "v.txt")).toBe("one");
    });

    it("runs user-data with the instance's environment and logs its output", async () => {
      const { id } = await bootInstance('echo "id=$SPOTKEEP_INSTANCE_ID test=$SPOTKEEP_TEST"\n');
      await waitFor("user-data output", async () => (await logOf(id)).includes(`id=${id} test=1`));
    });

    it("shutdown stops the whole process group, children included, and is idempotent", async () => {
      const { id } = await bootInstance('sleep 300 &\necho "child $!"\necho "leader $$"\nwait\n');
      const child = await pidsIn(id, "child");
      const leader = await pidsIn(id, "leader");
      expect(processAlive(child) && processAlive(leader)).toBe(true);
      await h.runtime.shutdown(id, 2000);
      expect(processAlive(child)).toBe(false);
      expect(processAlive(leader)).toBe(false);
      await h.runtime.shutdown(id, 2000);
    });

    it("pauseInstance stops every process of an instance, resumeInstance continues them; shutdown ends a paused one", async () => {
      const { id } = await bootInstance('sleep 300 &\necho "child $!"\necho "leader $$"\nwait\n');
      const child = await pidsIn(id, "child");
      const leader = await pidsIn(id, "leader");
      const state = (pid: number) => readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
      expect(await h.runtime.pauseInstance!(id)).toBe(true);
      await waitFor("both processes to stop", () => state(child) === "T" && state(leader) === "T");
      expect(await h.runtime.resumeInstance!(id)).toBe(true);
      await waitFor("both processes to continue", () => state(child) !== "T" && state(leader) !== "T");
      expect(await h.runtime.pauseInstance!(id)).toBe(true);
      await h.runtime.shutdown(id, 2000);
      expect(processAlive(child)).toBe(false);
      expect(processAlive(leader)).toBe(false);
      expect(await h.runtime.pauseInstance!(id)).toBe(false);
      expect(await h.runtime.pauseInstance!(newInstanceId())).toBe(false);
    });

    it("shutdown escalates to SIGKILL after the grace when SIGTERM is ignored", async () => {
      const { id } = await bootInstance('trap \'\' TERM\nsleep 300 &\necho "child $!"\necho "leader $$"\nwait\n');
      const child = await pidsIn(id, "child");
      const leader = await pidsIn(id, "leader");
      await h.runtime.shutdown(id, 100);
      expect(processAlive(child)).toBe(false);
      expect(processAlive(leader)).toBe(false);
    });

    it("cleanup on a restarted runtime kills instances a crashed earlier run left behind and removes its storage", async () => {
      const vol = newVolumeId();
      await h.runtime.createVolume({ volumeId: vol, sizeGiB: 1 });
      await h.writeOnVolume(vol, "x.txt", "x");
      const { id } = await bootInstance('sleep 300 &\necho "child $!"\necho "leader $$"\nwait\n');
      const child = await pidsIn(id, "child");
      const leader = await pidsIn(id, "leader");
      // The first runtime "crashes": it is abandoned without shutdown or cleanup.
      const next = h.reopen();
      extra.push(next);
      await next.init();
      expect(processAlive(child)).toBe(false);
      expect(processAlive(leader)).toBe(false);
      expect(await h.readOnVolume(vol, "x.txt")).toBeNull();
      // The restarted runtime works normally afterwards.
      const again = await bootInstance('echo "again $$"\n', next);
      await pidsIn(again.id, "again", next);
    });

    it("refuses ids and device names that could escape its folders, changing nothing", async () => {
      const { id } = await bootInstance();
      const vol = newVolumeId();
      await h.runtime.createVolume({ volumeId: vol, sizeGiB: 1 });
      await expect(h.runtime.createVolume({ volumeId: "vol-../../etc", sizeGiB: 1 })).rejects.toThrow(/volume/i);
      await expect(h.runtime.attachVolume(id, vol, "/dev/../../x")).rejects.toThrow(/device/i);
      await expect(h.runtime.attachVolume(id, "vol-../x", "/dev/sdf")).rejects.toThrow(/volume/i);
      expect(linkExists(h.devicePath(id, byId(vol)))).toBe(false);
    });
  });
}
