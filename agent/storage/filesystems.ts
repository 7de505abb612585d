/**
 * Decides what may be frozen. Invariants:
 *  - never `/` (nor anything on the root filesystem: a mount point that is not a separate
 *    filesystem would freeze its parent);
 *  - never the filesystem holding the agent's state dir or the file its stdout/log goes to
 *    (the agent would block on its own write and never thaw: a deadlock);
 *  - in localcloud's process runtime (SPOTKEEP_ROOT_DIR set) volumes are folders: nothing to
 *    freeze; they are flushed with `sync` and reported as "directory volume (process runtime)".
 */
import { fstatSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

export const DIRECTORY_VOLUME_REASON = "directory volume (process runtime)";

export type FsClass =
  | { kind: "directory"; path: string }
  | { kind: "filesystem"; path: string }
  | { kind: "refused"; path: string; reason: string };

/** Device ids the agent must never freeze: /, its state dir, its log file. */
export function protectedDevices(stateDir: string): Map<number, string> {
  const out = new Map<number, string>();
  const add = (p: string, why: string) => {
    try {
      const dev = statSync(p).dev;
      if (!out.has(dev)) out.set(dev, why);
    } catch {
      /* missing: nothing to protect */
    }
  };
  add("/", "the root filesystem");
  add(stateDir, "holds the agent's state");
  for (const fd of [1, 2]) {
    try {
      const st = fstatSync(fd);
      if (st.isFile() && !out.has(st.dev)) out.set(st.dev, "holds the agent's log");
    } catch {
      /* closed */
    }
  }
  return out;
}

export function classifyMount(mountPoint: string, opts: { rootDir?: string; protectedDevs: Map<number, string> }): FsClass {
  // With SPOTKEEP_ROOT_DIR (localcloud runtimes) instance paths live under it. There a mount point
  // that is not a separate filesystem is a directory volume (process runtime: a symlink to a
  // folder); a real mount under it (linux runtime: a loop device) is frozen like on EC2.
  const path = opts.rootDir ? join(opts.rootDir, mountPoint) : mountPoint;
  if (mountPoint === "/") return { kind: "refused", path, reason: "never freezes / (the agent runs on it)" };
  let dev: number;
  let parentDev: number;
  try {
    dev = statSync(path).dev;
    parentDev = statSync(dirname(path)).dev;
  } catch (err) {
    if (opts.rootDir) return { kind: "directory", path };
    return { kind: "refused", path, reason: `not found: ${(err as Error).message}` };
  }
  if (dev === parentDev) {
    if (opts.rootDir) return { kind: "directory", path };
    return { kind: "refused", path, reason: "not a mount point (freezing it would freeze its parent filesystem)" };
  }
  const why = opts.protectedDevs.get(dev);
  if (why) return { kind: "refused", path, reason: `never frozen: ${why}` };
  return { kind: "filesystem", path };
}
