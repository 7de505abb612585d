import { copyFileSync, existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type Database from "better-sqlite3";
import { openSqlite } from "../../coordinator/db/sqlite/driver.js";
import { afterEach, describe, expect, it, vi } from "vitest";
import { command as backupCommand } from "../../cli/commands/backup.js";
import { command as restoreCommand } from "../../cli/commands/restore-backup.js";
import { DataDirLockedError, openDataDir } from "../../coordinator/db/datadir.js";
import { BackupError, backupStore, restoreBackup } from "../../coordinator/db/backup.js";
import { openDatabase, readStoreIdentity, StoreOpenError, storeIdentityOf } from "../../coordinator/db/open.js";
import { startChild, tempDirs } from "./helpers.js";

const tmp = tempDirs();
const children: Array<{ kill(): Promise<void> }> = [];
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill();
  tmp.cleanup();
});

const rowCount = (db: Database.Database) => db.prepare("SELECT COUNT(*) FROM events").pluck().get() as number;
function addRows(db: Database.Database, n: number, from = 0): void {
  const insert = db.prepare("INSERT INTO events (at, instance, kind, message) VALUES (?, 'orders-db', 'test', ?)");
  for (let i = from; i < from + n; i++) insert.run(i, `row ${i}`);
}

describe("spotkeep backup (online)", () => {
  it("copies a store that another process has open, as one verified 0600 file carrying the store identity", async () => {
    const dir = tmp.make();
    const writer = await startChild({ mode: "write", dir, rows: 25 });
    children.push(writer);
    const out = join(tmp.make(), "backup.sqlite");
    const r = await backupStore(join(dir, "coordinator.sqlite"), out);
    expect(r.file).toBe(out);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(out, "..")).filter((f) => f !== "backup.sqlite")).toEqual([]); // self-contained: no -wal, no temporaries
    const side = readStoreIdentity(join(dir, "store-identity"))!;
    expect(r).toMatchObject({ storeId: side.storeId, generation: side.generation });
    const copy = openSqlite(out, { readonly: true });
    expect(rowCount(copy)).toBe(25);
    copy.close();

    // The writer dies; the backup's read-only connection left its WAL alone, so the store reopens.
    await writer.kill();
    const db = openDatabase(join(dir, "coordinator.sqlite"));
    expect(rowCount(db)).toBe(25);
    db.close();
  });

  it("says so when there is no store to back up", async () => {
    await expect(backupStore(join(tmp.make(), "coordinator.sqlite"), join(tmp.make(), "b.sqlite"))).rejects.toThrow(BackupError);
  });
});

describe("spotkeep restore-backup", () => {
  it("puts an older backup in place, keeps the replaced files aside, and the next start needs no flag", async () => {
    const dir = tmp.make();
    const file = join(dir, "coordinator.sqlite");
    let db = openDatabase(file);
    addRows(db, 3);
    const backup = join(tmp.make(), "b.sqlite");
    await backupStore(file, backup);
    addRows(db, 4, 3);
    db.close();

    // Copying the backup over by hand is refused as a rollback ...
    const manual = join(tmp.make(), "manual");
    copyFileSync(file, `${manual}.keep`);
    copyFileSync(backup, file);
    expect(() => openDatabase(file)).toThrow(StoreOpenError);
    copyFileSync(`${manual}.keep`, file);

    // ... restore-backup records it as the current store.
    const r = restoreBackup(dir, backup);
    expect(r.previous && existsSync(r.previous)).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readStoreIdentity(join(dir, "store-identity"))).toMatchObject({ storeId: r.storeId, generation: r.generation, state: "closed" });
    db = openDatabase(file);
    expect(rowCount(db)).toBe(3);
    expect(storeIdentityOf(db)?.storeId).toBe(r.storeId);
    db.close();

    // The replaced database is still intact beside it.
    const previous = openSqlite(r.previous!, { readonly: true });
    expect(rowCount(previous)).toBe(7);
    previous.close();
  });

  it("refuses while a coordinator holds the data directory", async () => {
    const dir = tmp.make();
    const db = openDatabase(join(dir, "coordinator.sqlite"));
    const backup = join(tmp.make(), "b.sqlite");
    await backupStore(join(dir, "coordinator.sqlite"), backup);
    db.close();
    const lock = openDataDir(dir);
    try {
      expect(() => restoreBackup(dir, backup)).toThrow(DataDirLockedError);
    } finally {
      lock.release();
    }
  });

  it("refuses a file that is not a spotkeep store and leaves the store alone", async () => {
    const dir = tmp.make();
    const db = openDatabase(join(dir, "coordinator.sqlite"));
    addRows(db, 2);
    db.close();
    const other = join(tmp.make(), "other.sqlite");
    const o = openSqlite(other);
    o.exec("CREATE TABLE x (y)");
    o.close();
    expect(() => restoreBackup(dir, other)).toThrow(/not a spotkeep store/);
    const again = openDatabase(join(dir, "coordinator.sqlite"));
    expect(rowCount(again)).toBe(2);
    again.close();
    expect(readdirSync(dir).filter((f) => f.includes("tmp") || f.includes("before-restore"))).toEqual([]);
  });
});

describe("the CLI subcommands", () => {
  it("spotkeep backup --data-dir DIR --out FILE, then spotkeep restore-backup --from FILE", async () => {
    const dir = tmp.make();
    const db = openDatabase(join(dir, "coordinator.sqlite"));
    addRows(db, 4);
    const out = join(tmp.make(), "nightly.sqlite");
    const lines: string[] = [];
    const write = vi.spyOn(process.stdout, "write").mockImplementation((s) => {
      lines.push(String(s));
      return true;
    });
    try {
      expect(await backupCommand.run(["--data-dir", dir, "--out", out, "--json"])).toBe(0);
      db.close();
      expect(await restoreCommand.run(["--data-dir", dir, "--from", out])).toBe(0);
    } finally {
      write.mockRestore();
    }
    expect(JSON.parse(lines[0]!)).toMatchObject({ file: out, storeId: expect.any(String) });
    expect(lines[1]).toMatch(/^restored store .* into .*coordinator\.sqlite; the database it replaced is kept as /);
    const again = openDatabase(join(dir, "coordinator.sqlite"));
    expect(rowCount(again)).toBe(4);
    again.close();
  });
});
