/**
 * The store refuses damage at open, with real files: truncated database, WAL deleted after a
 * SIGKILL, random bytes in the WAL, damaged pages, replaced and rolled-back databases, and a full
 * disk (a 2 MiB tmpfs, root only).
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { openDataDir } from "../../coordinator/db/datadir.js";
import {
  inspectWal,
  openDatabase,
  readStoreIdentity,
  StoreOpenError,
  type StoreRefusal,
  storeIdentityOf,
} from "../../coordinator/db/open.js";
import { startChild, tempDirs } from "./helpers.js";

const tmp = tempDirs();
const children: Array<{ kill(): Promise<void> }> = [];
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill();
  tmp.cleanup();
});

const PAGE = 4096;
const FRAME = 24 + PAGE;

function addRows(db: Database.Database, n: number, from = 0): void {
  const insert = db.prepare("INSERT INTO events (at, instance, kind, message) VALUES (?, 'orders-db', 'test', ?)");
  for (let i = from; i < from + n; i++) insert.run(i, `row ${i} ${"x".repeat(200)}`);
}
const rowCount = (db: Database.Database) => db.prepare("SELECT COUNT(*) FROM events").pluck().get() as number;

/** A store with `rows` events, cleanly closed (everything in the main file). */
function closedStore(rows: number): { dir: string; file: string } {
  const dir = tmp.make();
  const file = join(dir, "coordinator.sqlite");
  const db = openDatabase(file);
  addRows(db, rows);
  db.close();
  return { dir, file };
}

/** A store whose writer was SIGKILLed with its writes in the WAL. */
async function crashedStore(rows: number, checkpointAfter?: number): Promise<{ dir: string; file: string }> {
  const dir = tmp.make();
  const child = await startChild({ mode: "write", dir, rows, checkpointAfter });
  await child.kill();
  return { dir, file: join(dir, "coordinator.sqlite") };
}

function refusal(fn: () => unknown): StoreOpenError {
  try {
    const db = fn() as Database.Database;
    db.close();
  } catch (err) {
    if (err instanceof StoreOpenError) return err;
    throw err;
  }
  throw new Error("expected the store to be refused");
}

function expectRefused(fn: () => unknown, kind: StoreRefusal, ...mentions: string[]): StoreOpenError {
  const err = refusal(fn);
  expect(err.kind).toBe(kind);
  for (const m of mentions) expect(err.message).toContain(m);
  return err;
}

function overwrite(file: string, offset: number, bytes: Buffer): void {
  const fd = openSync(file, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

describe("store identity", () => {
  it("first start creates the database and the side file; every open and clean close moves the generation on", () => {
    const { dir, file } = closedStore(3);
    const side = readStoreIdentity(join(dir, "store-identity"))!;
    expect(side).toMatchObject({ state: "closed", generation: 2 });
    const db = openDatabase(file);
    expect(storeIdentityOf(db)).toEqual({ storeId: side.storeId, generation: 3 });
    expect(readStoreIdentity(join(dir, "store-identity"))).toMatchObject({ storeId: side.storeId, generation: 3, state: "open" });
    expect(rowCount(db)).toBe(3);
    db.close();
    expect(readStoreIdentity(join(dir, "store-identity"))).toMatchObject({ generation: 4, state: "closed" });
  });

  it("reopens after a SIGKILL with the writes that were in the WAL", async () => {
    const { file } = await crashedStore(40);
    expect(inspectWal(`${file}-wal`).state).toBe("intact");
    const db = openDatabase(file);
    expect(rowCount(db)).toBe(40);
    db.close();
  });

  it("accepts a database from before store identities and gives it one", () => {
    const { dir, file } = closedStore(2);
    unlinkSync(join(dir, "store-identity"));
    const db = openDatabase(file, { acceptRestoredStore: true });
    db.exec("DROP TABLE store_meta; DELETE FROM migrations WHERE version = 3");
    db.close();
    unlinkSync(join(dir, "store-identity"));
    const again = openDatabase(file);
    expect(storeIdentityOf(again)?.storeId).toMatch(/^[0-9a-f-]{36}$/);
    expect(rowCount(again)).toBe(2);
    again.close();
  });

  it("refuses a database whose side file is missing, unless told to adopt it", () => {
    const { dir, file } = closedStore(2);
    unlinkSync(join(dir, "store-identity"));
    expectRefused(() => openDatabase(file), "identity-missing", "store-identity", "--accept-restored-store");
    const db = openDatabase(file, { acceptRestoredStore: true });
    expect(rowCount(db)).toBe(2);
    db.close();
  });

  it("refuses another store's database (replaced)", () => {
    const a = closedStore(2);
    const b = closedStore(5);
    copyFileSync(b.file, a.file);
    expectRefused(() => openDatabase(a.file), "replaced", "was replaced", "spotkeep restore-backup", "--accept-restored-store");
  });

  it("refuses an older copy of the same store (rolled back), and adopts it when told", () => {
    const { dir, file } = closedStore(2);
    const old = join(dir, "old.sqlite");
    copyFileSync(file, old);
    const db = openDatabase(file);
    addRows(db, 3, 2);
    db.close();
    copyFileSync(old, file);
    expectRefused(() => openDatabase(file), "rolled-back", "older than generation", "spotkeep restore-backup", "--accept-restored-store");
    const lines: string[] = [];
    const adopted = openDatabase(file, { acceptRestoredStore: true, log: (l) => lines.push(l) });
    expect(rowCount(adopted)).toBe(2);
    expect(lines.join("\n")).toContain("--accept-restored-store");
    adopted.close();
    const next = openDatabase(file); // adopted: no flag needed from now on
    next.close();
  });
});

describe("damaged or lost files", () => {
  it("refuses a database truncated to zero bytes as empty; --accept-empty-store starts a new store", () => {
    const { dir, file } = closedStore(5);
    const before = readStoreIdentity(join(dir, "store-identity"))!;
    truncateSync(file, 0);
    expectRefused(() => openDatabase(file), "empty", "is empty", "spotkeep restore-backup", "--accept-empty-store");
    const db = openDatabase(file, { acceptEmptyStore: true });
    expect(rowCount(db)).toBe(0);
    expect(storeIdentityOf(db)?.storeId).not.toBe(before.storeId);
    db.close();
  });

  it("refuses a database truncated to half its size as damaged", () => {
    const { file } = closedStore(600);
    const size = statSync(file).size;
    expect(size).toBeGreaterThan(20 * PAGE);
    truncateSync(file, Math.floor(size / PAGE / 2) * PAGE);
    expectRefused(() => openDatabase(file), "damaged", "restore-backup");
  });

  it("refuses a store whose WAL was deleted after a crash before any checkpoint (empty main file)", async () => {
    const { file } = await crashedStore(30);
    unlinkSync(`${file}-wal`);
    rmSync(`${file}-shm`, { force: true });
    expectRefused(() => openDatabase(file), "empty", "--accept-empty-store");
  });

  it("refuses a store whose WAL was deleted after a crash, when the main file already has the latest generation", async () => {
    const { file } = await crashedStore(30, 10);
    unlinkSync(`${file}-wal`);
    rmSync(`${file}-shm`, { force: true });
    expectRefused(() => openDatabase(file), "wal-removed", "without a clean shutdown", "--accept-restored-store");
    const db = openDatabase(file, { acceptRestoredStore: true });
    expect(rowCount(db)).toBe(10); // what the checkpoint had moved into the main file
    db.close();
  });

  it("refuses a WAL with random bytes in an early frame (SQLite would drop every later transaction)", async () => {
    const { file } = await crashedStore(40);
    const wal = `${file}-wal`;
    expect(statSync(wal).size).toBeGreaterThan(32 + 20 * FRAME);
    overwrite(wal, 32 + 5 * FRAME + 24 + 1000, randomBytes(64));
    const err = expectRefused(() => openDatabase(file), "wal-damaged", "fails its checksum", "--accept-restored-store");
    expect(err.message).toMatch(/\d+ committed transactions follow/);
    const db = openDatabase(file, { acceptRestoredStore: true });
    expect(rowCount(db)).toBeLessThan(40);
    expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
    db.close();
  });

  it("refuses a WAL whose header was overwritten", async () => {
    const { file } = await crashedStore(20);
    overwrite(`${file}-wal`, 0, randomBytes(32));
    expectRefused(() => openDatabase(file), "wal-damaged", "bad WAL header");
  });

  it("takes a damaged last frame for a torn last transaction and opens without it", async () => {
    const { file } = await crashedStore(20);
    const wal = `${file}-wal`;
    const frames = Math.floor((statSync(wal).size - 32) / FRAME);
    overwrite(wal, 32 + (frames - 1) * FRAME + 24 + 10, randomBytes(32));
    expect(inspectWal(wal).state).toBe("intact");
    const db = openDatabase(file);
    expect(rowCount(db)).toBe(19);
    db.close();
  });

  it("refuses damaged pages in the main file", () => {
    const { file } = closedStore(600);
    const pages = statSync(file).size / PAGE;
    overwrite(file, Math.floor(pages / 2) * PAGE, randomBytes(3 * PAGE));
    expectRefused(() => openDatabase(file), "damaged", "is damaged", "restore-backup");
  });

  it("refuses a file that is not a database at all", () => {
    const { file } = closedStore(5);
    overwrite(file, 0, randomBytes(100));
    expectRefused(() => openDatabase(file), "damaged", "restore-backup");
  });

  it("refuses an unreadable side file with what to do", () => {
    const { dir, file } = closedStore(1);
    overwrite(join(dir, "store-identity"), 0, Buffer.from("garbage"));
    expectRefused(() => openDatabase(file), "identity-unreadable", "--accept-restored-store");
  });
});

// ---------- disk full ----------

const root = process.getuid?.() === 0;
const MOUNT_PREFIX = "spotkeep-store-tmpfs-";
if (!root) console.log("test/store/damage: disk-full cases skipped (mounting a tmpfs needs root)");

/** Unmount and remove tmpfs mounts a killed earlier run left behind. */
function reapMounts(): void {
  for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const target = line.split(" ")[1] ?? "";
    if (target.startsWith(join(tmpdir(), MOUNT_PREFIX))) {
      execFileSync("umount", ["-l", target]);
      rmSync(target, { recursive: true, force: true });
    }
  }
}

/** Write `file` until the filesystem is full. */
function fill(file: string): void {
  const fd = openSync(file, "w");
  try {
    const chunk = Buffer.alloc(4096, 1);
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
  } finally {
    closeSync(fd);
  }
}

/** Open and close the store: its row count, or the refusal's kind (any other exception fails the test). */
function openOrRefusal(file: string): { rows: number } | { refused: StoreRefusal; message: string } {
  try {
    const db = openDatabase(file);
    const rows = rowCount(db);
    db.close();
    return { rows };
  } catch (err) {
    if (!(err instanceof StoreOpenError)) throw err;
    return { refused: err.kind, message: err.message };
  }
}

describe.skipIf(!root)("disk full (2 MiB tmpfs)", () => {
  beforeAll(reapMounts);
  afterAll(reapMounts);

  it("a write raises SQLITE_FULL and leaves the store intact; a reopen while full fails cleanly; after space is freed it reopens", () => {
    const mnt = mkdtempSync(join(tmpdir(), MOUNT_PREFIX));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt]);
    try {
      const dir = join(mnt, "data");
      const file = join(dir, "coordinator.sqlite");
      let lock = openDataDir(dir);
      let db = openDatabase(file);
      addRows(db, 20);

      const filler = join(mnt, "filler");
      fill(filler);

      let written = 20;
      let failure: unknown;
      for (let i = 0; i < 5000 && !failure; i++) {
        try {
          db.prepare("INSERT INTO events (at, instance, kind, message) VALUES (?, 'orders-db', 'big', ?)").run(i, "y".repeat(8000));
          written++;
        } catch (err) {
          failure = err;
        }
      }
      expect((failure as { code?: string }).code).toBe("SQLITE_FULL");
      expect(rowCount(db)).toBe(written);
      expect(db.pragma("quick_check", { simple: true })).toBe("ok");
      expect(() => db.close()).not.toThrow();
      lock.release();

      // Restart while still full: a clear StoreOpenError or a working store, never anything else.
      lock = openDataDir(dir);
      try {
        const again = openDatabase(file);
        expect(rowCount(again)).toBe(written);
        again.close();
      } catch (err) {
        expect(err).toBeInstanceOf(StoreOpenError);
        expect(["disk-full", "io"]).toContain((err as StoreOpenError).kind);
        expect((err as Error).message).toMatch(/full|SQLITE_/);
      }
      lock.release();

      unlinkSync(filler);
      lock = openDataDir(dir);
      db = openDatabase(file);
      expect(rowCount(db)).toBe(written);
      expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
      addRows(db, 5, 1000);
      db.close();
      lock.release();
      db = openDatabase(file);
      expect(rowCount(db)).toBe(written + 5);
      db.close();

      // A cleanly stopped store (no WAL, no shared-memory file) started on a full disk: SQLite needs
      // new space for both, so this start fails, with the disk named.
      fill(filler);
      expect(openOrRefusal(file)).toMatchObject({ refused: "disk-full", message: expect.stringContaining("the disk is full") });
      unlinkSync(filler);
      expect(openOrRefusal(file)).toEqual({ rows: written + 5 });
    } finally {
      execFileSync("umount", ["-l", mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });
});
