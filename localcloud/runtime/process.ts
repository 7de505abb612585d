/**
 * localcloud's `process` runtime (no root): an instance is a folder plus a bash process group;
 * a volume is a folder exposed to instances as links in their device folder.
 *
 * Layout under `stateDir` (the runtime owns it; `RuntimeInstance.dir` is not used, ids decide):
 *   volumes/<vol-id>/             the volume's content
 *   snapshots/<snap-id>/          point-in-time copy of a volume's content
 *   instances/<i-id>/root         symlink to volumes/<root-vol-id>/ — the instance's root
 *                                 filesystem (SPOTKEEP_ROOT_DIR; user-data's working directory).
 *                                 Being a link, the root's content lives in the root volume and
 *                                 survives the instance when DeleteOnTermination=false.
 *   instances/<i-id>/dev/         SPOTKEEP_DEV_DIR: `nvme-Amazon_Elastic_Block_Store_vol<hex>` and
 *                                 the device name (`sdf`, plus the `xvdf` alias) -> volume folder;
 *                                 boot adds the root volume's by-id link
 *   instances/<i-id>/net/         SPOTKEEP_NET_DIR: one folder per hot-plugged ENI, named as its
 *                                 link (`eth1`), like /sys/class/net: `address` (the ENI's MAC),
 *                                 `device-number`, `ipv4` (address/prefix the VPC gives it); the
 *                                 instance's OS writes `configured` and `operstate` when it brings
 *                                 the link up, detach removes the folder
 *   instances/<i-id>/user-data    the decoded user-data, as run
 *   instances/<i-id>/pgid         process group of the running user-data (for crash cleanup)
 *   instances/<i-id>/console.log  stdout + stderr of everything the instance runs
 *   no-node-bin/                  symlinks to every executable of the host's PATH except node,
 *                                 nodejs, npm, npx and corepack: the whole PATH of an instance
 *                                 of a no-node (stock) image; built at its first boot
 *
 * Every spawned process carries SPOTKEEP_LOCALCLOUD_RUNTIME=<stateDir> in its environment. A
 * localcloud killed with SIGKILL leaves its instances running; the next `cleanup()` (called by
 * `init()`) kills the groups recorded in pgid files (only if a member still carries the marker,
 * since pids get reused) and any marked process that left its group, then removes the layout.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { constants as fsc } from "node:fs";
import { cp, lstat, mkdir, open, readFile, readdir, readlink, rename, rm, symlink, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Runtime, RuntimeEni, RuntimeInstance, RuntimeVolume } from "./types.js";
import { groupIsOurs, killMarked, signalGroup, waitGroupGone } from "./process/procs.js";
import { buildNoNodeBin } from "./no-node.js";

export interface ProcessRuntimeOptions {
  stateDir: string;
  /** Grace for instances still running when cleanup() stops them (default 2000 ms). */
  graceMs?: number;
  log?: (line: string) => void;
}

export interface ProcessRuntime extends Runtime {
  readonly kind: "process";
  readonly stateDir: string;
  instanceDir(instanceId: string): string;
  /** SPOTKEEP_DEV_DIR of the instance. */
  devDir(instanceId: string): string;
  /** SPOTKEEP_NET_DIR of the instance: its hot-plugged ENIs. */
  netDir(instanceId: string): string;
  /** SPOTKEEP_ROOT_DIR of the instance (a link to its root volume's folder). */
  rootDir(instanceId: string): string;
  volumeDir(volumeId: string): string;
  snapshotDir(snapshotId: string): string;
  /** Process group of the instance's user-data while it runs, else null. */
  pgidOf(instanceId: string): number | null;
}

export const MARKER_ENV = "SPOTKEEP_LOCALCLOUD_RUNTIME";
const BY_ID_PREFIX = "nvme-Amazon_Elastic_Block_Store_";
const ID_RE = { instance: /^i-[0-9a-zA-Z]+$/, volume: /^vol-[0-9a-zA-Z]+$/, snapshot: /^snap-[0-9a-zA-Z]+$/ };
/** After SIGKILL a group dies within milliseconds; this only bounds a pathological wait. */
const KILL_WAIT_MS = 5_000;

/** The link name an ENI gets in an instance: `eth<device index>`, as Amazon Linux names them. */
export function eniLinkName(eni: Pick<RuntimeEni, "eniId" | "mac" | "deviceIndex">): string {
  if (!Number.isInteger(eni.deviceIndex) || eni.deviceIndex < 1 || eni.deviceIndex > 15)
    throw new Error(`attaching ${eni.eniId}: device index ${eni.deviceIndex} is not 1..15`);
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(eni.mac)) throw new Error(`attaching ${eni.eniId}: invalid MAC ${JSON.stringify(eni.mac)}`);
  return `eth${eni.deviceIndex}`;
}

/** `/dev/sdf` -> [`sdf`, `xvdf`]; `xvdb` -> [`xvdb`]; bad names -> error naming the field. */
export function deviceLinkNames(deviceName: string): string[] {
  const m = /^(?:\/dev\/)?([a-z][a-z0-9]{1,15})$/.exec(deviceName);
  if (!m?.[1]) throw new Error(`deviceName: invalid device name ${JSON.stringify(deviceName)}`);
  const base = m[1];
  return base.startsWith("sd") ? [base, `xv${base.slice(1)}`] : [base];
}

/** The Nitro by-id name: `nvme-Amazon_Elastic_Block_Store_vol0123…` (volume id without the dash). */
export const byIdName = (volumeId: string) => `${BY_ID_PREFIX}${volumeId.replace("-", "")}`;

function checkId(kind: keyof typeof ID_RE, id: string): void {
  if (!ID_RE[kind].test(id)) throw new Error(`${kind}Id: invalid ${kind} id ${JSON.stringify(id)}`);
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** Point `link` at `target` atomically (a reader never sees it missing or half-made). */
async function linkAtomically(target: string, link: string): Promise<void> {
  try {
    if ((await readlink(link)) === target) return;
  } catch {
    // missing or not a link: (re)create
  }
  const tmp = `${link}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  await symlink(target, tmp);
  await rename(tmp, link);
}

async function unlinkIfPointsTo(link: string, target: string): Promise<void> {
  try {
    if ((await readlink(link)) === target) await unlink(link);
  } catch {
    // already gone
  }
}

/** Copy a folder tree keeping symlinks as links; sockets and FIFOs (unsnapshottable) are skipped. */
async function copyTree(from: string, to: string): Promise<void> {
  await cp(from, to, {
    recursive: true,
    verbatimSymlinks: true,
    preserveTimestamps: true,
    errorOnExist: false,
    force: true,
    filter: async (src) => {
      const st = await lstat(src).catch(() => null);
      return st !== null && !st.isSocket() && !st.isFIFO();
    },
  });
}

interface Running {
  child: ChildProcess;
  pgid: number;
  exited: Promise<void>;
}

export function createProcessRuntime(opts: ProcessRuntimeOptions): ProcessRuntime {
  const stateDir = path.resolve(opts.stateDir);
  const graceMs = opts.graceMs ?? 2000;
  const log = opts.log ?? (() => {});
  const marker = `${MARKER_ENV}=${stateDir}`;
  const dirs = {
    volumes: path.join(stateDir, "volumes"),
    snapshots: path.join(stateDir, "snapshots"),
    instances: path.join(stateDir, "instances"),
    noNodeBin: path.join(stateDir, "no-node-bin"),
  };
  const running = new Map<string, Running>();
  /** The no-node PATH folder, built once per runtime object (cleanup removes it and forgets it). */
  let noNodeBin: Promise<string> | null = null;
  const noNodePath = (): Promise<string> => {
    noNodeBin ??= buildNoNodeBin(dirs.noNodeBin).then(
      (n) => {
        log(`localcloud: linked ${n} host commands (no node) into ${dirs.noNodeBin} for stock-image instances`);
        return dirs.noNodeBin;
      },
      (err: unknown) => {
        noNodeBin = null;
        throw new Error(`building the no-node PATH folder ${dirs.noNodeBin}`, { cause: err });
      },
    );
    return noNodeBin;
  };
  /** Serialises operations on one id so concurrent duplicate calls have the effect of one. */
  const locks = new Map<string, Promise<unknown>>();
  const serial = <T>(key: string, fn: () => Promise<T>): Promise<T> => {
    const prev = locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    locks.set(key, settled);
    void settled.then(() => {
      if (locks.get(key) === settled) locks.delete(key);
    });
    return next;
  };

  const instanceDir = (id: string) => path.join(dirs.instances, id);
  const devDir = (id: string) => path.join(instanceDir(id), "dev");
  const rootDir = (id: string) => path.join(instanceDir(id), "root");
  const netDir = (id: string) => path.join(instanceDir(id), "net");
  const volumeDir = (id: string) => path.join(dirs.volumes, id);
  const snapshotDir = (id: string) => path.join(dirs.snapshots, id);
  const pgidFile = (id: string) => path.join(instanceDir(id), "pgid");
  const logPath = (id: string) => path.join(instanceDir(id), "console.log");

  /** Signal a booted instance's process group; false when it has none. */
  const signalRunning = (instanceId: string, signal: NodeJS.Signals): boolean => {
    checkId("instance", instanceId);
    const r = running.get(instanceId);
    if (!r) return false;
    signalGroup(r.pgid, signal);
    return true;
  };

  /** Stop a group: SIGTERM, SIGKILL after the grace, then kill marked stragglers that left it. */
  const stopGroup = async (instanceId: string, pgid: number, grace: number, exited?: Promise<void>): Promise<void> => {
    signalGroup(pgid, "SIGTERM");
    // A group stopped through the control API handles its SIGTERM only once continued.
    signalGroup(pgid, "SIGCONT");
    const gone = await waitGroupGone(pgid, Math.max(0, grace));
    if (!gone) {
      log(`localcloud: ${instanceId} did not stop within ${grace} ms of SIGTERM; sending SIGKILL`);
      signalGroup(pgid, "SIGKILL");
      if (!(await waitGroupGone(pgid, KILL_WAIT_MS)))
        throw new Error(`shutting down ${instanceId}: process group ${pgid} survived SIGKILL`);
    }
    if (killMarked(marker, `SPOTKEEP_INSTANCE_ID=${instanceId}`) > 0)
      log(`localcloud: killed processes of ${instanceId} that had left its process group`);
    if (exited) await exited;
  };

  const shutdown = (instanceId: string, grace: number): Promise<void> =>
    serial(`instance:${instanceId}`, async () => {
      checkId("instance", instanceId);
      const r = running.get(instanceId);
      if (r) {
        await stopGroup(instanceId, r.pgid, grace, r.exited);
        running.delete(instanceId);
      } else {
        // Started by an earlier runtime object over the same state dir (localcloud restarted).
        const pgid = await readPgid(instanceId);
        if (pgid !== null && groupIsOurs(pgid, marker)) await stopGroup(instanceId, pgid, grace);
      }
      await rm(pgidFile(instanceId), { force: true });
    });

  const readPgid = async (instanceId: string): Promise<number | null> => {
    try {
      const n = Number((await readFile(pgidFile(instanceId), "utf8")).trim());
      return Number.isInteger(n) && n > 1 ? n : null;
    } catch {
      return null;
    }
  };

  const boot = (inst: RuntimeInstance, rootVolumeId: string): Promise<void> =>
    serial(`instance:${inst.instanceId}`, async () => {
      const id = inst.instanceId;
      checkId("instance", id);
      checkId("volume", rootVolumeId);
      if (running.has(id)) return; // already booted: idempotent
      for (const key of Object.keys(inst.env)) {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`booting ${id}: env: invalid variable name ${JSON.stringify(key)}`);
      }
      if (!(await exists(volumeDir(rootVolumeId))))
        throw new Error(`booting ${id}: root volume ${rootVolumeId} has no storage (createVolume first)`);
      await mkdir(devDir(id), { recursive: true });
      await linkAtomically(volumeDir(rootVolumeId), rootDir(id));
      // On Nitro the root volume is an NVMe device too, with its by-id link (its device name
      // link comes from attachVolume if the model makes one).
      await linkAtomically(volumeDir(rootVolumeId), path.join(devDir(id), byIdName(rootVolumeId)));
      const logFile = await open(logPath(id), fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o644);
      try {
        await logFile.write(`[localcloud] ${new Date().toISOString()} booting ${id}\n`);
        if (inst.userData.length === 0) return;
        const script = path.join(instanceDir(id), "user-data");
        await writeFile(script, inst.userData, { mode: 0o755 });
        // A stock image's processes get only the host's commands without node; others get the
        // host's node first on their PATH, as an image with node installed would.
        const PATH = inst.noNode
          ? await noNodePath()
          : [path.dirname(process.execPath), process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin"].join(path.delimiter);
        const env: Record<string, string> = {
          PATH,
          HOME: process.env.HOME ?? rootDir(id),
          LANG: process.env.LANG ?? "C.UTF-8",
          ...inst.env,
          AWS_EC2_METADATA_SERVICE_ENDPOINT: inst.imdsEndpoint,
          SPOTKEEP_DEV_DIR: devDir(id),
          SPOTKEEP_NET_DIR: netDir(id),
          SPOTKEEP_ROOT_DIR: rootDir(id),
          SPOTKEEP_INSTANCE_ID: id,
          [MARKER_ENV]: stateDir,
        };
        // A `#!` line is honoured (bash execs the file, the kernel picks the interpreter);
        // anything else runs as a bash script, like cloud-init's default.
        const args = inst.userData.subarray(0, 2).toString("latin1") === "#!" ? ["-c", 'exec "$0"', script] : [script];
        const child = spawn("bash", args, { cwd: rootDir(id), env, detached: true, stdio: ["ignore", logFile.fd, logFile.fd] });
        const pid = await new Promise<number>((resolve, reject) => {
          child.once("spawn", () => resolve(child.pid!));
          child.once("error", (err) => reject(new Error(`booting ${id}: spawning bash`, { cause: err })));
        });
        const exited = new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
        });
        running.set(id, { child, pgid: pid, exited });
        await writeFile(pgidFile(id), `${pid}\n`);
        // The leader may exit while its children live on in the group: the entry stays until shutdown.
        void exited.then(() => log(`localcloud: ${id} user-data exited (${child.exitCode ?? child.signalCode})`));
      } finally {
        await logFile.close();
      }
    });

  const cleanup = async (): Promise<void> => {
    // This object's own instances first (normal stop), with the configured grace.
    await Promise.allSettled([...running.keys()].map((id) => shutdown(id, graceMs)));
    // Leftovers of an earlier run in the same state dir.
    const ids = await readdir(dirs.instances).catch(() => [] as string[]);
    for (const id of ids) {
      const pgid = await readPgid(id);
      if (pgid !== null && groupIsOurs(pgid, marker)) {
        log(`localcloud: killing leftover process group ${pgid} of ${id} from an earlier run`);
        signalGroup(pgid, "SIGKILL");
        await waitGroupGone(pgid, KILL_WAIT_MS);
      }
    }
    if (killMarked(marker) > 0) log(`localcloud: killed leftover instance processes that had left their groups`);
    await Promise.all(Object.values(dirs).map((d) => rm(d, { recursive: true, force: true })));
    noNodeBin = null;
  };

  return {
    kind: "process",
    stateDir,
    instanceDir,
    devDir,
    netDir,
    rootDir,
    volumeDir,
    snapshotDir,
    pgidOf: (id) => running.get(id)?.pgid ?? null,
    logPath: (id) => {
      checkId("instance", id);
      return logPath(id);
    },

    init: async () => {
      await cleanup();
      await Promise.all(Object.values(dirs).map((d) => mkdir(d, { recursive: true })));
    },

    createVolume: (vol: RuntimeVolume, fromSnapshotId?: string) =>
      serial(`volume:${vol.volumeId}`, async () => {
        checkId("volume", vol.volumeId);
        if (fromSnapshotId !== undefined) checkId("snapshot", fromSnapshotId);
        const dest = volumeDir(vol.volumeId);
        if (await exists(dest)) return; // idempotent: never overwrite a volume's content
        await mkdir(dirs.volumes, { recursive: true });
        // Build under a temporary name and rename: a crash mid-copy never leaves a half volume
        // that a retried createVolume would then accept as done.
        const tmp = `${dest}.creating`;
        await rm(tmp, { recursive: true, force: true });
        if (fromSnapshotId !== undefined) {
          const src = snapshotDir(fromSnapshotId);
          if (!(await exists(src))) throw new Error(`creating ${vol.volumeId} from ${fromSnapshotId}: snapshot has no storage`);
          await copyTree(src, tmp).catch((err: unknown) => {
            throw new Error(`creating ${vol.volumeId} from ${fromSnapshotId}: copying content`, { cause: err });
          });
        } else {
          await mkdir(tmp);
        }
        await rename(tmp, dest);
      }),

    deleteVolume: (volumeId) =>
      serial(`volume:${volumeId}`, async () => {
        checkId("volume", volumeId);
        await rm(volumeDir(volumeId), { recursive: true, force: true });
      }),

    createSnapshot: (snapshotId, volumeId) =>
      serial(`snapshot:${snapshotId}`, async () => {
        checkId("snapshot", snapshotId);
        checkId("volume", volumeId);
        const dest = snapshotDir(snapshotId);
        if (await exists(dest)) return;
        const src = volumeDir(volumeId);
        if (!(await exists(src))) throw new Error(`snapshotting ${volumeId} into ${snapshotId}: volume has no storage`);
        await mkdir(dirs.snapshots, { recursive: true });
        const tmp = `${dest}.creating`;
        await rm(tmp, { recursive: true, force: true });
        await copyTree(src, tmp).catch((err: unknown) => {
          throw new Error(`snapshotting ${volumeId} into ${snapshotId}: copying content`, { cause: err });
        });
        await rename(tmp, dest);
      }),

    deleteSnapshot: (snapshotId) =>
      serial(`snapshot:${snapshotId}`, async () => {
        checkId("snapshot", snapshotId);
        await rm(snapshotDir(snapshotId), { recursive: true, force: true });
      }),

    attachVolume: (instanceId, volumeId, deviceName) =>
      serial(`instance:${instanceId}`, async () => {
        checkId("instance", instanceId);
        checkId("volume", volumeId);
        const names = deviceLinkNames(deviceName);
        const target = volumeDir(volumeId);
        if (!(await exists(target))) throw new Error(`attaching ${volumeId} to ${instanceId}: volume has no storage`);
        await mkdir(devDir(instanceId), { recursive: true });
        // Device-name links first, the by-id link last: an agent polling for the by-id link (as on
        // Nitro, where it waits for /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol…) then
        // finds every name in place.
        for (const name of names) await linkAtomically(target, path.join(devDir(instanceId), name));
        await linkAtomically(target, path.join(devDir(instanceId), byIdName(volumeId)));
      }),

    detachVolume: (instanceId, volumeId, deviceName) =>
      serial(`instance:${instanceId}`, async () => {
        checkId("instance", instanceId);
        checkId("volume", volumeId);
        const target = volumeDir(volumeId);
        await unlinkIfPointsTo(path.join(devDir(instanceId), byIdName(volumeId)), target);
        for (const name of deviceLinkNames(deviceName)) await unlinkIfPointsTo(path.join(devDir(instanceId), name), target);
      }),

    attachEni: (instanceId, eni) =>
      serial(`instance:${instanceId}`, async () => {
        checkId("instance", instanceId);
        const link = path.join(netDir(instanceId), eniLinkName(eni));
        // Idempotent: the same ENI already plugged keeps whatever the OS configured on it.
        if ((await readFile(path.join(link, "address"), "utf8").catch(() => "")).trim() === eni.mac) return;
        await rm(link, { recursive: true, force: true });
        const tmp = `${link}.plugging`;
        await rm(tmp, { recursive: true, force: true });
        await mkdir(tmp, { recursive: true });
        const prefix = eni.subnetCidr.split("/")[1];
        await writeFile(path.join(tmp, "device-number"), `${eni.deviceIndex}\n`);
        await writeFile(path.join(tmp, "ipv4"), `${eni.privateIp}/${prefix}\n`);
        await writeFile(path.join(tmp, "operstate"), "down\n");
        await writeFile(path.join(tmp, "address"), `${eni.mac}\n`);
        // The link appears whole or not at all: an agent scanning the folder never sees half of it.
        await rename(tmp, link);
      }),

    detachEni: (instanceId, eni) =>
      serial(`instance:${instanceId}`, async () => {
        checkId("instance", instanceId);
        const link = path.join(netDir(instanceId), eniLinkName(eni));
        const mac = (await readFile(path.join(link, "address"), "utf8").catch(() => "")).trim();
        if (mac === eni.mac) await rm(link, { recursive: true, force: true });
      }),

    boot,
    shutdown,
    pauseInstance: async (instanceId) => signalRunning(instanceId, "SIGSTOP"),
    resumeInstance: async (instanceId) => signalRunning(instanceId, "SIGCONT"),
    cleanup,
  };
}
