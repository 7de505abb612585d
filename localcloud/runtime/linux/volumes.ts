import { existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { delay, sh, shTry } from "./sh.js";

/**
 * Volumes are sparse files under `<stateDir>/volumes`; an attachment is a loop device on the file.
 * The loop devices themselves are the record of what is attached (`losetup -j <file>`), so state
 * survives a crash of the runtime and cleanup can find them by backing-file path.
 */
const GiB = 1024 * 1024 * 1024;

export interface LoopDevice {
  name: string;
  backFile: string;
  /** Detach requested while still in use: the kernel frees it when its last user goes. */
  autoclear: boolean;
}

export async function listLoops(): Promise<LoopDevice[]> {
  const r = await shTry("losetup", ["-J", "-l", "-O", "NAME,BACK-FILE,AUTOCLEAR"]);
  if (r.code !== 0 || !r.stdout.trim()) return [];
  const parsed = JSON.parse(r.stdout) as {
    loopdevices?: Array<{ name: string; "back-file": string | null; autoclear: boolean | string | number }>;
  };
  return (parsed.loopdevices ?? []).map((d) => ({
    name: d.name,
    backFile: (d["back-file"] ?? "").replace(/ \(deleted\)$/, ""),
    autoclear: d.autoclear === true || d.autoclear === "1" || d.autoclear === 1,
  }));
}

export async function loopsOf(file: string): Promise<string[]> {
  return (await listLoops()).filter((l) => l.backFile === file).map((l) => l.name);
}

/**
 * The volume's loop device, made if needed. A loop still draining from an earlier detach (some
 * process kept the old filesystem busy) must not get a twin on the same file, where two kernels'
 * views of one filesystem would corrupt it: wait for it (bounded), then refuse like EC2's VolumeInUse.
 */
export async function ensureLoop(file: string, what: string): Promise<string> {
  for (let i = 0; ; i++) {
    const existing = (await listLoops()).filter((l) => l.backFile === file);
    const live = existing.find((l) => !l.autoclear);
    if (live) return live.name;
    if (existing.length === 0) break;
    if (i >= 100)
      throw new Error(
        `${what}: VolumeInUse: the previous attachment (${existing.map((l) => l.name).join(", ")}) is still held open by processes that used it`,
      );
    await delay(100);
  }
  return (await sh(what, "losetup", ["-f", "--show", file])).trim();
}

/** Detaches a loop device and waits (bounded) until the kernel has really let go of it; false if it is still busy. */
export async function detachLoop(device: string, what: string): Promise<boolean> {
  const r = await shTry("losetup", ["-d", device]);
  if (r.code !== 0 && !/No such device|not.*configured|No such device or address/i.test(r.stderr)) {
    if ((await listLoops()).some((l) => l.name === device)) throw new Error(`${what}: losetup -d ${device}: ${r.stderr.trim()}`);
  }
  for (let i = 0; i < 50; i++) {
    if (!(await listLoops()).some((l) => l.name === device)) return true;
    await delay(100);
  }
  // Still busy (a process keeps a file open on a lazily unmounted fs): autoclear is set, the
  // kernel frees it when the last user goes; ensureLoop refuses to re-attach until then.
  return false;
}

export async function createSparse(file: string, sizeGiB: number, what: string): Promise<void> {
  mkdirSync(join(file, ".."), { recursive: true });
  await sh(what, "truncate", ["-s", String(sizeGiB * GiB), `${file}.tmp`]);
  renameSync(`${file}.tmp`, file);
}

/** Point-in-time copy keeping holes. Written to a temp name first so a crash never leaves a torn copy under the final name. */
export async function sparseCopy(from: string, to: string, what: string, growToGiB?: number): Promise<void> {
  mkdirSync(join(to, ".."), { recursive: true });
  await sh(what, "cp", ["--sparse=always", from, `${to}.tmp`], { timeoutMs: 600_000 });
  if (growToGiB !== undefined && statSync(`${to}.tmp`).size < growToGiB * GiB) {
    await sh(what, "truncate", ["-s", String(growToGiB * GiB), `${to}.tmp`]);
  }
  renameSync(`${to}.tmp`, to);
}

/**
 * Grow a volume's backing file to `sizeGiB` (never shrinks it) and tell every loop device on it to
 * re-read its size (`losetup -c`), so an instance it is attached to sees the bigger disk at once.
 */
export async function growSparse(file: string, sizeGiB: number, what: string): Promise<void> {
  if (statSync(file).size < sizeGiB * GiB) await sh(what, "truncate", ["-s", String(sizeGiB * GiB), file]);
  for (const loop of await loopsOf(file)) await sh(`${what}: refreshing ${loop}`, "losetup", ["-c", loop]);
}

export function removeFile(file: string): void {
  rmSync(file, { force: true });
  rmSync(`${file}.tmp`, { force: true });
}

export { existsSync };
