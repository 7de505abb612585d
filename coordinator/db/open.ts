/**
 * Opening the coordinator's SQLite store so that damage is noticed instead of served.
 *
 * At open, before anything is written:
 *  1. the write-ahead log is scanned: SQLite silently stops at the first bad frame and drops every
 *     committed transaction after it, so a damaged log is refused before SQLite sees it;
 *  2. pragmas: WAL, synchronous=FULL (a commit is on disk when it returns), busy_timeout, foreign keys;
 *  3. `integrity_check` (files under 64 MiB) or `quick_check`;
 *  4. the store identity: a random store id and a generation kept both in the database (store_meta)
 *     and beside it in the data dir (`store-identity`). The generation is bumped at every open and
 *     every clean close, and the side file records whether the store was closed cleanly. Refused:
 *     an empty database where the side file says a store was kept (deleted or truncated file, WAL
 *     lost before the first checkpoint); another store's database (replaced); a database older
 *     than the side file (an older copy put in place); an unclean stop whose WAL has disappeared
 *     (the writes it held are gone, even when the main file already holds the latest generation).
 * Every refusal is a StoreOpenError whose message says what to do: restore a backup
 * (`spotkeep restore-backup`), or, deliberately, `--accept-empty-store` / `--accept-restored-store`.
 *
 * The caller holds the data directory's lock (coordinator/datadir.ts): the checks assume no other
 * process writes the store while they run. Open it once per process. Other tools read it through a
 * read-only connection (as backup.ts does): a read-write connection that closes last folds the WAL
 * in and deletes it, which after an unclean stop looks exactly like a lost WAL.
 */
import { randomUUID } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, writeSync, fsyncSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type Database from "better-sqlite3";
import { openSqlite } from "./sqlite/driver.js";
import { createPrivateFile, tightenFile, writePrivateFileAtomic } from "./datadir.js";
import { migrate } from "./migrations.js";

/** The store's file name inside the data directory. */
export const STORE_FILE = "coordinator.sqlite";
export const STORE_IDENTITY_FILE = "store-identity";
export const ACCEPT_EMPTY_STORE_FLAG = "--accept-empty-store";
export const ACCEPT_RESTORED_STORE_FLAG = "--accept-restored-store";
/** Below this size (database + WAL) the full integrity_check runs at open; above it quick_check. */
export const FULL_CHECK_BELOW_BYTES = 64 * 1024 * 1024;

/** Why a store was refused at open (or could not be opened). */
export type StoreRefusal =
  | "damaged" // integrity check failed, or SQLite reports corruption / not a database
  | "wal-damaged" // committed transactions in the WAL lie behind a damaged frame
  | "wal-removed" // unclean stop, and the WAL is gone
  | "empty" // empty database, but the side file says a store was kept here
  | "replaced" // the database is another store (or predates store identities)
  | "rolled-back" // the database is older than the side file
  | "identity-missing" // the database has an identity, the side file is missing
  | "identity-unreadable" // the side file cannot be parsed
  | "disk-full"
  | "io";

export class StoreOpenError extends Error {
  override name = "StoreOpenError";
  /** The SQLite or errno code underneath, when there is one (SQLITE_FULL, SQLITE_CORRUPT, ENOSPC…). */
  readonly code: string | undefined;
  constructor(
    readonly kind: StoreRefusal,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = (options?.cause as { code?: string } | undefined)?.code;
  }
}

export interface OpenDatabaseOptions {
  now?: () => number;
  /** Start a new store when the database is empty although the side file says one was kept. */
  acceptEmptyStore?: boolean;
  /** Adopt the database as it is when it is replaced, rolled back, lost its WAL or has a damaged WAL. */
  acceptRestoredStore?: boolean;
  /** Where the side file lives; `<dir of file>/store-identity` unless told. */
  identityFile?: string;
  busyTimeoutMs?: number;
  /** Lines worth an operator's attention (an accepted refusal, a new store); nothing when absent. */
  log?: (line: string) => void;
  fullCheckBelowBytes?: number;
}

/** What the store-identity side file holds. */
export interface StoreIdentity {
  storeId: string;
  generation: number;
  /** "open" while a coordinator has the store open (or died with it open); "closed" after a clean close. */
  state: "open" | "closed";
  updatedAt: number;
}

/**
 * Open `file` for the Store: checked, migrated and with its identity recorded. The returned
 * database's `close()` performs the clean close (generation bump, checkpoint, side file marked
 * closed) before closing; every close path must go through it, or the next open sees an unclean
 * stop.
 */
export function openDatabase(file: string, opts: OpenDatabaseOptions = {}): Database.Database {
  const now = opts.now ?? Date.now;
  const log = opts.log ?? (() => undefined);
  const abs = resolve(file);
  const dir = dirname(abs);
  const identityFile = opts.identityFile ?? join(dir, STORE_IDENTITY_FILE);
  const walFile = `${abs}-wal`;
  const restoreHint = `restore the latest backup (spotkeep restore-backup --data-dir ${dir} --from BACKUP_FILE)`;

  const side = readStoreIdentity(identityFile);
  const walExisted = existsSync(walFile);

  // 1. The WAL, before SQLite reads (and then overwrites) it.
  const wal = inspectWal(walFile);
  if (wal.state === "damaged") {
    if (!opts.acceptRestoredStore)
      throw new StoreOpenError(
        "wal-damaged",
        `the write-ahead log ${walFile} is damaged (${wal.detail}); SQLite would silently drop the committed transactions behind the damage. ` +
          `Keep a copy of ${dir} for analysis, then ${restoreHint}, or, to continue with the intact part deliberately, ` +
          `start once with ${ACCEPT_RESTORED_STORE_FLAG}`,
      );
    log(
      `store: ${ACCEPT_RESTORED_STORE_FLAG}: opening ${abs} although its write-ahead log is damaged (${wal.detail}); ` +
        `the transactions behind the damage are dropped`,
    );
  }

  // 2. Open with the coordinator's pragmas; files 0600 whatever the umask.
  createPrivateFile(abs);
  let db: Database.Database;
  try {
    db = openSqlite(abs, { timeout: opts.busyTimeoutMs ?? 5000 });
  } catch (err) {
    throw classifyOpenFailure(err, abs, restoreHint);
  }
  try {
    const mode = db.pragma("journal_mode = WAL", { simple: true });
    if (mode !== "wal") throw new Error(`journal_mode is ${String(mode)}, not wal`);
    db.pragma("synchronous = FULL");
    db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 5000}`);
    db.pragma("foreign_keys = ON");
    for (const f of [walFile, `${abs}-shm`]) tightenFile(f);

    // 3. Integrity.
    const bytes = fileSize(abs) + fileSize(walFile);
    const check = bytes < (opts.fullCheckBelowBytes ?? FULL_CHECK_BELOW_BYTES) ? "integrity_check" : "quick_check";
    const problems = (db.pragma(`${check}(20)`) as Record<string, string>[]).map((r) => Object.values(r)[0]).filter((v) => v !== "ok");
    if (problems.length > 0)
      throw new StoreOpenError(
        "damaged",
        `the store ${abs} is damaged (${check}: ${problems.slice(0, 3).join("; ")}${problems.length > 3 ? "; …" : ""}). ` +
          `The coordinator will not run on it: keep a copy of ${dir} for analysis, then ${restoreHint}`,
      );

    // 4. Identity.
    const found = readDbIdentity(db);
    const accepted = decide({ found, side, walExisted, abs, dir, identityFile, walFile, restoreHint, opts });
    if (accepted) log(`store: ${accepted}`);
    migrate(db, now);
    const t = now();
    const generation = Math.max(found.kind === "identified" ? found.generation : 0, side?.generation ?? 0) + 1;
    const storeId = found.kind === "identified" ? found.storeId : randomUUID();
    if (found.kind !== "identified") log(`store: new store ${storeId} in ${abs}`);
    db.prepare(
      `INSERT INTO store_meta (id, store_id, generation, created_at, updated_at) VALUES (1, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET store_id = excluded.store_id, generation = excluded.generation, updated_at = excluded.updated_at`,
    ).run(storeId, generation, t, t);
    writeStoreIdentity(identityFile, { storeId, generation, state: "open", updatedAt: t });
    installCleanClose(db, identityFile, now);
    return db;
  } catch (err) {
    try {
      db.close();
    } catch {
      // the original error says more
    }
    if (err instanceof StoreOpenError) throw err;
    throw classifyOpenFailure(err, abs, restoreHint);
  }
}

/** The identity recorded in an open database (undefined before it has one). */
export function storeIdentityOf(db: Database.Database): { storeId: string; generation: number } | undefined {
  const found = readDbIdentity(db);
  return found.kind === "identified" ? { storeId: found.storeId, generation: found.generation } : undefined;
}

type DbIdentity = { kind: "empty" } | { kind: "legacy" } | { kind: "identified"; storeId: string; generation: number };

function readDbIdentity(db: Database.Database): DbIdentity {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").pluck().all() as string[];
  if (tables.length === 0) return { kind: "empty" };
  if (!tables.includes("store_meta")) return { kind: "legacy" };
  const row = db.prepare("SELECT store_id, generation FROM store_meta WHERE id = 1").get() as
    | { store_id: string; generation: number }
    | undefined;
  return row ? { kind: "identified", storeId: row.store_id, generation: row.generation } : { kind: "legacy" };
}

/** Throws the refusal, or returns a line describing what an accept flag let through (undefined when all is in order). */
function decide(c: {
  found: DbIdentity;
  side: StoreIdentity | undefined;
  walExisted: boolean;
  abs: string;
  dir: string;
  identityFile: string;
  walFile: string;
  restoreHint: string;
  opts: OpenDatabaseOptions;
}): string | undefined {
  const { found, side, abs, identityFile, restoreHint, opts } = c;
  const acceptRestored = (kind: StoreRefusal, message: string): string => {
    if (!opts.acceptRestoredStore)
      throw new StoreOpenError(
        kind,
        `${message}. To fix: ${restoreHint}, or, to adopt this database deliberately, start once with ${ACCEPT_RESTORED_STORE_FLAG}`,
      );
    return `${ACCEPT_RESTORED_STORE_FLAG}: adopting ${abs} as it is (${message})`;
  };
  if (!side) {
    if (found.kind === "identified")
      return acceptRestored(
        "identity-missing",
        `${abs} is store ${found.storeId} at generation ${found.generation}, but ${identityFile} is missing, ` +
          `so it cannot be checked against the last store kept here`,
      );
    return undefined; // first start, or a store from before identities: it gets one now
  }
  if (found.kind === "empty") {
    if (!opts.acceptEmptyStore)
      throw new StoreOpenError(
        "empty",
        `the store ${abs} is empty, but ${identityFile} says store ${side.storeId} (generation ${side.generation}) was kept here: ` +
          "the database file was deleted, " +
          `truncated or replaced, or its write-ahead log was lost. To fix: ${restoreHint}, or, to start deliberately with an empty store ` +
          `(stateful instances and their EC2 resources are then no longer managed), start once with ${ACCEPT_EMPTY_STORE_FLAG}`,
      );
    return `${ACCEPT_EMPTY_STORE_FLAG}: starting a new, empty store in ${abs} in place of store ${side.storeId} (generation ${side.generation})`;
  }
  if (found.kind === "legacy")
    return acceptRestored(
      "replaced",
      `${abs} has no store identity, but ${identityFile} says store ${side.storeId} was kept here: the database was replaced`,
    );
  if (found.storeId !== side.storeId)
    return acceptRestored(
      "replaced",
      `${abs} is store ${found.storeId}, but ${identityFile} says store ${side.storeId} was kept here: the database was replaced`,
    );
  if (found.generation < side.generation)
    return acceptRestored(
      "rolled-back",
      `${abs} is at generation ${found.generation}, ` +
        `older than generation ${side.generation} recorded in ${identityFile}: an older copy of the database was put in place, or its latest writes were lost`,
    );
  if (side.state === "open" && !c.walExisted)
    return acceptRestored(
      "wal-removed",
      `the coordinator using ${abs} stopped without a clean shutdown and its write-ahead log ${c.walFile} is gone, so the writes it held are lost ` +
        `(if the database was opened with another tool since, such as the sqlite3 shell, which folds the log in and removes it, nothing is lost)`,
    );
  return undefined;
}

/**
 * Replace the database's close() with the clean close: bump the generation, checkpoint the WAL
 * into the main file, mark the side file closed, then close. Done on the instance rather than in
 * a separate function so that every close path (the Store's, an error handler's, a test's) records
 * it. Each stage is best effort: with the disk full the bump or the checkpoint may fail, and the
 * database still closes (the WAL then stays, and the next open finds it).
 */
function installCleanClose(db: Database.Database, identityFile: string, now: () => number): void {
  const close = db.close.bind(db);
  db.close = () => {
    if (!db.open) return db;
    const id = storeIdentityOrUndefined(db);
    if (id) {
      const t = now();
      let generation = id.generation;
      try {
        db.prepare("UPDATE store_meta SET generation = ?, updated_at = ? WHERE id = 1").run(id.generation + 1, t);
        generation = id.generation + 1;
      } catch {
        // disk full or I/O error: the side file keeps the generation the database has
      }
      let checkpointed = false;
      try {
        const [r] = db.pragma("wal_checkpoint(TRUNCATE)") as { busy: number; log: number; checkpointed: number }[];
        checkpointed = r !== undefined && r.busy === 0;
      } catch {
        // same
      }
      try {
        // "closed" only when the WAL holds nothing the main file lacks; otherwise the WAL must be
        // found at the next open, and "open" makes that open insist on it.
        writeStoreIdentity(identityFile, { storeId: id.storeId, generation, state: checkpointed ? "closed" : "open", updatedAt: t });
      } catch {
        // the next open may then ask for --accept-restored-store; the message says why
      }
    }
    return close();
  };
}

function storeIdentityOrUndefined(db: Database.Database): { storeId: string; generation: number } | undefined {
  try {
    return storeIdentityOf(db);
  } catch {
    return undefined;
  }
}

// ---------- the side file ----------

/** The side file is padded to a fixed size so it can be rewritten in place when the disk is full. */
const IDENTITY_RECORD_BYTES = 256;

export function readStoreIdentity(file: string): StoreIdentity | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new StoreOpenError("identity-unreadable", `reading ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const v = JSON.parse(text) as Partial<StoreIdentity>;
    if (typeof v.storeId !== "string" || !Number.isSafeInteger(v.generation) || (v.state !== "open" && v.state !== "closed"))
      throw new Error("fields storeId, generation and state are required");
    return { storeId: v.storeId, generation: v.generation!, state: v.state, updatedAt: Number(v.updatedAt ?? 0) };
  } catch (err) {
    throw new StoreOpenError(
      "identity-unreadable",
      `${file} is unreadable (${(err as Error).message}), so the store cannot be checked against it. ` +
        `If the database beside it is the latest, delete ${file} and start once with ${ACCEPT_RESTORED_STORE_FLAG}; ` +
        `otherwise restore the latest backup with spotkeep restore-backup`,
      { cause: err },
    );
  }
}

/**
 * Write the side file atomically (rename); when that fails for lack of space, overwrite the
 * existing fixed-size record in place, which needs no new blocks.
 */
export function writeStoreIdentity(file: string, id: StoreIdentity): void {
  const text = JSON.stringify(id).padEnd(IDENTITY_RECORD_BYTES - 1, " ");
  const record = `${text}\n`;
  try {
    writePrivateFileAtomic(file, record);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if ((code !== "ENOSPC" && code !== "EDQUOT") || !existsSync(file) || statSync(file).size !== Buffer.byteLength(record)) throw err;
    const fd = openSync(file, "r+");
    try {
      writeSync(fd, record, 0);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

// ---------- the WAL ----------

export interface WalInspection {
  state: "absent" | "empty" | "intact" | "damaged";
  /** Frames SQLite will use (up to the last commit before any damage). */
  validFrames: number;
  detail: string;
}

/**
 * Check a WAL file the way SQLite's recovery reads it (header, then frames whose salts match the
 * header and whose cumulative checksums hold; the log ends at the last commit frame before the
 * first bad one), and decide whether frames were lost behind damage.
 *
 * Frames after the first bad one that carry the header's salts were written in this same WAL cycle
 * (frames of earlier cycles carry other salts). Committed transactions among them are damage, with
 * one exception: with synchronous=FULL every commit is fsynced before the next transaction writes,
 * so a power loss can tear only the last transaction, whose frames (its commit frame last) may be
 * partly written. One commit frame after the break that is the last current-cycle frame is
 * therefore taken for a torn last transaction, which was never acknowledged. Two or more, or one
 * followed by further frames, mean acknowledged transactions would be dropped.
 */
export function inspectWal(walFile: string): WalInspection {
  let fd: number;
  try {
    fd = openSync(walFile, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { state: "absent", validFrames: 0, detail: "no WAL" };
    throw err;
  }
  try {
    const size = statSync(walFile).size;
    if (size < 32) return { state: "empty", validFrames: 0, detail: `${size} bytes` };
    const hdr = Buffer.alloc(32);
    readSync(fd, hdr, 0, 32, 0);
    const magic = hdr.readUInt32BE(0);
    const pageSizeField = hdr.readUInt32BE(8);
    const pageSize = pageSizeField === 1 ? 65536 : pageSizeField;
    const bigEndian = magic === 0x377f0683;
    const headerOk =
      (magic === 0x377f0682 || magic === 0x377f0683) &&
      hdr.readUInt32BE(4) === 3007000 &&
      pageSize >= 512 &&
      pageSize <= 65536 &&
      (pageSize & (pageSize - 1)) === 0 &&
      sameChecksum(walChecksum(bigEndian, hdr, 0, 24, 0, 0), hdr, 24);
    if (!headerOk) {
      // SQLite ignores a WAL whose header is bad, frames and all. With synchronous=FULL the header
      // is synced before any frame of its cycle, so frames behind a bad header are damage.
      if (size >= 32 + 24 + 512) return { state: "damaged", validFrames: 0, detail: `bad WAL header, ${size} bytes of frames ignored` };
      return { state: "empty", validFrames: 0, detail: "no complete header" };
    }
    const salt1 = hdr.readUInt32BE(16);
    const salt2 = hdr.readUInt32BE(20);
    const frameSize = 24 + pageSize;
    const frames = Math.floor((size - 32) / frameSize);
    const frame = Buffer.alloc(frameSize);
    let sum: [number, number] = [hdr.readUInt32BE(24), hdr.readUInt32BE(28)];
    let validFrames = 0;
    let breakAt = -1;
    const commitsAfter: number[] = [];
    let lastCurrent = -1;
    for (let i = 0; i < frames; i++) {
      readSync(fd, frame, 0, frameSize, 32 + i * frameSize);
      const saltsMatch = frame.readUInt32BE(8) === salt1 && frame.readUInt32BE(12) === salt2;
      if (breakAt < 0) {
        let next: [number, number] | undefined;
        if (saltsMatch && frame.readUInt32BE(0) !== 0) {
          next = walChecksum(bigEndian, frame, 0, 8, sum[0], sum[1]);
          next = walChecksum(bigEndian, frame, 24, frameSize, next[0], next[1]);
        }
        if (next && sameChecksum(next, frame, 16)) {
          sum = next;
          if (frame.readUInt32BE(4) !== 0) validFrames = i + 1;
          continue;
        }
        breakAt = i;
        continue;
      }
      if (!saltsMatch) continue;
      if (frame.readUInt32BE(4) !== 0) commitsAfter.push(i);
      lastCurrent = i;
    }
    if (breakAt < 0) return { state: "intact", validFrames, detail: `${validFrames} of ${frames} frames committed` };
    const lost = commitsAfter.length;
    const tornLast = lost === 1 && commitsAfter[0] === lastCurrent;
    if (lost === 0 || tornLast)
      return {
        state: "intact",
        validFrames,
        detail: `${validFrames} frames committed; an unfinished last transaction at frame ${breakAt + 1} is dropped`,
      };
    return {
      state: "damaged",
      validFrames,
      detail:
        `frame ${breakAt + 1} of ${frames} fails its checksum and ` +
        `${lost} committed transaction${lost === 1 ? "" : "s"} follow${lost === 1 ? "s" : ""} it`,
    };
  } finally {
    closeSync(fd);
  }
}

/** SQLite's WAL checksum: two 32-bit sums over pairs of 32-bit words, in the byte order the magic names. */
function walChecksum(bigEndian: boolean, buf: Buffer, start: number, end: number, s0: number, s1: number): [number, number] {
  for (let i = start; i < end; i += 8) {
    const a = bigEndian ? buf.readUInt32BE(i) : buf.readUInt32LE(i);
    const b = bigEndian ? buf.readUInt32BE(i + 4) : buf.readUInt32LE(i + 4);
    s0 = (s0 + a + s1) >>> 0;
    s1 = (s1 + b + s0) >>> 0;
  }
  return [s0, s1];
}

function sameChecksum(sum: [number, number], buf: Buffer, at: number): boolean {
  return buf.readUInt32BE(at) === sum[0] && buf.readUInt32BE(at + 4) === sum[1];
}

// ---------- errors ----------

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function classifyOpenFailure(err: unknown, file: string, restoreHint: string): StoreOpenError {
  const code = String((err as { code?: string }).code ?? "");
  const msg = (err as Error).message ?? String(err);
  if (code === "SQLITE_FULL" || code === "ENOSPC" || code === "EDQUOT" || code === "SQLITE_IOERR_SHMSIZE")
    return new StoreOpenError(
      "disk-full",
      `opening the store ${file}: the disk is full (${code}: ${msg}); free space on ${dirname(file)} and start again`,
      {
        cause: err,
      },
    );
  if (code === "SQLITE_CORRUPT" || code.startsWith("SQLITE_CORRUPT_") || code === "SQLITE_NOTADB")
    return new StoreOpenError(
      "damaged",
      `the store ${file} is damaged (${code}: ${msg}). The coordinator will not run on it: keep a copy of ${dirname(file)} for analysis, then ${restoreHint}`,
      { cause: err },
    );
  return new StoreOpenError("io", `opening the store ${file}: ${code ? `${code}: ` : ""}${msg}`, { cause: err });
}
