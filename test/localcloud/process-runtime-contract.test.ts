/**
 * The process runtime (localcloud/runtime/process.ts) against the shared Runtime contract, then what
 * only it does (device link names, user-data environment, process groups, orphans of a SIGKILLed
 * localcloud). It boots real instance processes, so it lives under test/, not beside the runtime.
 */
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { byId, newInstanceId, newSnapshotId, newVolumeId, processAlive, runtimeContract, waitFor } from "./runtime-contract.js";
import { createProcessRuntime, deviceLinkNames, type ProcessRuntime } from "../../localcloud/runtime/process.js";
import type { RuntimeInstance } from "../../localcloud/runtime/types.js";

function harness() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "spotkeep-procrt-"));
  const runtime = createProcessRuntime({ stateDir: dir, graceMs: 500 });
  return {
    runtime,
    dir,
    reopen: () => createProcessRuntime({ stateDir: dir, graceMs: 500 }),
    devicePath: (instanceId: string, name: string) => path.join(runtime.devDir(instanceId), name),
    writeOnVolume: async (volumeId: string, name: string, content: string) =>
      writeFileSync(path.join(runtime.volumeDir(volumeId), name), content),
    readOnVolume: async (volumeId: string, name: string) =>
      readFile(path.join(runtime.volumeDir(volumeId), name), "utf8").catch(() => null),
  };
}

runtimeContract("process", async () => harness());

describe("process runtime specifics", () => {
  let rt: ProcessRuntime | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await rt?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
    rt = undefined;
    dir = undefined;
  });

  const make = async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "spotkeep-procrt-"));
    const made = createProcessRuntime({ stateDir: dir, graceMs: 500 });
    rt = made;
    await made.init();
    return made;
  };
  const inst = (id: string, userData: string, env: Record<string, string> = {}): RuntimeInstance => ({
    instanceId: id,
    dir: "",
    userData: Buffer.from(userData),
    privateIp: "172.31.32.10",
    subnetCidr: "172.31.32.0/20",
    imdsEndpoint: "http://127.0.0.1:4242",
    env,
  });
  const log = (id: string) => readFile(rt!.logPath(id), "utf8").catch(() => "");

  it("names device links like Nitro's by-id and the requested device, with the xvd alias", () => {
    expect(deviceLinkNames("/dev/sdf")).toEqual(["sdf", "xvdf"]);
    expect(deviceLinkNames("sdb")).toEqual(["sdb", "xvdb"]);
    expect(deviceLinkNames("/dev/xvda")).toEqual(["xvda"]);
    expect(deviceLinkNames("/dev/sda1")).toEqual(["sda1", "xvda1"]);
    expect(() => deviceLinkNames("/dev/sd f")).toThrow(/deviceName/);
    expect(() => deviceLinkNames("")).toThrow(/deviceName/);
    expect(byId("vol-0123456789abcdef0")).toBe("nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0");
  });

  it("runs user-data in the instance root with IMDS endpoint, device and root dirs, instance id and extra env", async () => {
    const rt = await make();
    const id = newInstanceId();
    const root = newVolumeId();
    await rt.createVolume({ volumeId: root, sizeGiB: 1 });
    await rt.boot(
      inst(
        id,
        'echo "imds=$AWS_EC2_METADATA_SERVICE_ENDPOINT"\necho "dev=$SPOTKEEP_DEV_DIR"\necho "root=$SPOTKEEP_ROOT_DIR"\necho "id=$SPOTKEEP_INSTANCE_ID scale=$SPOTKEEP_TIME_SCALE"\necho "cwd=$(pwd -P)"\necho hi > written-by-user-data\necho "secret=${AWS_SECRET_ACCESS_KEY:-none}"\n',
        { SPOTKEEP_TIME_SCALE: "0.01" },
      ),
      root,
    );
    const out = await waitFor("user-data output", async () => ((await log(id)).includes("secret=") ? log(id) : null));
    expect(out).toContain("imds=http://127.0.0.1:4242");
    expect(out).toContain(`dev=${rt.devDir(id)}`);
    expect(out).toContain(`root=${rt.rootDir(id)}`);
    expect(out).toContain(`id=${id} scale=0.01`);
    expect(out).toContain(`cwd=${rt.volumeDir(root)}`);
    // The host's environment (credentials) does not leak into instances.
    expect(out).toContain("secret=none");
    // The root is the root volume's folder: what user-data writes lands in the volume.
    await waitFor("root file", () => existsSync(path.join(rt.volumeDir(root), "written-by-user-data")));
    expect(readlinkSync(rt.rootDir(id))).toBe(rt.volumeDir(root));
    expect(readlinkSync(path.join(rt.devDir(id), byId(root)))).toBe(rt.volumeDir(root));
  });

  it("honours a #! interpreter line in user-data", async () => {
    const rt = await make();
    const id = newInstanceId();
    const root = newVolumeId();
    await rt.createVolume({ volumeId: root, sizeGiB: 1 });
    await rt.boot(inst(id, `#!${process.execPath}\nconsole.log("from node " + process.env.SPOTKEEP_INSTANCE_ID)\n`), root);
    await waitFor("node output", async () => (await log(id)).includes(`from node ${id}`));
  });

  it("user-data sees a volume's device link appear after attach and reads its content through it", async () => {
    const rt = await make();
    const id = newInstanceId();
    const root = newVolumeId();
    const data = newVolumeId();
    await rt.createVolume({ volumeId: root, sizeGiB: 1 });
    await rt.createVolume({ volumeId: data, sizeGiB: 1 });
    writeFileSync(path.join(rt.volumeDir(data), "hello.txt"), "from the volume");
    const link = `$SPOTKEEP_DEV_DIR/${byId(data)}`;
    await rt.boot(
      inst(
        id,
        `echo waiting\nwhile [ ! -e "${link}" ]; do sleep 0.02; done\necho "saw $(cat "${link}/hello.txt")"\necho written > "$SPOTKEEP_DEV_DIR/sdf/by-instance.txt"\n`,
      ),
      root,
    );
    await waitFor("user-data to start polling", async () => (await log(id)).includes("waiting"));
    await rt.attachVolume(id, data, "/dev/sdf");
    await waitFor("user-data to see the volume", async () => (await log(id)).includes("saw from the volume"));
    await waitFor("write through the device-name link", () => existsSync(path.join(rt.volumeDir(data), "by-instance.txt")));
    expect(readlinkSync(path.join(rt.devDir(id), "xvdf"))).toBe(rt.volumeDir(data));
  });

  it("a volume's content written through one instance's link is visible through another's after reattach; snapshots restore it", async () => {
    const rt = await make();
    const a = newInstanceId();
    const b = newInstanceId();
    const rootA = newVolumeId();
    const rootB = newVolumeId();
    const data = newVolumeId();
    for (const v of [rootA, rootB, data]) await rt.createVolume({ volumeId: v, sizeGiB: 1 });
    await rt.attachVolume(a, data, "/dev/sdf");
    await rt.boot(inst(a, `echo "row 1" >> "$SPOTKEEP_DEV_DIR/${byId(data)}/db.txt"\nsync\necho done-a\n`), rootA);
    await waitFor("instance a's write", async () => (await log(a)).includes("done-a"));
    await rt.shutdown(a, 500);
    await rt.detachVolume(a, data, "/dev/sdf");
    const snap = newSnapshotId();
    await rt.createSnapshot(snap, data);
    await rt.attachVolume(b, data, "/dev/sdf");
    await rt.boot(inst(b, `echo "b read: $(cat "$SPOTKEEP_DEV_DIR/sdf/db.txt")"\n`), rootB);
    await waitFor("instance b's read", async () => (await log(b)).includes("b read: row 1"));
    const restored = newVolumeId();
    await rt.createVolume({ volumeId: restored, sizeGiB: 1 }, snap);
    expect(readFileSync(path.join(rt.volumeDir(restored), "db.txt"), "utf8")).toBe("row 1\n");
  });

  it("snapshots keep symlinks as links and skip sockets and FIFOs instead of failing", async () => {
    const rt = await make();
    const vol = newVolumeId();
    await rt.createVolume({ volumeId: vol, sizeGiB: 1 });
    const vdir = rt.volumeDir(vol);
    mkdirSync(path.join(vdir, "sub"));
    writeFileSync(path.join(vdir, "sub", "f"), "f");
    symlinkSync("sub/f", path.join(vdir, "link"));
    execFileSync("mkfifo", [path.join(vdir, "fifo")]);
    const snap = newSnapshotId();
    await rt.createSnapshot(snap, vol);
    expect(readlinkSync(path.join(rt.snapshotDir(snap), "link"))).toBe("sub/f");
    expect(existsSync(path.join(rt.snapshotDir(snap), "fifo"))).toBe(false);
    expect(readFileSync(path.join(rt.snapshotDir(snap), "sub", "f"), "utf8")).toBe("f");
  });

  it("kills processes that left the instance's process group on shutdown", async () => {
    const rt = await make();
    const id = newInstanceId();
    const root = newVolumeId();
    await rt.createVolume({ volumeId: root, sizeGiB: 1 });
    await rt.boot(inst(id, 'setsid sleep 300 &\necho "escaped $!"\nwait\n'), root);
    const pid = await waitFor("escaped pid", async () => Number(/escaped (\d+)/.exec(await log(id))?.[1]) || null);
    await waitFor("escaped process to start", () => processAlive(pid));
    await rt.shutdown(id, 500);
    await waitFor("escaped process to die", () => !processAlive(pid), 5000);
  });

  it("a restarted runtime kills the instances of a localcloud that was SIGKILLed (orphans reparented away from us)", async () => {
    const stateDir = mkdtempSync(path.join(os.tmpdir(), "spotkeep-procrt-"));
    dir = stateDir;
    const script = path.join(stateDir, "crashy.mts");
    const moduleUrl = new URL("../../localcloud/runtime/process.js", import.meta.url).href.replace(/\.js$/, ".ts");
    writeFileSync(
      script,
      `import { createProcessRuntime } from ${JSON.stringify(moduleUrl)};
const rt = createProcessRuntime({ stateDir: ${JSON.stringify(stateDir)} });
await rt.init();
await rt.createVolume({ volumeId: "vol-0crash", sizeGiB: 1 });
await rt.boot({ instanceId: "i-0crash", dir: "", userData: Buffer.from('sleep 300 &\\necho "child $!"\\necho "leader $$"\\nwait\\n'), privateIp: "172.31.32.10", subnetCidr: "172.31.32.0/20", imdsEndpoint: "http://127.0.0.1:9", env: {} }, "vol-0crash");
console.log("booted");
setInterval(() => {}, 1000);
`,
    );
    const crashy = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["ignore", "pipe", "inherit"], detached: true });
    try {
      await waitFor(
        "the crashy localcloud to boot its instance",
        () =>
          new Promise<boolean>((r) => (crashy.stdout!.read()?.toString().includes("booted") ? r(true) : setTimeout(() => r(false), 25))),
      );
      const logFile = path.join(stateDir, "instances", "i-0crash", "console.log");
      const child = await waitFor(
        "child pid",
        () => Number(/^child (\d+)$/m.exec(existsSync(logFile) ? readFileSync(logFile, "utf8") : "")?.[1]) || null,
      );
      const leader = await waitFor("leader pid", () => Number(/^leader (\d+)$/m.exec(readFileSync(logFile, "utf8"))?.[1]) || null);
      process.kill(-crashy.pid!, "SIGKILL");
      await new Promise((r) => crashy.once("exit", r));
      // SIGKILL of the localcloud's own group does not reach the instance: it has its own group.
      expect(processAlive(child) && processAlive(leader)).toBe(true);
      const rt = createProcessRuntime({ stateDir });
      await rt.init();
      expect(processAlive(child)).toBe(false);
      expect(processAlive(leader)).toBe(false);
      expect(existsSync(path.join(stateDir, "volumes", "vol-0crash"))).toBe(false);
    } finally {
      try {
        process.kill(-crashy.pid!, "SIGKILL");
      } catch {
        // already gone
      }
      await createProcessRuntime({ stateDir }).cleanup();
    }
  });

  it("boot refuses a root volume without storage and a bad env name, and runs nothing", async () => {
    const rt = await make();
    const id = newInstanceId();
    await expect(rt.boot(inst(id, "echo hi\n"), newVolumeId())).rejects.toThrow(/root volume/);
    const root = newVolumeId();
    await rt.createVolume({ volumeId: root, sizeGiB: 1 });
    await expect(rt.boot(inst(id, "echo hi\n", { "BAD=NAME": "x" }), root)).rejects.toThrow(/env/);
    expect(rt.pgidOf(id)).toBeNull();
  });
});
