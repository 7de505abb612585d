/**
 * Restore on a replacement, driven by the coordinator's `restore-plan`:
 * for each volume, wait for its device by volume id (up to deviceTimeoutMs), check the filesystem
 * when the previous generation did not quiesce cleanly (block devices only: `e2fsck -p` /
 * `xfs_repair -n`), mount it at its mount point (creating it), verify, then run `postRestore`.
 *
 * Directory volumes (localcloud process runtime): "mounting" is a symlink from the mount point
 * (under SPOTKEEP_ROOT_DIR) to the device folder, replacing an empty directory; a non-empty
 * directory is never replaced (that would hide data) and fails the restore.
 * Every step is idempotent: a volume already mounted (or linked) at its mount point is accepted.
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmdirSync,
  statSync,
  symlinkSync,
  unlinkSync,
} from "node:fs";
import { dirname } from "node:path";
import type { Clock } from "../../shared/clock.js";
import type { Mount, MessageOf, StepTiming } from "../../shared/protocol.js";
import { errorText, type Logger } from "../log.js";
import { hostPath } from "../config.js";
import { findVolumeDevice, type VolumeDevice } from "../storage/devices.js";
import { resolveBinary } from "../storage/freezer.js";
import { runHook } from "../quiesce/hooks.js";
import { runTool } from "../tool.js";

type RestorePlan = MessageOf<"restore-plan">;

export interface RestoreDeps {
  devDir: string;
  rootDir?: string;
  clock: Clock;
  log: Logger;
  /** Model ms -> real ms. */
  scale: (modelMs: number) => number;
  hookEnv?: NodeJS.ProcessEnv;
}

export interface RestoredVolumeReport {
  volumeId: string;
  device: string;
  /** Absent: found, not mounted (the plan gave no mount point). */
  mountPoint?: string;
  checked: boolean;
  ms: number;
}

export interface RestoreReport {
  ok: boolean;
  volumes: RestoredVolumeReport[];
  steps: StepTiming[];
  reason?: string;
}

export class RestoreError extends Error {
  override name = "RestoreError";
}

export async function restoreVolumes(plan: RestorePlan, deps: RestoreDeps): Promise<RestoreReport> {
  const steps: StepTiming[] = [];
  const volumes: RestoredVolumeReport[] = [];
  for (const vol of plan.volumes) {
    const r = await restoreVolume(vol, { previousClean: plan.previousClean, deviceTimeoutMs: plan.deviceTimeoutMs }, deps, steps);
    if (!r.ok) return { ok: false, volumes, steps, reason: r.reason };
    volumes.push(r.volume);
  }
  if (plan.hooks.postRestore) {
    const step = await runHook("postRestore", plan.hooks.postRestore, {
      timeoutMs: deps.scale(plan.hooks.timeoutSeconds * 1000),
      env: deps.hookEnv,
      now: () => deps.clock.now(),
    });
    steps.push(step);
    if (!step.ok) return { ok: false, volumes, steps, reason: `postRestore hook failed: ${step.detail?.split("\n")[0] ?? ""}` };
  }
  return { ok: true, volumes, steps };
}

/**
 * One volume of a restore, and a volume attached to a running instance (`volume-change` mount):
 * wait for its device, format it when `formatIfBlank` and it carries no signature, check it when the
 * previous generation did not quiesce cleanly, mount (or link) it at its mount point. Each step is
 * appended to `steps`; a failure is returned with its reason, never thrown.
 */
export async function restoreVolume(
  vol: Mount,
  o: { previousClean: boolean; deviceTimeoutMs: number },
  deps: RestoreDeps,
  steps: StepTiming[],
): Promise<{ ok: true; volume: RestoredVolumeReport; dev: VolumeDevice } | { ok: false; reason: string }> {
  const ms = (t: number) => Math.max(0, Math.round(deps.clock.now() - t));
  const started = deps.clock.now();
  try {
    const dev = await waitForDevice(vol, deps.scale(o.deviceTimeoutMs), deps);
    steps.push({ name: `device:${vol.volumeId}`, ok: true, ms: ms(started), detail: `${dev.path} -> ${dev.real}` });
    const mountPoint = vol.mountPoint;
    if (mountPoint === undefined) {
      // An adopted volume without a mount point: attached and found, left for the workload to mount.
      deps.log.info("volume found, not mounted (no mount point given)", { volumeId: vol.volumeId, device: dev.path });
      return { ok: true, volume: { volumeId: vol.volumeId, device: dev.path, checked: false, ms: ms(started) }, dev };
    }
    let checked = false;
    if (dev.kind === "block") {
      if (vol.formatIfBlank) {
        const t = deps.clock.now();
        const detail = await formatIfBlank(dev.path, vol.fsType, vol.volumeId);
        steps.push({ name: `format:${vol.volumeId}`, ok: true, ms: ms(t), detail });
      }
      if (!o.previousClean) {
        const t = deps.clock.now();
        const detail = await checkFilesystem(dev.path, vol.fsType, mountPoint);
        checked = true;
        steps.push({ name: `fsck:${vol.volumeId}`, ok: true, ms: ms(t), detail });
      }
      const t = deps.clock.now();
      await mountBlock(dev, { ...vol, mountPoint: hostPath({ rootDir: deps.rootDir }, mountPoint) });
      steps.push({ name: `mount:${mountPoint}`, ok: true, ms: ms(t) });
    } else {
      const t = deps.clock.now();
      linkDirectory(dev, { ...vol, mountPoint }, deps.rootDir);
      steps.push({ name: `mount:${mountPoint}`, ok: true, ms: ms(t), detail: "directory volume (process runtime): linked" });
    }
    deps.log.info("volume restored", { volumeId: vol.volumeId, device: dev.path, mountPoint: mountPoint, checked });
    return { ok: true, volume: { volumeId: vol.volumeId, device: dev.path, mountPoint: mountPoint, checked, ms: ms(started) }, dev };
  } catch (err) {
    const reason = errorText(err);
    steps.push({ name: `restore:${vol.volumeId}`, ok: false, ms: ms(started), detail: reason });
    deps.log.error("restore failed", { volumeId: vol.volumeId, error: reason });
    return { ok: false, reason };
  }
}

async function waitForDevice(vol: Mount, timeoutMs: number, deps: RestoreDeps): Promise<VolumeDevice> {
  const deadline = deps.clock.now() + timeoutMs;
  const pollMs = Math.max(20, deps.scale(250));
  for (;;) {
    const dev = findVolumeDevice(deps.devDir, vol.volumeId, vol.device);
    if (dev) return dev;
    if (deps.clock.now() >= deadline) {
      throw new RestoreError(
        `waiting for the device of ${vol.volumeId} (${vol.device}) in ${deps.devDir}: not there after ${timeoutMs} ms`,
      );
    }
    await deps.clock.sleep(Math.min(pollMs, Math.max(1, deadline - deps.clock.now())));
  }
}

/**
 * mkfs a brand-new volume. "Blank" means blkid finds no signature of any kind (exit 2); anything
 * else (a filesystem, a partition table, LVM, a RAID member) is left alone.
 */
async function formatIfBlank(device: string, fsType: string, volumeId: string): Promise<string> {
  const probe = await runTool(resolveBinary("blkid"), ["-p", device], 60_000);
  if (probe.code === 0) return "has a signature; not formatted";
  if (probe.code !== 2)
    throw new RestoreError(`probing ${device} (${volumeId}) before formatting: blkid -p exit ${probe.code}: ${probe.output}`);
  const args =
    fsType === "xfs"
      ? ["-q", device]
      : /^ext[234]$/.test(fsType)
        ? ["-q", "-L", volumeId.replace(/^vol-/, "").slice(0, 16), device]
        : [device];
  const r = await runTool(resolveBinary(`mkfs.${fsType}`), args, 30 * 60_000);
  if (r.code !== 0) throw new RestoreError(`formatting ${device} (${volumeId}) as ${fsType}: mkfs.${fsType} exit ${r.code}: ${r.output}`);
  return `formatted as ${fsType}`;
}

async function checkFilesystem(device: string, fsType: string, mountPoint: string): Promise<string> {
  if (/^ext[234]$/.test(fsType)) {
    const r = await runTool(resolveBinary("e2fsck"), ["-p", device], 30 * 60_000);
    // 0 = clean, 1 = errors fixed, 2 = fixed (reboot advised for root only); 4+ = left uncorrected.
    if (r.code === null || r.code >= 4)
      throw new RestoreError(`checking ${device} (${fsType}) for ${mountPoint}: e2fsck -p exit ${r.code}: ${r.output}`);
    return `e2fsck -p exit ${r.code}`;
  }
  if (fsType === "xfs") {
    const r = await runTool(resolveBinary("xfs_repair"), ["-n", device], 30 * 60_000);
    if (r.code !== 0) throw new RestoreError(`checking ${device} (xfs) for ${mountPoint}: xfs_repair -n exit ${r.code}: ${r.output}`);
    return "xfs_repair -n exit 0";
  }
  return `no checker for ${fsType}; skipped`;
}

/** The source device of what is mounted at `path`, from /proc/self/mountinfo (null when nothing). */
export function mountedSource(path: string): string | null {
  let text: string;
  try {
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return null;
  }
  const unescapeOctal = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  let source: string | null = null;
  for (const line of text.split("\n")) {
    const parts = line.split(" ");
    if (parts.length < 10 || unescapeOctal(parts[4]!) !== path) continue;
    const sep = parts.indexOf("-");
    source = sep > 0 ? unescapeOctal(parts[sep + 2] ?? "") : "";
  }
  return source; // last entry wins: the topmost mount
}

async function mountBlock(dev: VolumeDevice, vol: Mount & { mountPoint: string }): Promise<void> {
  const mp = vol.mountPoint;
  mkdirSync(mp, { recursive: true });
  const current = mountedSource(mp);
  if (current !== null) {
    let same = false;
    try {
      same = realpathSync(current) === dev.real;
    } catch {
      same = false;
    }
    if (same) return; // already mounted (a re-run of restore)
    throw new RestoreError(`mounting ${dev.path} at ${mp}: ${current} is already mounted there`);
  }
  const r = await runTool(resolveBinary("mount"), ["-t", vol.fsType, dev.path, mp], 5 * 60_000);
  if (r.code !== 0) throw new RestoreError(`mounting ${dev.path} (${vol.fsType}) at ${mp}: ${r.output || `exit ${r.code}`}`);
  // Verify: the mount point is now a separate filesystem.
  if (statSync(mp).dev === statSync(dirname(mp)).dev)
    throw new RestoreError(`mounting ${dev.path} at ${mp}: mount succeeded but ${mp} is not a mount point`);
}

function linkDirectory(dev: VolumeDevice, vol: Mount & { mountPoint: string }, rootDir: string | undefined): void {
  const at = hostPath({ rootDir }, vol.mountPoint);
  mkdirSync(dirname(at), { recursive: true });
  let st;
  try {
    st = lstatSync(at);
  } catch {
    st = null;
  }
  if (st?.isSymbolicLink()) {
    let target: string | null;
    try {
      target = realpathSync(at);
    } catch {
      target = null;
    }
    if (target === dev.real) return;
    unlinkSync(at); // a stale link from an earlier generation (e.g. restored from the root image)
  } else if (st?.isDirectory()) {
    if (readdirSync(at).length > 0) throw new RestoreError(`linking ${vol.volumeId} at ${vol.mountPoint}: ${at} exists and is not empty`);
    rmdirSync(at);
  } else if (st) {
    throw new RestoreError(`linking ${vol.volumeId} at ${vol.mountPoint}: ${at} exists and is not a directory`);
  }
  symlinkSync(dev.real, at);
  if (!existsSync(at) || realpathSync(at) !== dev.real)
    throw new RestoreError(`linking ${vol.volumeId} at ${vol.mountPoint}: link does not resolve to ${dev.real} (${readlinkSync(at)})`);
  readdirSync(at); // verify the volume is readable through its mount point
}
