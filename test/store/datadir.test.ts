import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { loadOrCreateAdminToken, TokenFilePermissionError } from "../../coordinator/api/token.js";
import { DataDirLockedError, LOCK_INFO_FILE, openDataDir } from "../../coordinator/db/datadir.js";
import { openDatabase } from "../../coordinator/db/open.js";
import { startChild, tempDirs } from "./helpers.js";

const tmp = tempDirs();
const children: Array<{ kill(): Promise<void> }> = [];
afterEach(async () => {
  for (const c of children.splice(0)) await c.kill();
  tmp.cleanup();
});

const mode = (p: string) => statSync(p).mode & 0o777;

/** Run `fn` with a umask that would leave everything world-readable, restoring it after. */
function withUmask<T>(mask: number, fn: () => T): T {
  const old = process.umask(mask);
  try {
    return fn();
  } finally {
    process.umask(old);
  }
}

describe("data directory permissions", () => {
  it("creates the directory 0700 and its files 0600 even under umask 000", () => {
    const dir = join(tmp.make(), "a", "data");
    withUmask(0o000, () => {
      const d = openDataDir(dir);
      const db = openDatabase(join(dir, "coordinator.sqlite"));
      loadOrCreateAdminToken(dir);
      db.close();
      d.release();
    });
    expect(mode(dir)).toBe(0o700);
    for (const f of ["coordinator.lock", "coordinator.sqlite", "store-identity", "admin-token"])
      expect([f, mode(join(dir, f))]).toEqual([f, 0o600]);
  });

  it("tightens an existing 0755 directory and a 0644 database of ours", () => {
    const dir = tmp.make();
    chmodSync(dir, 0o755);
    const first = openDatabase(join(dir, "coordinator.sqlite"));
    first.close();
    chmodSync(join(dir, "coordinator.sqlite"), 0o644);
    const d = openDataDir(dir);
    const db = openDatabase(join(dir, "coordinator.sqlite"));
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, "coordinator.sqlite"))).toBe(0o600);
    expect(mode(join(dir, "coordinator.sqlite-wal"))).toBe(0o600);
    db.close();
    d.release();
  });
});

describe("one coordinator per data directory", () => {
  it("refuses a second holder in another process, naming the holder's pid; the lock dies with the holder", async () => {
    const dir = tmp.make();
    const holder = await startChild({ mode: "hold-lock", dir });
    children.push(holder);
    let refused: unknown;
    try {
      openDataDir(dir);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(DataDirLockedError);
    expect((refused as DataDirLockedError).holder?.pid).toBe(holder.pid);
    expect((refused as Error).message).toContain(`pid ${holder.pid}`);
    expect((refused as Error).message).toContain(dir);

    await holder.kill(); // SIGKILL: no cleanup code runs in the holder
    const d = openDataDir(dir);
    expect(JSON.parse(readFileSync(join(dir, LOCK_INFO_FILE), "utf8")).pid).toBe(process.pid);
    d.release();
    expect(existsSync(join(dir, LOCK_INFO_FILE))).toBe(false);
  });

  // Regression: a holder that dropped its DataDir lost the lock at the next garbage collection
  // (the driver closes a connection nobody references), and a second process took the directory.
  it("a holder that keeps no reference to its DataDir keeps the lock through a garbage collection", () => {
    const dir = tmp.make();
    openDataDir(dir);
    setFlagsFromString("--expose-gc");
    const gc = runInNewContext("gc") as () => void;
    for (let i = 0; i < 3; i++) gc();
    expect(() => openDataDir(dir)).toThrow(DataDirLockedError);
  });

  it("refuses a second holder in the same process until the first releases", () => {
    const dir = tmp.make();
    const a = openDataDir(dir);
    expect(() => openDataDir(dir)).toThrow(DataDirLockedError);
    a.release();
    a.release(); // idempotent
    const b = openDataDir(dir);
    b.release();
  });
});

describe("admin token file", () => {
  it("refuses an existing token file that others can read, with the chmod fix in the message", () => {
    const dir = tmp.make();
    const file = join(dir, "admin-token");
    writeFileSync(file, "an-old-token-0123456789\n");
    chmodSync(file, 0o644);
    expect(() => loadOrCreateAdminToken(dir)).toThrow(TokenFilePermissionError);
    expect(() => loadOrCreateAdminToken(dir)).toThrow(`chmod 600 ${file}`);
    chmodSync(file, 0o600);
    expect(loadOrCreateAdminToken(dir)).toBe("an-old-token-0123456789");
  });

  it("creates a new token file 0600 under umask 000", () => {
    const dir = join(tmp.make(), "fresh");
    mkdirSync(dir);
    const token = withUmask(0o000, () => loadOrCreateAdminToken(dir));
    expect(token.length).toBeGreaterThanOrEqual(16);
    expect(mode(join(dir, "admin-token"))).toBe(0o600);
  });
});
