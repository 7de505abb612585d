/**
 * The coordinator's data directory: private to its user (0700, files 0600, whatever the umask) and
 * held by one process at a time.
 *
 * The lock is SQLite's own file lock on a tiny lock database (`coordinator.lock`) opened with
 * `locking_mode=EXCLUSIVE`: SQLite takes a POSIX record lock (fcntl) that it holds until the
 * connection closes, and the kernel drops it when the process dies, SIGKILL and OOM kill included.
 * So there is no stale lock to detect and no pid-reuse race, which a pid file with `kill(pid, 0)`
 * and /proc start times can only narrow. SQLite also refuses a second connection inside the same
 * process (it tracks its locks per inode), and better-sqlite3 is already a dependency.
 * Limits: the directory must be on a local filesystem (POSIX locks over NFS depend on the server's
 * lock manager), and nothing in the holding process may open and close `coordinator.lock` with
 * plain file I/O, because closing any descriptor of a file drops the process's POSIX locks on it.
 * The holder's pid, host and start time go to a separate plain file (`coordinator.lock.json`) so
 * that a refused process can name the holder without touching the lock file.
 */
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { hostname as osHostname } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { openSqlite } from "./sqlite/driver.js";

export const LOCK_FILE = "coordinator.lock";
export const LOCK_INFO_FILE = "coordinator.lock.json";

/** Who holds a data directory, as recorded by the holder. */
export interface LockHolder {
  pid: number;
  hostname: string;
  /** Epoch milliseconds. */
  startedAt: number;
  /** What holds it: "coordinator", "restore-backup", … */
  purpose: string;
}

/** Another process holds the data directory. `holder` is undefined when it left no readable record. */
export class DataDirLockedError extends Error {
  override name = "DataDirLockedError";
  readonly code = "DATA_DIR_LOCKED";
  constructor(
    readonly dir: string,
    readonly holder: LockHolder | undefined,
    options?: { cause?: unknown },
  ) {
    super(
      `data directory ${dir} is in use by ${
        holder
          ? `another ${holder.purpose} (pid ${holder.pid} on ${holder.hostname}, since ${new Date(holder.startedAt).toISOString()})`
          : "another process (it left no pid record)"
      }: one coordinator per data directory; stop that process first, or give this one another --data-dir`,
      options,
    );
  }
}

/** The data directory cannot be made private (owned by another user and open to others). */
export class DataDirPermissionError extends Error {
  override name = "DataDirPermissionError";
  readonly code = "DATA_DIR_PERMISSIONS";
}

export interface DataDir {
  /** Absolute path. */
  readonly dir: string;
  /** Releases the lock (idempotent). Called on every exit path; process death releases it too. */
  release(): void;
}

export interface OpenDataDirOptions {
  /** Recorded in the lock record; "coordinator" unless told. */
  purpose?: string;
  now?: () => number;
}

/**
 * Every lock connection this process holds. The driver closes a connection its caller no longer
 * references when the garbage collector finds it, and closing drops the lock: a holder that kept
 * only what it needed from the DataDir (or nothing) would lose the lock at some later collection.
 */
const heldLocks = new Set<{ close(): unknown }>();

/**
 * Create (0700) or secure the data directory and take its exclusive lock. Throws
 * DataDirLockedError, naming the holder, when another process has it.
 */
export function openDataDir(dir: string, opts: OpenDataDirOptions = {}): DataDir {
  const abs = resolve(dir);
  ensurePrivateDir(abs);
  const lockFile = join(abs, LOCK_FILE);
  const infoFile = join(abs, LOCK_INFO_FILE);
  createPrivateFile(lockFile);
  // timeout 0: a held lock is an answer, not something to wait for.
  const lock = openSqlite(lockFile, { timeout: 0 });
  try {
    lock.pragma("locking_mode = EXCLUSIVE");
    // BEGIN EXCLUSIVE takes the write lock even with nothing to write; in EXCLUSIVE locking mode
    // the connection keeps it after COMMIT until it closes.
    lock.exec("BEGIN EXCLUSIVE; COMMIT");
  } catch (err) {
    lock.close();
    if ((err as { code?: string }).code === "SQLITE_BUSY") throw new DataDirLockedError(abs, readLockHolder(abs), { cause: err });
    throw new Error(`locking data directory ${abs} (${lockFile}): ${(err as Error).message}`, { cause: err });
  }
  heldLocks.add(lock);
  const me: LockHolder = {
    pid: process.pid,
    hostname: osHostname(),
    startedAt: (opts.now ?? Date.now)(),
    purpose: opts.purpose ?? "coordinator",
  };
  try {
    writePrivateFileAtomic(infoFile, `${JSON.stringify(me)}\n`);
  } catch {
    // The record only names the holder in a refusal (the lock decides), so a full disk must not
    // stop the start; a previous holder's record must not name the wrong process, though.
    try {
      unlinkSync(infoFile);
    } catch {
      // not there
    }
  }
  let released = false;
  return {
    dir: abs,
    release() {
      if (released) return;
      released = true;
      // Remove our record first: once the lock is gone, a new holder may write its own.
      try {
        const current = readLockHolder(abs);
        if (current?.pid === me.pid && current.startedAt === me.startedAt) unlinkSync(infoFile);
      } catch {
        // A record left behind is harmless: the next holder overwrites it.
      }
      lock.close();
      heldLocks.delete(lock);
    },
  };
}

/** The holder recorded in the data directory, if any (for messages; the lock itself decides). */
export function readLockHolder(dir: string): LockHolder | undefined {
  try {
    const v = JSON.parse(readFileSync(join(dir, LOCK_INFO_FILE), "utf8")) as Partial<LockHolder>;
    if (typeof v.pid !== "number") return undefined;
    return {
      pid: v.pid,
      hostname: String(v.hostname ?? "?"),
      startedAt: Number(v.startedAt ?? 0),
      purpose: String(v.purpose ?? "process"),
    };
  } catch {
    return undefined;
  }
}

/**
 * Create `dir` (and missing parents) with mode 0700, and force 0700 on it when it already exists
 * and belongs to this user. A directory of another user that others can enter is refused: this
 * process cannot tighten it, and the store and admin token would be exposed.
 */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new DataDirPermissionError(`data directory ${dir} is not a directory`);
  const uid = process.getuid?.();
  if (uid === undefined || st.uid === uid) {
    // mkdir's mode is filtered by the umask, and an existing directory keeps its old mode.
    if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
    return;
  }
  if ((st.mode & 0o077) !== 0)
    throw new DataDirPermissionError(
      `data directory ${dir} belongs to uid ${st.uid} and has mode ${octal(st.mode)}: run the coordinator as its owner, or run chmod 700 ${dir}`,
    );
}

/** Create `file` empty with mode 0600 if it does not exist; tighten an existing one of ours to 0600. */
export function createPrivateFile(file: string): void {
  try {
    closeSync(openSync(file, "wx", 0o600));
    fsyncDir(dirname(file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  // By path, never through a descriptor: see the note on POSIX locks at the top.
  tightenFile(file);
}

/** chmod 600 a file of ours that is looser (or stricter); a missing file is ignored. */
export function tightenFile(file: string): void {
  let st;
  try {
    st = statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  const uid = process.getuid?.();
  if ((uid === undefined || st.uid === uid) && (st.mode & 0o777) !== 0o600) chmodSync(file, 0o600);
}

/**
 * Replace `file` with `text` atomically and durably, mode 0600: a temporary file beside it is
 * written and fsynced, renamed over it, and the directory fsynced. A failure (disk full) leaves
 * the old file as it was.
 */
export function writePrivateFileAtomic(file: string, text: string): void {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w", 0o600);
    const buf = Buffer.from(text);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw err;
  }
  fsyncDir(dirname(file));
}

/** fsync a directory so a create, rename or unlink in it survives a power loss. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}
