/**
 * Online backup and restore of the coordinator's SQLite store.
 *
 * `backupStore` copies the store with SQLite's online backup API while the coordinator keeps
 * running: the copy is one consistent snapshot (all pages in one step under a read transaction,
 * which in WAL mode does not block the coordinator's writes), written to a temporary file (0600),
 * switched to a single self-contained file (journal_mode=DELETE), verified with integrity_check,
 * fsynced and renamed into place. The copy carries the store identity (store_meta).
 *
 * `restoreBackup` puts a backup in place of the store of a stopped coordinator: it takes the data
 * directory's lock (so it refuses while a coordinator runs), verifies the backup, keeps the current
 * database and WAL beside it under a `.before-restore-<time>` name, and records the restored store
 * in the store-identity file with a generation above every earlier one. The next start then
 * passes the store checks with no flag, and any still older copy is refused as rolled back.
 */
import { randomUUID } from "node:crypto";
import { closeSync, copyFileSync, existsSync, fsyncSync, openSync, renameSync, statSync, unlinkSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type Database from "better-sqlite3";
import { openSqlite } from "./sqlite/driver.js";
import { createPrivateFile, fsyncDir, openDataDir, tightenFile } from "./datadir.js";
import { migrate } from "./migrations.js";
import { POSTGRES_MARKER_FILE, postgresStoreOf } from "./postgres/open.js";
import { readStoreIdentity, STORE_FILE, STORE_IDENTITY_FILE, StoreOpenError, storeIdentityOf, writeStoreIdentity } from "./open.js";

export { STORE_FILE };

export interface BackupResult {
  file: string;
  bytes: number;
  /** The store identity the copy carries (undefined for a store from before identities). */
  storeId: string | undefined;
  generation: number | undefined;
}

export class BackupError extends Error {
  override name = "BackupError";
}

/**
 * Copy the store at `dbFile` to `dest` (replaced atomically if it exists), verified. Safe while a
 * coordinator has the store open.
 */
export async function backupStore(dbFile: string, dest: string, opts: { busyTimeoutMs?: number } = {}): Promise<BackupResult> {
  const src = resolve(dbFile);
  const out = resolve(dest);
  const pg = postgresStoreOf(dirname(src));
  if (pg && !existsSync(src))
    throw new BackupError(
      `backing up ${src}: the coordinator of ${dirname(src)} keeps its store in PostgreSQL (${pg}); back it up with pg_dump ` +
        "(pg_dump --format=custom --file FILE URL) or your database's own backups (such as RDS snapshots)",
    );
  if (!existsSync(src) || statSync(src).size === 0) throw new BackupError(`backing up ${src}: no store there`);
  if (out === src || out.startsWith(`${src}-`)) throw new BackupError(`backing up ${src}: the output must be another file, not ${out}`);
  const tmp = join(dirname(out), `.${basename(out)}.${process.pid}.tmp`);
  // A read-only connection never checkpoints or removes the WAL, so it cannot disturb the
  // coordinator's own view of an unclean stop.
  const db = openSqlite(src, { readonly: true, fileMustExist: true, timeout: opts.busyTimeoutMs ?? 5000 });
  try {
    createPrivateFile(tmp);
    await db.backup(tmp, { progress: () => 0x7fffffff });
  } catch (err) {
    removeQuietly(tmp);
    throw new BackupError(`backing up ${src} to ${out}: ${(err as Error).message}`, { cause: err });
  } finally {
    db.close();
  }
  try {
    tightenFile(tmp);
    const v = verifyCopy(tmp, true);
    fsyncFile(tmp);
    renameSync(tmp, out);
    fsyncDir(dirname(out));
    return { file: out, bytes: statSync(out).size, ...v };
  } catch (err) {
    removeQuietly(tmp);
    removeQuietly(`${tmp}-journal`);
    throw err instanceof BackupError ? err : new BackupError(`verifying the backup ${out}: ${(err as Error).message}`, { cause: err });
  }
}

export interface RestoreResult {
  /** The restored store file. */
  file: string;
  storeId: string;
  generation: number;
  /** Where the database (and its WAL) that was in place now lies; undefined when there was none. */
  previous: string | undefined;
}

/**
 * Put `backupFile` in place of the store in `dataDir`. The coordinator must be stopped (the data
 * directory's lock is taken for the duration). Nothing is deleted: the replaced database and its
 * WAL are renamed aside.
 */
export function restoreBackup(dataDir: string, backupFile: string, opts: { now?: () => number } = {}): RestoreResult {
  const now = opts.now ?? Date.now;
  const from = resolve(backupFile);
  const pg = postgresStoreOf(resolve(dataDir));
  if (pg)
    throw new BackupError(
      `restoring into ${resolve(dataDir)}: its coordinator keeps its store in PostgreSQL (${pg}); restore a pg_dump with pg_restore ` +
        "(or your database's own backups); to move this coordinator back to an SQLite store, " +
        `remove store.url from its config and ${POSTGRES_MARKER_FILE} from the directory first`,
    );
  if (!existsSync(from)) throw new BackupError(`restoring ${from}: no such file`);
  if (existsSync(`${from}-wal`))
    throw new BackupError(
      `restoring ${from}: ${from}-wal lies beside it (a live database?); make a backup of it with spotkeep backup and restore that`,
    );
  const lock = openDataDir(dataDir, { purpose: "restore-backup", now });
  try {
    const dir = lock.dir;
    const store = join(dir, STORE_FILE);
    const identityFile = join(dir, STORE_IDENTITY_FILE);
    let side;
    try {
      side = readStoreIdentity(identityFile);
    } catch (err) {
      // An unreadable side file is replaced by this restore.
      if (!(err instanceof StoreOpenError)) throw err;
    }
    const tmp = join(dir, `.${STORE_FILE}.restore.${process.pid}.tmp`);
    removeQuietly(tmp);
    try {
      copyFileSync(from, tmp);
      tightenFile(tmp);
      verifyCopy(tmp, false);
      // The restored store gets an identity if it predates them, and a generation above both its
      // own and the one last recorded here, so the next open accepts it and any older copy is refused.
      const db = openSqlite(tmp);
      let storeId: string;
      let generation: number;
      try {
        db.pragma("journal_mode = DELETE");
        db.pragma("synchronous = FULL");
        migrate(db, now);
        const own = storeIdentityOf(db);
        storeId = own?.storeId ?? randomUUID();
        generation = Math.max(own?.generation ?? 0, side?.generation ?? 0) + 1;
        const t = now();
        db.prepare(
          `INSERT INTO store_meta (id, store_id, generation, created_at, updated_at) VALUES (1, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET store_id = excluded.store_id, generation = excluded.generation, updated_at = excluded.updated_at`,
        ).run(storeId, generation, t, t);
      } finally {
        db.close();
      }
      fsyncFile(tmp);
      let previous: string | undefined;
      if (existsSync(store)) {
        previous = `${store}.before-restore-${new Date(now()).toISOString().replace(/[:.]/g, "-")}`;
        // The WAL keeps its database's name plus -wal, so the set stays usable for analysis.
        if (existsSync(`${store}-wal`)) renameSync(`${store}-wal`, `${previous}-wal`);
        removeQuietly(`${store}-shm`);
        renameSync(store, previous);
      }
      renameSync(tmp, store);
      fsyncDir(dir);
      writeStoreIdentity(identityFile, { storeId, generation, state: "closed", updatedAt: now() });
      return { file: store, storeId, generation, previous };
    } catch (err) {
      removeQuietly(tmp);
      removeQuietly(`${tmp}-journal`);
      throw err instanceof BackupError ? err : new BackupError(`restoring ${from} into ${dir}: ${(err as Error).message}`, { cause: err });
    }
  } finally {
    lock.release();
  }
}

/** integrity_check on a copy; optionally switch it to a single self-contained file first. */
function verifyCopy(file: string, makeSelfContained: boolean): { storeId: string | undefined; generation: number | undefined } {
  let db: Database.Database;
  try {
    db = openSqlite(file, { fileMustExist: true });
  } catch (err) {
    throw new BackupError(`${file} is not a readable SQLite database: ${(err as Error).message}`, { cause: err });
  }
  try {
    if (makeSelfContained) db.pragma("journal_mode = DELETE");
    const problems = (db.pragma("integrity_check(20)") as Record<string, string>[])
      .map((r) => Object.values(r)[0])
      .filter((v) => v !== "ok");
    if (problems.length > 0) throw new BackupError(`${file} fails integrity_check: ${problems.slice(0, 3).join("; ")}`);
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'workflows'").pluck().all();
    if (tables.length === 0) throw new BackupError(`${file} is not a spotkeep store (no workflows table)`);
    const id = storeIdentityOf(db);
    return { storeId: id?.storeId, generation: id?.generation };
  } catch (err) {
    if (err instanceof BackupError) throw err;
    throw new BackupError(`checking ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    db.close();
  }
}

function fsyncFile(file: string): void {
  const fd = openSync(file, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // not there
  }
}
