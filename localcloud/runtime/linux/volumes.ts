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
}

export async function listLoops(): Promise<LoopDevice[]> {
  const r = await shTry("losetup", ["-J", "-l", "-O", "NAME,BACK-FILE"]);
  if (r.code !== 0 || !r.stdout.trim()) return [];
  const parsed = JSON.parse(r.stdout) as { loopdevices?: Array<{ name: string; "back-file": string | null }> };
  return (parsed.loopdevices ?? []).map((d) => ({ name: d.name, backFile: (d["back-file"] ?? "").replace(/ \(deleted\)$/, "") }));
}

export async function loopsOf(file: string): Promise<string[]> {
  return (await listLoops()).filter((l) => l.backFile === file).map((l) => l.name);
}

export async function ensureLoop(file: string, what: string): Promise<string> {
  const existing = await loopsOf(file);
  if (existing[0]) return existing[0];
  return (await sh(what, "losetup", ["-f", "--show", file])).trim();
}

/** Detaches a loop device and waits (bounded) until the kernel has really let go of it. */
export async function detachLoop(device: string, what: string): Promise<void> {
  const r = await shTry("losetup", ["-d", device]);
  if (r.code !== 0 && !/No such device|not.*configured|No such device or address/i.test(r.stderr)) {
    if ((await listLoops()).some((l) => l.name === device)) throw new Error(`${what}: losetup -d ${device}: ${r.stderr.trim()}`);
  }
  for (let i = 0; i < 50; i++) {
    if (!(await listLoops()).some((l) => l.name === device)) return;
    await delay(100);
  }
  // Still busy (a process keeps a file open on a lazily unmounted fs): autoclear is set, the
  // kernel frees it when the last user goes.
}

export async function createSparse(file: string, sizeGiB: number, what: string): Promise<void> {
  mkdirSync(join(file, ".."), { recursive: true });
  await sh(what, "truncate", ["-s", String(sizeGiB * GiB), file + ".tmp"]);
  renameSync(file + ".tmp", file);
}

/** Point-in-time copy keeping holes. Written to a temp name first so a crash never leaves a torn copy under the final name. */
export async function sparseCopy(from: string, to: string, what: string, growToGiB?: number): Promise<void> {
  mkdirSync(join(to, ".."), { recursive: true });
  await sh(what, "cp", ["--sparse=always", from, to + ".tmp"], { timeoutMs: 600_000 });
  if (growToGiB !== undefined && statSync(to + ".tmp").size < growToGiB * GiB) {
    await sh(what, "truncate", ["-s", String(growToGiB * GiB), to + ".tmp"]);
  }
  renameSync(to + ".tmp", to);
}

export function removeFile(file: string): void {
  rmSync(file, { force: true });
  rmSync(file + ".tmp", { force: true });
}

export { existsSync };
