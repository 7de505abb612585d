/**
 * A data volume of a running instance changes (the coordinator's `volume-change`):
 *  - `grow`: EC2 made the volume bigger; once the block device shows at least `minSizeBytes` the
 *    mounted filesystem is grown online (ext2/3/4: `resize2fs` on the device; xfs: `xfs_growfs` on
 *    the mount point). Growing a filesystem that already fills its device changes nothing, so a
 *    repeated command is answered with the same result.
 *  - `mount`: a volume attached while the instance runs is found, formatted (only with
 *    formatIfBlank and no signature at all) and mounted exactly as a restore mounts one.
 * Directory volumes (localcloud's process runtime) have no filesystem of their own: a grow is
 * reported done with nothing to do, a mount links the folder as a restore does.
 */
import { statfsSync } from "node:fs";
import { realpathSync } from "node:fs";
import type { MessageOf, StepTiming } from "../../shared/protocol.js";
import { hostPath } from "../config.js";
import { errorText } from "../log.js";
import { mountedSource, type RestoreDeps, restoreVolume } from "../restore/restore.js";
import { runTool } from "../tool.js";
import { findVolumeDevice, type VolumeDevice } from "./devices.js";
import { resolveBinary } from "./freezer.js";

type VolumeChange = MessageOf<"volume-change">;

export interface VolumeChangedReport {
  ok: boolean;
  volumeId: string;
  device?: string;
  mountPoint?: string;
  deviceBytes?: number;
  filesystemBytes?: number;
  steps: StepTiming[];
  reason?: string;
}

export class VolumeChangeError extends Error {
  override name = "VolumeChangeError";
}

export async function changeVolume(cmd: VolumeChange, deps: RestoreDeps): Promise<VolumeChangedReport> {
  const steps: StepTiming[] = [];
  const vol = cmd.volume;
  const base = { volumeId: vol.volumeId, ...(vol.mountPoint ? { mountPoint: vol.mountPoint } : {}) };
  if (cmd.action === "mount") {
    const r = await restoreVolume(vol, { previousClean: true, deviceTimeoutMs: cmd.deviceTimeoutMs }, deps, steps);
    if (!r.ok) return { ok: false, ...base, steps, reason: r.reason };
    return { ok: true, ...base, device: r.volume.device, ...(await sizes(r.dev, vol.mountPoint, deps)), steps };
  }
  const started = deps.clock.now();
  const ms = (t: number) => Math.max(0, Math.round(deps.clock.now() - t));
  try {
    if (!vol.mountPoint) throw new VolumeChangeError(`growing ${vol.volumeId}: it has no mount point, so there is no filesystem to grow`);
    const dev = await waitFor(vol.volumeId, vol.device, cmd, deps);
    steps.push({ name: `device:${vol.volumeId}`, ok: true, ms: ms(started), detail: `${dev.path} -> ${dev.real}` });
    if (dev.kind === "directory") {
      steps.push({ name: `grow:${vol.mountPoint}`, ok: true, ms: 0, detail: "directory volume (process runtime): nothing to grow" });
      return { ok: true, ...base, device: dev.path, steps };
    }
    const mp = hostPath({ rootDir: deps.rootDir }, vol.mountPoint);
    const source = mountedSource(mp);
    if (source === null || realOf(source) !== dev.real)
      throw new VolumeChangeError(`growing ${vol.volumeId}: it is not mounted at ${vol.mountPoint} (${source ?? "nothing"} is)`);
    const t = deps.clock.now();
    const detail = await growFilesystem(dev.path, mp, vol.fsType, vol.volumeId);
    steps.push({ name: `grow:${vol.mountPoint}`, ok: true, ms: ms(t), detail });
    deps.log.info("filesystem grown", { volumeId: vol.volumeId, device: dev.path, mountPoint: vol.mountPoint });
    return { ok: true, ...base, device: dev.path, ...(await sizes(dev, vol.mountPoint, deps)), steps };
  } catch (err) {
    const reason = errorText(err);
    steps.push({ name: `grow:${vol.volumeId}`, ok: false, ms: ms(started), detail: reason });
    deps.log.error("growing a filesystem failed", { volumeId: vol.volumeId, error: reason });
    return { ok: false, ...base, steps, reason };
  }
}

function realOf(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
}

/** The volume's device once it is visible and (for a grow) at least `minSizeBytes` big; bounded by deviceTimeoutMs. */
async function waitFor(volumeId: string, device: string, cmd: VolumeChange, deps: RestoreDeps): Promise<VolumeDevice> {
  const timeoutMs = deps.scale(cmd.deviceTimeoutMs);
  const deadline = deps.clock.now() + timeoutMs;
  const pollMs = Math.max(20, deps.scale(250));
  let seen: number | null = null;
  for (;;) {
    const dev = findVolumeDevice(deps.devDir, volumeId, device);
    if (dev) {
      if (dev.kind === "directory" || cmd.minSizeBytes === undefined) return dev;
      seen = await deviceBytes(dev.path);
      if (seen !== null && seen >= cmd.minSizeBytes) return dev;
    }
    if (deps.clock.now() >= deadline)
      throw new VolumeChangeError(
        dev
          ? `waiting for ${dev.path} (${volumeId}) to show ${cmd.minSizeBytes} bytes: ${seen ?? "unknown"} after ${timeoutMs} ms`
          : `waiting for the device of ${volumeId} (${device}) in ${deps.devDir}: not there after ${timeoutMs} ms`,
      );
    await deps.clock.sleep(Math.min(pollMs, Math.max(1, deadline - deps.clock.now())));
  }
}

/** The block device's size in bytes (blockdev --getsize64); null when it cannot be read. */
async function deviceBytes(path: string): Promise<number | null> {
  const r = await runTool(resolveBinary("blockdev"), ["--getsize64", path], 10_000);
  const n = Number(r.output.trim());
  return r.code === 0 && Number.isFinite(n) ? n : null;
}

async function growFilesystem(device: string, mountPoint: string, fsType: string, volumeId: string): Promise<string> {
  if (/^ext[234]$/.test(fsType)) {
    const r = await runTool(resolveBinary("resize2fs"), [device], 30 * 60_000);
    if (r.code !== 0) throw new VolumeChangeError(`growing ${device} (${volumeId}, ${fsType}): resize2fs exit ${r.code}: ${r.output}`);
    return /Nothing to do/i.test(r.output) ? "resize2fs: already the size of the device" : "resize2fs: grown online";
  }
  if (fsType === "xfs") {
    const r = await runTool(resolveBinary("xfs_growfs"), [mountPoint], 30 * 60_000);
    if (r.code !== 0) throw new VolumeChangeError(`growing ${mountPoint} (${volumeId}, xfs): xfs_growfs exit ${r.code}: ${r.output}`);
    return "xfs_growfs: grown online";
  }
  throw new VolumeChangeError(`growing ${device} (${volumeId}): a ${fsType} filesystem cannot be grown online (ext2/3/4 and xfs can)`);
}

/** The device's and the mounted filesystem's sizes, for the report (absent when unreadable or a directory volume). */
async function sizes(
  dev: VolumeDevice,
  mountPoint: string | undefined,
  deps: RestoreDeps,
): Promise<{ deviceBytes?: number; filesystemBytes?: number }> {
  if (dev.kind === "directory") return {};
  const out: { deviceBytes?: number; filesystemBytes?: number } = {};
  const d = await deviceBytes(dev.path);
  if (d !== null) out.deviceBytes = d;
  if (mountPoint) {
    try {
      const st = statfsSync(hostPath({ rootDir: deps.rootDir }, mountPoint));
      out.filesystemBytes = st.bsize * st.blocks;
    } catch {
      /* unreadable: left out */
    }
  }
  return out;
}
