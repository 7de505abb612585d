import { spawn } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import type { Runtime, RuntimeEni, RuntimeInstance, RuntimeVolume } from "../types.js";
import { NODE_COMMANDS, hostNode } from "../no-node.js";
import { cidrContains, gatewayOf, parseCidr, parseIp } from "./cidr.js";
import { DEFAULT_RUN_DIR, HostLock } from "./hostlock.js";
import {
  createMountNs,
  destroyMountNs,
  ensurePrivateBind,
  hostMounts,
  mountsIn,
  releaseOrphanedFreeze,
  thawUnder,
  yankDevice,
} from "./mounts.js";
import {
  BRIDGE_PREFIX,
  checkNoOverlap,
  ensureBridge,
  ensureGateway,
  netnsName,
  netnsPids,
  plugEni,
  plugInstance,
  unplugEni,
  unplugInstance,
} from "./network.js";
import { signalAll, waitGone } from "./processes.js";
import { sh, shTry, type ShResult } from "./sh.js";
import { sweepLeftovers } from "./sweep.js";
import { createSparse, detachLoop, ensureLoop, growSparse, loopsOf, removeFile, sparseCopy } from "./volumes.js";

/**
 * localcloud's `linux` runtime (root only): each instance is a network namespace `sk-<id>` with
 * its private IP on the project bridge, plus a private mount namespace; volumes are sparse files
 * on loop devices, so mkfs, mount, fsfreeze and a real database behave as on EC2.
 *
 * Layout under `stateDir`:
 *   volumes/<vol-id>.img        sparse backing file of each volume
 *   snapshots/<snap-id>.img     sparse point-in-time copies
 *   ns/<instance-id>.mnt        pinned mount namespace of each instance (ns/ is a private bind mount)
 *   instances/<instance-id>/    dev/ (SPOTKEEP_DEV_DIR: by-id and device-name links to /dev/loopN),
 *                               root/ (SPOTKEEP_ROOT_DIR: the root volume is mounted here, inside
 *                               the instance's mount namespace only), user-data, pgid, console.log
 *
 * Root volume: a real ext4 filesystem. A root volume with no filesystem at boot (localcloud's base
 * AMI snapshot is blank) is formatted ext4 holding `/etc/spotkeep-first-boot`. Data volumes created
 * blank stay blank (no filesystem): formatting them is the create runbook's job.
 */
export interface LinuxRuntimeOptions {
  stateDir: string;
  /** Grace between SIGTERM and SIGKILL when cleanup() stops instances still running (default 2000). */
  graceMs?: number;
  /** Project bridge name; must start with `skbr` (default skbr0). */
  bridgeName?: string;
  /** The VPC (default 172.31.0.0/16, localcloud's default VPC). */
  vpcCidr?: string;
  /** Subnets whose gateways go on the bridge at init (more are added at boot as instances need them). */
  subnetCidrs?: string[];
  /** Host-wide lock and registry folder (default /run/spotkeep-linux). */
  runDir?: string;
  /** How long init() waits for another live linux runtime on this host to stop (default 60000). */
  lockWaitMs?: number;
  log?: (line: string) => void;
}

export interface LinuxRuntime extends Runtime {
  readonly kind: "linux";
  readonly stateDir: string;
  readonly bridgeName: string;
  /** Host address the IMDS server binds to (gateway of the first subnet): instances reach it over the bridge. */
  imdsBindAddress(): string;
  /** `nsenter` arguments that enter the instance's network and mount namespaces (append `--`, argv). */
  nsenterArgs(instanceId: string): string[];
  /** Runs a command as root inside the instance's namespaces (for tests and tooling). */
  exec(instanceId: string, argv: readonly string[], opts?: { timeoutMs?: number; input?: string }): Promise<ShResult>;
  devDir(instanceId: string): string;
  rootDir(instanceId: string): string;
}

export const DEFAULT_VPC_CIDR = "172.31.0.0/16";
export const DEFAULT_SUBNET_CIDRS = ["172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"];
const REQUIRED_TOOLS = ["ip", "losetup", "mkfs.ext4", "mount", "umount", "fsfreeze", "nsenter", "unshare", "truncate", "cp", "blkid"];

/** The address the IMDS server binds on for the linux runtime, without creating a runtime. */
export function imdsBindAddress(subnetCidr: string = DEFAULT_SUBNET_CIDRS[0]!): string {
  return gatewayOf(subnetCidr);
}

/** Why the linux runtime cannot run here, or null when it can (root and tools present). */
export function linuxRuntimeUnavailable(): string | null {
  const uid = process.getuid?.();
  if (uid !== 0) return `the linux runtime needs root (running as uid ${uid ?? "unknown"})`;
  const path = (process.env.PATH ?? "").split(delimiter).concat(["/usr/sbin", "/sbin", "/usr/bin", "/bin"]);
  const missing = REQUIRED_TOOLS.filter((t) => !path.some((d) => d && existsSync(join(d, t))));
  if (missing.length)
    return `the linux runtime needs these tools, missing: ${missing.join(", ")} (Debian: iproute2, util-linux, e2fsprogs, coreutils)`;
  return null;
}

export function createLinuxRuntime(opts: LinuxRuntimeOptions): LinuxRuntime {
  return new LinuxRuntimeImpl(opts);
}

const NVME_PREFIX = "nvme-Amazon_Elastic_Block_Store_";

/** `/dev/sdf` -> `sdf`; rejects anything that is not a plain device name (it becomes a file name). */
function deviceLinkName(deviceName: string): string {
  const name = deviceName.replace(/^\/dev\//, "");
  if (!/^[a-z][a-z0-9]{1,15}$/.test(name))
    throw new Error(`device name ${JSON.stringify(deviceName)} is not a plain device name like /dev/sdf`);
  return name;
}

function checkId(kind: string, id: string, re: RegExp): void {
  if (!re.test(id)) throw new Error(`${kind} ${JSON.stringify(id)} is not a valid ${kind}`);
}
const VOL_RE = /^vol-[0-9a-z]{1,32}$/;
const SNAP_RE = /^snap-[0-9a-z]{1,32}$/;
const INST_RE = /^i-[0-9a-z]{1,32}$/;

/** Runs calls with the same key one after another (the model may, e.g., attach and detach one volume concurrently). */
class KeyedSerial {
  private readonly tails = new Map<string, Promise<unknown>>();
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}

class LinuxRuntimeImpl implements LinuxRuntime {
  private readonly serial = new KeyedSerial();
  readonly kind = "linux" as const;
  readonly stateDir: string;
  readonly bridgeName: string;
  private readonly graceMs: number;
  private readonly vpcCidr: string;
  private readonly subnetCidrs: string[];
  private readonly lock: HostLock;
  private readonly lockWaitMs: number;
  private readonly log: (line: string) => void;
  private initialised = false;
  /** Instances booted by this runtime and not shut down yet. */
  private readonly running = new Set<string>();

  constructor(opts: LinuxRuntimeOptions) {
    if (!opts.stateDir) throw new Error("createLinuxRuntime: stateDir is required");
    this.stateDir = resolve(opts.stateDir);
    this.bridgeName = opts.bridgeName ?? `${BRIDGE_PREFIX}0`;
    if (!/^skbr[a-z0-9]{0,11}$/.test(this.bridgeName))
      throw new Error(
        `createLinuxRuntime: bridgeName ${JSON.stringify(this.bridgeName)} must be "skbr" + up to 11 lowercase letters/digits`,
      );
    this.graceMs = opts.graceMs ?? 2000;
    this.vpcCidr = opts.vpcCidr ?? DEFAULT_VPC_CIDR;
    this.subnetCidrs = opts.subnetCidrs ?? DEFAULT_SUBNET_CIDRS;
    const vpc = parseCidr(this.vpcCidr);
    for (const s of this.subnetCidrs) {
      const c = parseCidr(s);
      if (c.prefix < vpc.prefix || !cidrContains(vpc, c.base))
        throw new Error(`createLinuxRuntime: subnetCidrs: ${s} is not inside the VPC ${this.vpcCidr}`);
    }
    this.lock = new HostLock(opts.runDir ?? DEFAULT_RUN_DIR, this.stateDir);
    this.lockWaitMs = opts.lockWaitMs ?? 60_000;
    this.log = opts.log ?? (() => {});
  }

  // ---- layout ----
  private volFile(id: string): string {
    return join(this.stateDir, "volumes", `${id}.img`);
  }
  private snapFile(id: string): string {
    return join(this.stateDir, "snapshots", `${id}.img`);
  }
  private get nsDir(): string {
    return join(this.stateDir, "ns");
  }
  private nsFile(id: string): string {
    return join(this.nsDir, `${id}.mnt`);
  }
  private instanceDir(id: string): string {
    return join(this.stateDir, "instances", id);
  }
  devDir(id: string): string {
    return join(this.instanceDir(id), "dev");
  }
  rootDir(id: string): string {
    return join(this.instanceDir(id), "root");
  }
  logPath(id: string): string {
    return join(this.instanceDir(id), "console.log");
  }
  private pgidFile(id: string): string {
    return join(this.instanceDir(id), "pgid");
  }

  imdsBindAddress(): string {
    return gatewayOf(this.subnetCidrs[0] ?? DEFAULT_SUBNET_CIDRS[0]!);
  }

  nsenterArgs(instanceId: string): string[] {
    return [`--mount=${this.nsFile(instanceId)}`, `--net=/run/netns/${netnsName(instanceId)}`];
  }

  exec(instanceId: string, argv: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<ShResult> {
    return shTry("nsenter", [...this.nsenterArgs(instanceId), "--", ...argv], opts);
  }

  // ---- lifecycle ----
  async init(): Promise<void> {
    const why = linuxRuntimeUnavailable();
    if (why) throw new Error(`starting the linux runtime: ${why}`);
    await this.lock.acquire(this.lockWaitMs);
    try {
      // Holding the host lock makes every project netns/link and every registered state dir's
      // loops and mounts leftovers of a dead run: sweep them before creating anything.
      this.lock.register(this.stateDir);
      await this.sweep();
      await checkNoOverlap([this.vpcCidr]);
      for (const d of ["volumes", "snapshots", "instances", "ns"]) mkdirSync(join(this.stateDir, d), { recursive: true });
      await ensurePrivateBind(this.nsDir);
      await ensureBridge(this.bridgeName);
      for (const s of this.subnetCidrs) await ensureGateway(this.bridgeName, s);
      this.initialised = true;
      this.log(`linux runtime ready: bridge ${this.bridgeName}, IMDS bind address ${this.imdsBindAddress()}, state dir ${this.stateDir}`);
    } catch (err) {
      await this.sweep().catch(() => {});
      this.lock.release();
      throw err;
    }
  }

  async cleanup(): Promise<void> {
    for (const id of [...this.running]) await this.shutdown(id, this.graceMs).catch((e) => this.log(`cleanup: ${String(e)}`));
    const hadLock = this.lock.isHeld;
    if (!hadLock) await this.lock.acquire(this.lockWaitMs);
    try {
      await this.sweep();
    } finally {
      this.initialised = false;
      this.lock.unregister(this.stateDir);
      this.lock.release();
    }
  }

  private async sweep(): Promise<void> {
    const dirs = [...new Set([...this.lock.registeredStateDirs(), this.stateDir])];
    const report = await sweepLeftovers(dirs);
    for (const d of dirs) if (d !== this.stateDir && report.cleanDirs.includes(d)) this.lock.unregister(d);
    if (report.problems.length) throw new Error(`cleaning up the linux runtime: ${report.problems.join("; ")}`);
    this.running.clear();
  }

  private ensureInit(what: string): void {
    if (!this.initialised) throw new Error(`${what}: the linux runtime is not initialised (call init() first)`);
  }

  // ---- volumes and snapshots ----
  async createVolume(vol: RuntimeVolume, fromSnapshotId?: string): Promise<void> {
    return this.serial.run(`vol:${vol.volumeId}`, async () => {
      const what = `creating volume ${vol.volumeId}${fromSnapshotId ? ` from ${fromSnapshotId}` : ""}`;
      this.ensureInit(what);
      checkId("volume id", vol.volumeId, VOL_RE);
      if (!Number.isInteger(vol.sizeGiB) || vol.sizeGiB < 1 || vol.sizeGiB > 65536)
        throw new Error(`${what}: sizeGiB must be an integer 1..65536, got ${vol.sizeGiB}`);
      const file = this.volFile(vol.volumeId);
      if (existsSync(file)) return;
      if (!fromSnapshotId) return createSparse(file, vol.sizeGiB, what);
      checkId("snapshot id", fromSnapshotId, SNAP_RE);
      if (!existsSync(this.snapFile(fromSnapshotId))) throw new Error(`${what}: snapshot ${fromSnapshotId} has no storage`);
      await sparseCopy(this.snapFile(fromSnapshotId), file, what, vol.sizeGiB);
    });
  }

  /**
   * EC2 roots always carry a filesystem; localcloud's base AMI snapshot is a blank volume, so the
   * first boot from it formats ext4 with `/etc/spotkeep-first-boot` (which instance and volume), a
   * marker later generations find again: root persistence is proven by content.
   */
  private async formatRoot(device: string, instanceId: string, volumeId: string, what: string): Promise<void> {
    const content = mkdtempSync(join(tmpdir(), "spotkeep-rootfs-"));
    try {
      mkdirSync(join(content, "etc"));
      writeFileSync(join(content, "etc", "spotkeep-first-boot"), `instance=${instanceId} volume=${volumeId}\n`);
      await sh(`${what}: formatting blank root volume ${volumeId}`, "mkfs.ext4", ["-q", "-L", "root", "-d", content, device]);
    } finally {
      rmSync(content, { recursive: true, force: true });
    }
  }

  async deleteVolume(volumeId: string): Promise<void> {
    return this.serial.run(`vol:${volumeId}`, async () => {
      checkId("volume id", volumeId, VOL_RE);
      const file = this.volFile(volumeId);
      for (const loop of await loopsOf(file)) await this.yankEverywhere(loop, `deleting volume ${volumeId}`);
      removeFile(file);
    });
  }

  async resizeVolume(volumeId: string, sizeGiB: number): Promise<void> {
    return this.serial.run(`vol:${volumeId}`, async () => {
      const what = `growing volume ${volumeId} to ${sizeGiB} GiB`;
      this.ensureInit(what);
      checkId("volume id", volumeId, VOL_RE);
      if (!Number.isInteger(sizeGiB) || sizeGiB < 1 || sizeGiB > 65536) throw new Error(`${what}: sizeGiB must be an integer 1..65536`);
      const file = this.volFile(volumeId);
      if (!existsSync(file)) throw new Error(`${what}: no such volume`);
      await growSparse(file, sizeGiB, what);
    });
  }

  async createSnapshot(snapshotId: string, volumeId: string): Promise<void> {
    return this.serial.run(`vol:${volumeId}`, async () => {
      const what = `snapshotting ${volumeId} to ${snapshotId}`;
      this.ensureInit(what);
      checkId("snapshot id", snapshotId, SNAP_RE);
      checkId("volume id", volumeId, VOL_RE);
      if (existsSync(this.snapFile(snapshotId))) return;
      if (!existsSync(this.volFile(volumeId))) throw new Error(`${what}: no such volume`);
      // Attached and frozen: the loop device has flushed everything to the backing file, so copying it is consistent.
      await sparseCopy(this.volFile(volumeId), this.snapFile(snapshotId), what);
    });
  }

  async deleteSnapshot(snapshotId: string): Promise<void> {
    checkId("snapshot id", snapshotId, SNAP_RE);
    removeFile(this.snapFile(snapshotId));
  }

  // ---- attachments ----
  async attachVolume(instanceId: string, volumeId: string, deviceName: string): Promise<void> {
    return this.serial.run(`vol:${volumeId}`, async () => {
      const what = `attaching ${volumeId} to ${instanceId} as ${deviceName}`;
      this.ensureInit(what);
      checkId("instance id", instanceId, INST_RE);
      checkId("volume id", volumeId, VOL_RE);
      const dev = deviceLinkName(deviceName);
      if (!existsSync(this.volFile(volumeId))) throw new Error(`${what}: no such volume`);
      const loop = await ensureLoop(this.volFile(volumeId), what);
      mkdirSync(this.devDir(instanceId), { recursive: true });
      this.link(instanceId, NVME_PREFIX + volumeId.replace("-", ""), loop);
      this.link(instanceId, dev, loop);
    });
  }

  private link(instanceId: string, name: string, target: string): void {
    const path = join(this.devDir(instanceId), name);
    try {
      if (readlinkSync(path) === target) return;
    } catch {
      /* absent */
    }
    const tmp = `${path}.tmp`;
    rmSync(tmp, { force: true });
    symlinkSync(target, tmp);
    renameSync(tmp, path); // atomic: an agent polling the folder never sees a half-made link
  }

  async detachVolume(instanceId: string, volumeId: string, deviceName: string): Promise<void> {
    return this.serial.run(`vol:${volumeId}`, async () => {
      checkId("instance id", instanceId, INST_RE);
      checkId("volume id", volumeId, VOL_RE);
      const what = `detaching ${volumeId} from ${instanceId}`;
      const dev = deviceLinkName(deviceName);
      const loops = await loopsOf(this.volFile(volumeId));
      for (const loop of loops) await this.yankEverywhere(loop, what);
      // Remove the links even if the loop is already gone.
      const dir = this.devDir(instanceId);
      for (const name of [NVME_PREFIX + volumeId.replace("-", ""), dev]) {
        const p = join(dir, name);
        try {
          const t = readlinkSync(p);
          if (name === dev && loops.length && !loops.includes(t)) continue; // the name now belongs to another volume
          rmSync(p, { force: true });
        } catch {
          /* absent */
        }
      }
    });
  }

  /** As EC2 does on a forced detach, the device vanishes from every instance that mounted it; then the loop goes. */
  private async yankEverywhere(loop: string, what: string): Promise<void> {
    if (existsSync(this.nsDir)) {
      for (const f of readdirSync(this.nsDir)) {
        const nsFile = join(this.nsDir, f);
        if (f.endsWith(".mnt") && hostMounts().some((m) => m.target === nsFile)) await yankDevice([`--mount=${nsFile}`], loop);
      }
    }
    let gone = await detachLoop(loop, what);
    // Still busy: maybe a filesystem left frozen by a namespace that died (see releaseOrphanedFreeze).
    if (!gone) gone = await releaseOrphanedFreeze(loop).then(() => detachLoop(loop, what));
    if (!gone)
      this.log(`${what}: ${loop} is still held open by processes that used it; it is freed when they exit (re-attaching waits for that)`);
    // Remove links to it left in any instance's device folder.
    const instances = join(this.stateDir, "instances");
    if (existsSync(instances)) {
      for (const id of readdirSync(instances)) {
        const dir = this.devDir(id);
        if (!existsSync(dir)) continue;
        for (const name of readdirSync(dir)) {
          try {
            if (readlinkSync(join(dir, name)) === loop) rmSync(join(dir, name), { force: true });
          } catch {
            /* not a link */
          }
        }
      }
    }
  }

  // ---- network interfaces ----
  async attachEni(instanceId: string, eni: RuntimeEni): Promise<void> {
    return this.serial.run(`inst:${instanceId}`, async () => {
      const what = `attaching ${eni.eniId} to ${instanceId}`;
      this.ensureInit(what);
      checkId("instance id", instanceId, INST_RE);
      checkId("network interface id", eni.eniId, /^eni-[0-9a-z]{1,32}$/);
      if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(eni.mac)) throw new Error(`${what}: invalid MAC ${JSON.stringify(eni.mac)}`);
      if (!Number.isInteger(eni.deviceIndex) || eni.deviceIndex < 1 || eni.deviceIndex > 15)
        throw new Error(`${what}: device index ${eni.deviceIndex} is not 1..15`);
      await plugEni({ instanceId, eniId: eni.eniId, mac: eni.mac, deviceIndex: eni.deviceIndex, bridge: this.bridgeName });
    });
  }

  async detachEni(instanceId: string, eni: RuntimeEni): Promise<void> {
    return this.serial.run(`inst:${instanceId}`, async () => {
      checkId("instance id", instanceId, INST_RE);
      checkId("network interface id", eni.eniId, /^eni-[0-9a-z]{1,32}$/);
      await unplugEni(eni.eniId);
    });
  }

  // ---- instances ----
  async boot(inst: RuntimeInstance, rootVolumeId: string): Promise<void> {
    return this.serial.run(`inst:${inst.instanceId}`, async () => {
      const id = inst.instanceId;
      const what = `booting ${id}`;
      this.ensureInit(what);
      checkId("instance id", id, INST_RE);
      checkId("volume id", rootVolumeId, VOL_RE);
      let subnet;
      try {
        parseIp(inst.privateIp);
        subnet = parseCidr(inst.subnetCidr);
      } catch (err) {
        throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
      }
      if (!cidrContains(subnet, parseIp(inst.privateIp)))
        throw new Error(`${what}: private IP ${inst.privateIp} is not inside subnet ${inst.subnetCidr}`);
      if (!cidrContains(parseCidr(this.vpcCidr), subnet.base))
        throw new Error(`${what}: subnet ${inst.subnetCidr} is outside the runtime's VPC ${this.vpcCidr}`);
      if (this.running.has(id)) return;
      if (inst.dir) mkdirSync(inst.dir, { recursive: true });
      mkdirSync(this.devDir(id), { recursive: true });
      mkdirSync(this.rootDir(id), { recursive: true });
      // Non-root workloads (postgres) must traverse down to SPOTKEEP_ROOT_DIR, as they can reach / on
      // EC2: traverse-only permission on the folders above it (mkdtemp makes the state dir 0700).
      for (const d of [this.stateDir, join(this.stateDir, "instances"), this.instanceDir(id)]) chmodSync(d, 0o711);

      await ensureGateway(this.bridgeName, inst.subnetCidr);
      await plugInstance({
        instanceId: id,
        bridge: this.bridgeName,
        privateIp: inst.privateIp,
        subnetCidr: inst.subnetCidr,
        vpcCidr: this.vpcCidr,
      });
      await createMountNs(this.nsFile(id), [this.nsDir, "/run/netns"]);
      if (inst.noNode) await this.hideNode(id, what);

      // Root volume: attached (the model may already have done it, e.g. as /dev/xvda), formatted if blank, mounted inside.
      const rootFile = this.volFile(rootVolumeId);
      if (!existsSync(rootFile)) throw new Error(`${what}: root volume ${rootVolumeId} does not exist`);
      const rootLoop = await ensureLoop(rootFile, `${what}: attaching root volume ${rootVolumeId}`);
      const devs = readdirSync(this.devDir(id)).filter((n) => !n.startsWith(NVME_PREFIX));
      this.link(id, NVME_PREFIX + rootVolumeId.replace("-", ""), rootLoop);
      if (!devs.some((n) => readlinkSync(join(this.devDir(id), n)) === rootLoop)) this.link(id, "xvda", rootLoop);
      const probe = await shTry("blkid", ["-p", "-o", "value", "-s", "TYPE", rootLoop]);
      if (probe.code === 2 || !probe.stdout.trim()) await this.formatRoot(rootLoop, id, rootVolumeId, what);
      const nsArgs = [`--mount=${this.nsFile(id)}`];
      if (!(await mountsIn(nsArgs)).some((m) => m.target === this.rootDir(id))) {
        await sh(`${what}: mounting root volume`, "nsenter", [...nsArgs, "--", "mount", rootLoop, this.rootDir(id)]);
      }

      this.running.add(id);
      if (inst.userData.length === 0) return;
      const script = join(this.instanceDir(id), "user-data");
      writeFileSync(script, inst.userData, { mode: 0o700 });
      chmodSync(script, 0o700);
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("AWS_")) env[k] = v;
      Object.assign(env, inst.env, {
        AWS_EC2_METADATA_SERVICE_ENDPOINT: inst.imdsEndpoint,
        SPOTKEEP_DEV_DIR: this.devDir(id),
        SPOTKEEP_ROOT_DIR: this.rootDir(id),
        SPOTKEEP_INSTANCE_ID: id,
        HOME: "/root",
      });
      const shebang = inst.userData.subarray(0, 2).toString() === "#!";
      const logFd = openSync(this.logPath(id), "a");
      try {
        const child = spawn("nsenter", [...this.nsenterArgs(id), "--", ...(shebang ? [script] : ["/bin/bash", script])], {
          cwd: "/",
          env,
          detached: true, // own process group: shutdown signals the whole group
          stdio: ["ignore", logFd, logFd],
        });
        child.on("error", (e) => this.log(`${what}: user-data: ${String(e)}`));
        child.unref();
        if (child.pid === undefined) throw new Error(`${what}: could not start user-data`);
        writeFileSync(this.pgidFile(id), String(child.pid));
      } finally {
        closeSync(logFd);
      }
    });
  }

  /**
   * A stock (no-node) image: inside the instance's mount namespace, each host PATH folder holding
   * node, nodejs, npm, npx or corepack is overlaid (read-only) with a layer of whiteouts for those
   * names, so they are not there at all (`command -v node` fails); a node binary those names resolve
   * to elsewhere (and the running node) is covered by a bind mount of an empty, non-executable
   * file. The host and other instances are not affected (the namespace is private).
   */
  private async hideNode(id: string, what: string): Promise<void> {
    const whiteouts = join(this.stateDir, "no-node", "whiteouts");
    const empty = join(this.stateDir, "no-node", "empty");
    mkdirSync(whiteouts, { recursive: true });
    for (const name of NODE_COMMANDS) {
      // An overlay whiteout is a 0/0 character device: it hides the name in the layers below.
      if (!existsSync(join(whiteouts, name)))
        await sh(`${what}: making a whiteout for ${name}`, "mknod", [join(whiteouts, name), "c", "0", "0"]);
    }
    if (!existsSync(empty)) writeFileSync(empty, "", { mode: 0o444 });
    chmodSync(empty, 0o444);
    const nsArgs = [`--mount=${this.nsFile(id)}`];
    const mounted = new Set((await mountsIn(nsArgs)).map((m) => m.target));
    const host = await hostNode();
    for (const file of host.files) {
      if (mounted.has(file)) continue;
      await sh(`${what}: covering ${file} (the image has no node)`, "nsenter", [
        ...nsArgs,
        "--",
        "mount",
        "--bind",
        "-o",
        "ro",
        empty,
        file,
      ]);
    }
    for (const dir of host.dirs) {
      if (mounted.has(dir)) continue;
      await sh(`${what}: hiding node in ${dir} (the image has no node)`, "nsenter", [
        ...nsArgs,
        "--",
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        `lowerdir=${whiteouts}:${dir}`,
        dir,
      ]);
    }
  }

  async shutdown(instanceId: string, graceMs: number): Promise<void> {
    return this.serial.run(`inst:${instanceId}`, async () => {
      checkId("instance id", instanceId, INST_RE);
      const pgids = this.readPgid(instanceId);
      const pids = await netnsPids(netnsName(instanceId));
      signalAll(pgids, pids, "SIGTERM");
      // A stopped (hung) instance must run to act on SIGTERM, as on a real shutdown.
      signalAll(pgids, pids, "SIGCONT");
      if (!(await waitGone(pgids, pids, Math.max(0, graceMs)))) {
        // A writer blocked on a frozen filesystem cannot even die: thaw first, as the OS going down would.
        const nsFile = this.nsFile(instanceId);
        if (existsSync(nsFile)) await thawUnder([`--mount=${nsFile}`], [this.instanceDir(instanceId)]);
        const more = [...pids, ...(await netnsPids(netnsName(instanceId)))];
        signalAll(pgids, more, "SIGKILL");
        if (!(await waitGone(pgids, more, 10_000))) this.log(`shutting down ${instanceId}: some processes did not exit after SIGKILL`);
      }
      // Also thaw when every process exited at once (e.g. the agent that froze the filesystem and
      // its watchdog died on SIGTERM): a frozen ext4 holds an active reference, so once its
      // namespace is gone it lives on unmounted and frozen, pinning its loop device for good
      // (every later attach of the volume fails with VolumeInUse).
      if (existsSync(this.nsFile(instanceId)) && hostMounts().some((m) => m.target === this.nsFile(instanceId)))
        await thawUnder([`--mount=${this.nsFile(instanceId)}`], [this.instanceDir(instanceId)]);
      await destroyMountNs(this.nsFile(instanceId));
      rmSync(this.nsFile(instanceId), { force: true });
      await unplugInstance(instanceId);
      rmSync(this.pgidFile(instanceId), { force: true });
      this.running.delete(instanceId);
    });
  }

  /** SIGSTOP every process of a booted instance (its process group and its network namespace): a hung instance. */
  async pauseInstance(instanceId: string): Promise<boolean> {
    return this.signalInstance(instanceId, "SIGSTOP");
  }

  async resumeInstance(instanceId: string): Promise<boolean> {
    return this.signalInstance(instanceId, "SIGCONT");
  }

  private async signalInstance(instanceId: string, sig: "SIGSTOP" | "SIGCONT"): Promise<boolean> {
    return this.serial.run(`inst:${instanceId}`, async () => {
      checkId("instance id", instanceId, INST_RE);
      if (!this.running.has(instanceId)) return false;
      const pgids = this.readPgid(instanceId);
      const pids = await netnsPids(netnsName(instanceId));
      if (pgids.length === 0 && pids.length === 0) return false;
      signalAll(pgids, pids, sig);
      return true;
    });
  }

  private readPgid(instanceId: string): number[] {
    try {
      const n = Number(readFileSync(this.pgidFile(instanceId), "utf8").trim());
      return Number.isInteger(n) && n > 1 ? [n] : [];
    } catch {
      return [];
    }
  }
}
