import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type Database from "better-sqlite3";
import { openSqlite } from "./driver.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GroupCommit } from "./group-commit.js";
import { SqliteStore } from "./index.js";

let dir: string;
let db: Database.Database;
let reader: Database.Database;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-group-"));
  db = openSqlite(join(dir, "g.sqlite"));
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
  db.exec("CREATE TABLE p (id INTEGER PRIMARY KEY)");
  db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL, p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)");
  // Another connection sees only what is committed.
  reader = openSqlite(join(dir, "g.sqlite"), { readonly: true });
});
afterEach(() => {
  reader.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const committed = () => (reader.prepare("SELECT id FROM t ORDER BY id").all() as Array<{ id: number }>).map((r) => r.id);
const insert = (id: number, v: string | null = "x", p: number | null = null) =>
  db.prepare("INSERT INTO t (id, v, p) VALUES (?, ?, ?)").run(id, v, p);

describe("GroupCommit", () => {
  it("calls of one turn share one commit, and none resolves before it is committed", async () => {
    const g = new GroupCommit(db);
    const seen: number[][] = [];
    const calls = [1, 2, 3].map((id) => g.run(() => insert(id)).then(() => seen.push(committed())));
    // Run at once, inside the open transaction: not visible to another connection yet.
    expect(g.open).toBe(true);
    expect(committed()).toEqual([]);
    await Promise.all(calls);
    expect(seen).toEqual([
      [1, 2, 3],
      [1, 2, 3],
      [1, 2, 3],
    ]);
    expect(g.stats).toEqual({ commits: 1, calls: 3 });
    await g.run(() => insert(4));
    expect(g.stats).toEqual({ commits: 2, calls: 4 });
  });

  it("a call that throws leaves nothing of its own behind and the rest of the group commits", async () => {
    const g = new GroupCommit(db);
    const a = g.run(() => insert(1));
    const bad = g.run(() => {
      insert(2);
      insert(3, null); // NOT NULL: throws after the first insert of this call
    });
    const c = g.run(() => insert(4));
    await expect(bad).rejects.toThrow(/NOT NULL/);
    await Promise.all([a, c]);
    expect(committed()).toEqual([1, 4]);
  });

  it("a commit that fails rejects every call in the group and stores none of them", async () => {
    const g = new GroupCommit(db);
    const a = g.run(() => insert(1));
    // The deferred foreign key is checked at COMMIT.
    const b = g.run(() => insert(2, "x", 99));
    await expect(a).rejects.toThrow(/FOREIGN KEY/);
    await expect(b).rejects.toThrow(/FOREIGN KEY/);
    expect(committed()).toEqual([]);
    expect(db.inTransaction).toBe(false);
    // The next group starts clean.
    await g.run(() => insert(5));
    expect(committed()).toEqual([5]);
  });
});

describe("SqliteStore with group commits", () => {
  it("a transaction waits for the open group, and single calls wait for the transaction", async () => {
    const store = SqliteStore.open(join(dir, "store.sqlite"));
    try {
      const spec = { name: "db" } as never;
      const first = store.instances.insert("a", spec, "running");
      // Opened while the group is open: BEGIN must wait for its commit.
      const tx = store.tx(async (t) => {
        await t.instances.insert("b", spec, "running");
        return (await t.instances.get("a"))?.state;
      });
      // Called before the transaction began: it runs in the open group and sees no "b" yet.
      const before = store.instances.get("b");
      await first;
      expect(await before).toBeNull();
      expect(await tx).toBe("running");
      expect((await store.instances.get("b"))?.state).toBe("running");
      expect(store.group.stats.commits).toBeGreaterThanOrEqual(2);
    } finally {
      await store.close();
    }
  });
});
