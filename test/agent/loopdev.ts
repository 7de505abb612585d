/**
 * Root-only helpers: real ext4 filesystems on loop devices. Backing files are tagged with a known
 * prefix under os.tmpdir() so a crashed earlier run's loops and mounts can be found and removed
 * (thaw before unmount, unmount before detach). Only our own loops are ever touched.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const LOOP_PREFIX = "spotkeep-agent-test-loop-";

export function rootSkipReason(): string | null {
  if (process.getuid?.() !== 0) return "not root";
  for (const tool of ["losetup", "mkfs.ext4", "fsfreeze", "mount", "umount", "e2fsck"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `${tool} not installed`;
  }
  if (!existsSync("/dev/loop-control")) return "no /dev/loop-control";
  return null;
}

export interface LoopFs {
  dir: string;
  image: string;
  device: string;
  mountPoint: string;
}

/** A fresh ext4 on a loop device, mounted at <dir>/mnt (mount=false leaves it unmounted). */
export function makeLoopFs(label: string, mount = true): LoopFs {
  // The pid in the name lets a parallel test file tell its live loops from a crashed run's.
  const dir = mkdtempSync(join(tmpdir(), `${LOOP_PREFIX}${process.pid}-${label}-`));
  const image = join(dir, "disk.img");
  execFileSync("truncate", ["-s", "32M", image]);
  const device = execFileSync("losetup", ["-f", "--show", image], { encoding: "utf8" }).trim();
  execFileSync("mkfs.ext4", ["-q", "-F", device]);
  const mountPoint = join(dir, "mnt");
  if (mount) {
    mkdirSync(mountPoint);
    execFileSync("mount", [device, mountPoint]);
  }
  return { dir, image, device, mountPoint };
}

function mountsUnder(prefixDir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4];
    if (mp?.startsWith(prefixDir)) out.push(mp.replace(/\\040/g, " "));
  }
  return out.sort((a, b) => b.length - a.length);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Thaw + unmount + detach + delete what carries our prefix and belongs to this process or a dead one. */
export function cleanupLoops(): void {
  const base = tmpdir();
  const ours = (p: string) => {
    const m = new RegExp(`^${join(base, LOOP_PREFIX).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(\\d+)-`).exec(p);
    if (!m) return false;
    const pid = Number(m[1]);
    return pid === process.pid || !alive(pid);
  };
  for (const mp of mountsUnder(join(base, LOOP_PREFIX)).filter(ours)) {
    spawnSync("fsfreeze", ["-u", mp]); // thaw first: unmounting a frozen fs hangs
    spawnSync("umount", ["-l", mp]);
  }
  const list = spawnSync("losetup", ["-a", "-O", "NAME,BACK-FILE", "-n", "-l"], { encoding: "utf8" }).stdout ?? "";
  for (const line of list.split("\n")) {
    const [name, ...rest] = line.trim().split(/\s+/);
    const back = rest.join(" ").replace(/ \(deleted\)$/, "");
    if (name && back && ours(back)) spawnSync("losetup", ["-d", name]);
  }
  for (const entry of readdirSync(base)) {
    if (entry.startsWith(LOOP_PREFIX) && ours(join(base, entry))) rmSync(join(base, entry), { recursive: true, force: true });
  }
}
