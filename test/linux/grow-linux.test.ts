/**
 * Volumes that grow and join live on the linux runtime (root only: loop devices, mounts, ext4),
 * with the real agent and coordinator: `update` grows the data volume of a running instance from 1
 * to 2 GiB and `df` inside the instance shows the new size with no restart, a write acknowledged
 * (fsynced) before is still there, and a second volume added to the spec is attached, formatted
 * and mounted live. Skipped with one line without root or the runtime's tools; serialised with the
 * other linux-runtime suites by the host's linux-suite lock; localcloud's stop removes every loop
 * device, mount and namespace it made, also when the test fails.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startCoordinator, type Coordinator } from "../../coordinator/service.js";
import { type LocalCloud, startLocalCloud } from "../../localcloud/index.js";
import { linuxRuntimeUnavailable } from "../../localcloud/runtime/linux/index.js";
import { parseSpec } from "../../shared/spec.js";
import { AGENT_BUNDLE, ensureAgentBundle, until } from "../coordinator/harness.js";
import { holdLinuxSuiteLock } from "../e2e/linux-suite-lock.js";

/**
 * The filesystem the grown volume carries: ext4 where this host lets root resize a mounted ext4
 * (the EXT4_IOC_RESIZE_FS ioctl needs CAP_SYS_RESOURCE, which some containers drop), else xfs
 * (xfs_growfs needs CAP_SYS_ADMIN only); null when neither can be grown here, with the reason.
 */
function growableFs(): { fsType: "ext4" | "xfs"; note: string } | { fsType: null; note: string } {
  const caps = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"))?.[1];
  const sysResource = caps !== undefined && (BigInt(`0x${caps}`) & (1n << 24n)) !== 0n;
  if (sysResource) return { fsType: "ext4", note: "ext4 (resize2fs)" };
  const xfs = ["mkfs.xfs", "xfs_growfs"].every((t) => spawnSync("sh", ["-c", `command -v ${t}`]).status === 0);
  if (xfs) return { fsType: "xfs", note: "xfs (xfs_growfs): this host drops CAP_SYS_RESOURCE, which online ext4 resizing needs" };
  return { fsType: null, note: "this host drops CAP_SYS_RESOURCE (online ext4 resizing) and has no xfsprogs" };
}

const fs = linuxRuntimeUnavailable() === null ? growableFs() : null;
const why = linuxRuntimeUnavailable() ?? (fs?.fsType === null ? fs.note : null);
if (why) console.log(`linux-runtime volume growth skipped: ${why}`);
else console.log(`linux-runtime volume growth on ${fs?.note}`);

const SCALE = 0.05;
const GiB = 2 ** 30;

interface Exec {
  /** The instance's root (SPOTKEEP_ROOT_DIR): its mount points are below it, inside its mount namespace. */
  rootDir(instanceId: string): string;
  exec(
    instanceId: string,
    argv: readonly string[],
    opts?: { timeoutMs?: number },
  ): Promise<{ code: number | null; stdout: string; stderr: string }>;
}

describe.skipIf(why !== null)("linux runtime: update grows a mounted data volume and adds one, live", () => {
  let release: (() => void) | undefined;
  let lc: LocalCloud | undefined;
  let coord: Coordinator | undefined;
  let dir = "";

  afterAll(async () => {
    await coord?.stop();
    await lc?.stop();
    release?.();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  it("df shows 2 GiB without a restart, the earlier write survives, and /dev/sdg is mounted at /data1", { timeout: 300_000 }, async () => {
    ensureAgentBundle();
    release = await holdLinuxSuiteLock("test/linux/grow-linux.test.ts");
    dir = mkdtempSync(join(tmpdir(), "spotkeep-grow-linux-"));
    lc = await startLocalCloud({
      port: 0,
      profile: "realistic",
      timeScale: SCALE,
      runtime: "linux",
      stateDir: join(dir, "lc"),
      log: () => {},
    });
    const bridge = (lc.runtime as { imdsBindAddress?: () => string }).imdsBindAddress?.() ?? "172.31.0.1";
    coord = await startCoordinator({
      config: {
        listen: `${bridge}:0`,
        dataDir: join(dir, "coordinator"),
        ec2Endpoint: lc.endpoint,
        identityCertificate: lc.certificatePem,
        timeScale: SCALE,
        adminToken: "grow-linux-admin-token-0123456789",
        agentBundlePath: AGENT_BUNDLE,
      },
    });
    const rt = lc.runtime as unknown as Exec;
    const subnets = [...lc.world.subnets.values()].sort((a, b) => a.az.localeCompare(b.az));
    const spec = parseSpec({
      name: "grow-linux",
      launch: { imageId: lc.world.baseImageId, instanceTypes: ["m6i.large"], subnetIds: subnets.map((s) => s.id) },
      persistence: { root: false, volumes: [{ device: "/dev/sdf", sizeGiB: 1, mountPoint: "/data", fsType: fs!.fsType! }] },
    });
    const created = await coord.engine.wait((await coord.views.createInstance(spec)).workflowId);
    expect(created.error).toBeNull();
    const before = (await coord.views.getInstance("grow-linux"))!;
    const id = before.instanceId!;
    const root = rt.rootDir(id);
    const at = (p: string) => join(root, p);
    const df = async (path: string) => {
      const r = await rt.exec(id, ["df", "-B1", "--output=size", at(path)]);
      expect(r.code, r.stderr).toBe(0);
      return Number(r.stdout.trim().split("\n").pop());
    };
    expect(await df("/data")).toBeLessThan(1.01 * GiB);
    // An acknowledged write: on disk (fsynced) before the update.
    const w = await rt.exec(id, ["sh", "-c", `echo acknowledged > ${at("/data/before.txt")} && sync ${at("/data/before.txt")}`]);
    expect(w.code, w.stderr).toBe(0);

    const next = structuredClone(spec);
    next.persistence.volumes[0]!.sizeGiB = 2;
    next.persistence.volumes.push({ device: "/dev/sdg", sizeGiB: 1, type: "gp3", mountPoint: "/data1", fsType: "ext4" });
    const { workflowId } = await coord.operations.update("grow-linux", next, { recycle: false });
    const done = await coord.engine.wait(workflowId!);
    expect(done.error).toBeNull();

    const after = (await coord.views.getInstance("grow-linux"))!;
    expect(after.instanceId).toBe(id);
    expect(after.generation).toBe(before.generation);
    // The filesystem's own metadata takes a little of the 2 GiB.
    expect(await df("/data")).toBeGreaterThan(1.9 * GiB);
    expect((await rt.exec(id, ["cat", at("/data/before.txt")])).stdout).toBe("acknowledged\n");
    const mounted = await rt.exec(id, ["findmnt", "-n", "-o", "FSTYPE", at("/data1")]);
    expect(mounted.stdout.trim()).toBe("ext4");
    expect(await df("/data1")).toBeGreaterThan(0.9 * GiB);
    const w1 = await rt.exec(id, ["sh", "-c", `echo new > ${at("/data1/x")} && sync ${at("/data1/x")} && cat ${at("/data1/x")}`]);
    expect(w1.stdout).toBe("new\n");
    await until("the stored spec to list both volumes", async () => {
      const s = (await coord!.store.instances.get("grow-linux"))!.spec;
      return s.persistence.volumes.length === 2 && s.persistence.volumes[0]!.sizeGiB === 2;
    });
  });
});
