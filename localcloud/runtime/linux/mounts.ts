import { readFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { sh, shTry } from "./sh.js";

/**
 * Mount namespaces. Each instance has a persistent private mount namespace, pinned by a bind mount
 * of its nsfs file under `<stateDir>/ns/<id>.mnt` (like `ip netns` pins network namespaces), so
 * the runtime can enter it at any time (mount the root volume, lazy-unmount on detach, thaw) even
 * when no instance process is running. `<stateDir>/ns` is itself a private bind mount: the kernel
 * only allows pinning a mount namespace on a mount that does not propagate into it.
 */

export interface MountEntry {
  source: string;
  target: string;
  fstype: string;
}

/** /proc/mounts escapes space, tab, newline and backslash as octal. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMounts(text: string): MountEntry[] {
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [source = "", target = "", fstype = ""] = line.split(" ");
      return { source: unescapeMountField(source), target: unescapeMountField(target), fstype };
    });
}

export function hostMounts(): MountEntry[] {
  return parseMounts(readFileSync("/proc/self/mounts", "utf8"));
}

/** Mounts as seen inside a namespace given as `--mount=<file>` or `--target <pid>` args for nsenter. */
export async function mountsIn(nsArgs: readonly string[]): Promise<MountEntry[]> {
  const r = await shTry("nsenter", [...nsArgs, "--", "cat", "/proc/self/mounts"]);
  return r.code === 0 ? parseMounts(r.stdout) : [];
}

export function isUnder(path: string, dir: string): boolean {
  const d = dir.endsWith("/") ? dir : `${dir}/`;
  return path === dir || path.startsWith(d);
}

/** Makes `dir` a private bind mount of itself (idempotent). */
export async function ensurePrivateBind(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  if (!hostMounts().some((m) => m.target === dir)) {
    await sh(`bind-mounting ${dir}`, "mount", ["--bind", dir, dir]);
  }
  await sh(`making ${dir} private`, "mount", ["--make-private", dir]);
}

/**
 * Creates a private mount namespace pinned at `nsFile` (idempotent), then unmounts inside it the
 * copies of other namespaces' pins (`hidePaths`: our ns dir and /run/netns), so this namespace
 * holds no references to other instances' namespaces and they die when their own pins go.
 */
export async function createMountNs(nsFile: string, hidePaths: readonly string[]): Promise<void> {
  if (hostMounts().some((m) => m.target === nsFile)) return;
  if (!existsSync(nsFile)) writeFileSync(nsFile, "");
  await sh(`creating mount namespace ${nsFile}`, "unshare", [`--mount=${nsFile}`, "--propagation", "private", "true"]);
  for (const p of hidePaths) {
    const inside = await mountsIn([`--mount=${nsFile}`]);
    // Deepest first; a path may be mounted several times.
    const targets = inside
      .map((m) => m.target)
      .filter((t) => isUnder(t, p))
      .sort((a, b) => b.length - a.length);
    for (const t of targets) await shTry("nsenter", [`--mount=${nsFile}`, "--", "umount", "-l", t]);
  }
}

/** Thaws every filesystem mounted under one of `dirs` in a namespace (EINVAL for unfrozen ones is ignored). */
export async function thawUnder(nsArgs: readonly string[], dirs: readonly string[]): Promise<void> {
  const inside = await mountsIn(nsArgs);
  for (const m of inside) {
    if (dirs.some((d) => isUnder(m.target, d)))
      await shTry("nsenter", [...nsArgs, "--", "fsfreeze", "-u", m.target], { timeoutMs: 10_000 });
  }
}

/** Lazy-unmounts (after thawing) every mount of `device` inside a namespace, as a yanked EBS volume would vanish. */
export async function yankDevice(nsArgs: readonly string[], device: string): Promise<void> {
  const inside = await mountsIn(nsArgs);
  const targets = inside
    .filter((m) => m.source === device)
    .map((m) => m.target)
    .sort((a, b) => b.length - a.length);
  for (const t of targets) {
    await shTry("nsenter", [...nsArgs, "--", "fsfreeze", "-u", t], { timeoutMs: 10_000 });
    // Mounts stacked under this one go too (umount -l detaches the whole subtree).
    await shTry("nsenter", [...nsArgs, "--", "umount", "-l", t]);
  }
}

/** Unpins a mount namespace; it dies once no process is left in it, releasing its mounts. */
export async function destroyMountNs(nsFile: string): Promise<void> {
  if (hostMounts().some((m) => m.target === nsFile)) await shTry("umount", ["-l", nsFile]);
}

/**
 * A filesystem still frozen when its last mount went (its namespace died) lives on unmounted and
 * frozen (a freeze holds an active reference), keeping its loop device busy for good. Mounting the
 * device again finds that same filesystem: thaw it there and unmount, in a throwaway mount
 * namespace (the host's mount table is never touched). A no-op for a device with no live ext4/xfs.
 */
export async function releaseOrphanedFreeze(device: string): Promise<void> {
  const name = basename(device);
  if (!existsSync(`/sys/fs/ext4/${name}`) && !existsSync(`/sys/fs/xfs/${name}`)) return;
  const dir = mkdtempSync(join(tmpdir(), "spotkeep-thaw-"));
  try {
    await shTry(
      "unshare",
      ["--mount", "--propagation", "private", "sh", "-c", 'mount "$1" "$2" && { fsfreeze -u "$2"; umount "$2"; }', "sh", device, dir],
      { timeoutMs: 30_000 },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
