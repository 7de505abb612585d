/**
 * What "no Node.js on the instance" means to both runtimes: which command names are node's, and
 * where the host has them. An instance of a stock (no-node) image must not find any of these.
 */
import { lstat, mkdir, readdir, realpath, rm, stat, symlink } from "node:fs/promises";
import path from "node:path";

/** node itself and the commands that only run with it. */
export const NODE_COMMANDS: ReadonlySet<string> = new Set(["node", "nodejs", "npm", "npx", "corepack"]);

/** Folders searched when the host's PATH is empty or unset (what a login shell would have). */
const FALLBACK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** A host PATH longer than this many folders is cut (the environment is ours, but stay bounded). */
const MAX_PATH_DIRS = 64;
/** At most this many commands are linked (a normal /usr/bin holds a few thousand). */
const MAX_COMMANDS = 20_000;

/**
 * The host's PATH folders an instance may use: absolute ones, in order, without duplicates and
 * without node_modules/.bin folders (a test runner's PATH holds them; their commands need node).
 */
export function hostPathDirs(hostPath: string | undefined = process.env.PATH): string[] {
  const dirs = (hostPath?.trim() ? hostPath : FALLBACK_PATH).split(path.delimiter);
  const out: string[] = [];
  for (const d of dirs) {
    if (!path.isAbsolute(d) || d.split(path.sep).includes("node_modules")) continue;
    const n = path.normalize(d).replace(/(.)\/+$/, "$1");
    if (!out.includes(n)) out.push(n);
    if (out.length >= MAX_PATH_DIRS) break;
  }
  return out;
}

async function isExecutableFile(p: string): Promise<boolean> {
  try {
    const st = await stat(p);
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * Makes `binDir` a folder of symlinks to every executable of the host's PATH folders except node's
 * commands (the first folder holding a name wins, as a PATH lookup would), replacing whatever was
 * there. Used as the whole PATH of a no-node instance, so `curl`, `tar`, `sha256sum`, `sh` work and
 * `command -v node` fails.
 */
export async function buildNoNodeBin(binDir: string, hostPath?: string): Promise<number> {
  await rm(binDir, { recursive: true, force: true });
  await mkdir(binDir, { recursive: true });
  const seen = new Set<string>();
  for (const dir of hostPathDirs(hostPath)) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const name of names.sort()) {
      if (seen.size >= MAX_COMMANDS) return seen.size;
      if (seen.has(name) || NODE_COMMANDS.has(name) || name.startsWith(".")) continue;
      const full = path.join(dir, name);
      if (!(await isExecutableFile(full))) continue;
      seen.add(name);
      await symlink(full, path.join(binDir, name));
    }
  }
  return seen.size;
}

/** Where node is on the host, as the linux runtime hides it from a no-node instance. */
export interface HostNode {
  /** PATH folders (symlinks resolved) holding a node command name: overlaid with whiteouts for those names. */
  dirs: string[];
  /** Node files (symlinks resolved) outside those folders' node names: covered by an empty, non-executable file. */
  files: string[];
}

/**
 * Where node is on the host: the PATH folders that hold a node command name, and the real files the
 * node commands (and the running node itself) resolve to that hiding those names does not cover.
 */
export async function hostNode(hostPath?: string, execPath: string = process.execPath): Promise<HostNode> {
  const dirs = new Set<string>();
  const targets: string[] = [execPath];
  for (const dir of hostPathDirs(hostPath)) {
    const real = await realpath(dir).catch(() => null);
    if (!real) continue;
    for (const name of NODE_COMMANDS) {
      const p = path.join(real, name);
      if (!(await lstat(p).catch(() => null))) continue;
      dirs.add(real);
      targets.push(p);
    }
  }
  const files = new Set<string>();
  for (const t of targets) {
    const real = await realpath(t).catch(() => null);
    if (!real || !(await stat(real).catch(() => null))?.isFile()) continue;
    if (dirs.has(path.dirname(real)) && NODE_COMMANDS.has(path.basename(real))) continue;
    files.add(real);
  }
  return { dirs: [...dirs].sort(), files: [...files].sort() };
}
