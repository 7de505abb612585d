/**
 * The store contract suite (contract.suite.ts) and the workflow engine's durable semantics
 * (engine.suite.ts) against both backends: SqliteStore on a temporary file, PostgresStore on a
 * fresh database of a throwaway PostgreSQL server (skipped with the reason when there is none).
 * Then what only the PostgreSQL store has: several stores (coordinators) on one database, the
 * write fence, and a server that goes away and comes back.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../coordinator/db/migrations.js";
import { PostgresStore } from "../../coordinator/db/postgres/index.js";
import { openPlainDatabase, SqliteStore } from "../../coordinator/db/sqlite/index.js";
import type { StatefulInstanceSpec } from "../../shared/spec.js";
import { scaledClock } from "../../shared/clock.js";
import { WorkflowEngine } from "../../coordinator/workflow/engine.js";
import { type PostgresServer, postgresUnavailable, startPostgres } from "../support/pg-server.js";
import { storeContract } from "./contract.suite.js";
import { engineContract } from "./engine.suite.js";

describe("SQLite store", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "spotkeep-contract-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const backend = { open: async (now: () => number) => SqliteStore.open(join(dir, "store.sqlite"), now) };
  describe("store contract", () => storeContract(backend));
  describe("workflow engine on the store", () => engineContract(backend));
});

const why = postgresUnavailable();

async function until(ok: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + 10_000;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(why !== null)(`PostgreSQL store${why ? ` (skipped: ${why})` : ""}`, () => {
  let server: PostgresServer;
  let url: string;
  let n = 0;
  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(() => server?.stop());
  beforeEach(() => {
    url = server.createDatabase(`contract_${++n}`);
  });
  const backend = { open: async (now: () => number) => PostgresStore.open(url, { now }) };
  describe("store contract", () => storeContract(backend));
  describe("workflow engine on the store", () => engineContract(backend));

  describe("several coordinators on one database", () => {
    const stores: PostgresStore[] = [];
    const open = async (opts: Parameters<typeof PostgresStore.open>[1] = {}) => {
      const s = await PostgresStore.open(url, opts);
      stores.push(s);
      return s;
    };
    afterEach(async () => {
      for (const s of stores.splice(0)) await s.close().catch(() => undefined);
    });
    const spec = { name: "db" } as StatefulInstanceSpec;

    it("has the SQLite store's migration history, tables and columns (plus row_seq, SQLite's implicit rowid)", async () => {
      const pg = await open();
      const dir = mkdtempSync(join(tmpdir(), "spotkeep-contract-"));
      const lite = openPlainDatabase(join(dir, "store.sqlite"));
      try {
        const liteMigrations = lite.prepare("SELECT version, name FROM migrations ORDER BY version").all();
        expect((await pg.pool.query("SELECT version, name FROM migrations ORDER BY version")).rows).toEqual(liteMigrations);
        const tables = (
          lite.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as {
            name: string;
          }[]
        ).map((r) => r.name);
        const pgColumns = (
          await pg.pool.query<{ table_name: string; column_name: string }>(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position",
          )
        ).rows;
        expect([...new Set(pgColumns.map((c) => c.table_name))].sort()).toEqual([...tables].sort());
        for (const table of tables) {
          const liteCols = (lite.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name).sort();
          const pgCols = pgColumns
            .filter((c) => c.table_name === table && c.column_name !== "row_seq")
            .map((c) => c.column_name)
            .sort();
          expect({ table, columns: pgCols }).toEqual({ table, columns: liteCols });
        }
      } finally {
        lite.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("migrates once when several open the same empty database at the same time", async () => {
      const all = await Promise.all([open(), open(), open(), open()]);
      const versions = (
        await all[0]!.pool.query<{ version: number; name: string }>("SELECT version, name FROM migrations ORDER BY version")
      ).rows;
      expect(versions.map((v) => v.version)).toEqual(MIGRATIONS.map((m) => m.version));
      expect(versions[0]?.name).toBe("initial");
    });

    it("serialises writers across stores: a write of one waits for the other's open transaction", async () => {
      const a = await open({ now: () => 1 });
      const b = await open({ now: () => 2 });
      await a.instances.insert("db", spec, "running");
      let release!: () => void;
      const hold = new Promise<void>((r) => (release = r));
      let inside!: () => void;
      const entered = new Promise<void>((r) => (inside = r));
      const tx = a.tx(async (t) => {
        const g = (await t.instances.get("db"))!.generation;
        inside();
        await hold;
        await t.instances.setCurrentGeneration("db", g + 1);
      });
      await entered;
      // B's read-modify-write starts while A's is open: it must see A's result, not the value before it.
      const other = b.tx(async (t) => {
        const g = (await t.instances.get("db"))!.generation;
        await t.instances.setCurrentGeneration("db", g + 10);
      });
      let done = false;
      void other.then(() => (done = true));
      try {
        await new Promise((r) => setTimeout(r, 200));
        expect(done).toBe(false);
        // Reads are not held up by another store's transaction (a third coordinator's here); they see the last commit.
        const c = await open();
        expect((await c.instances.get("db"))?.generation).toBe(0);
      } finally {
        release();
      }
      await Promise.all([tx, other]);
      expect((await b.instances.get("db"))?.generation).toBe(11);
    });

    it("runs the fence after the write lock and before the work; a refusing fence leaves nothing, reads are not fenced", async () => {
      const calls: string[] = [];
      let allow = true;
      const s = await open({
        fence: async (client) => {
          const held = await client.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()");
          calls.push(`fence (advisory locks held: ${held.rows[0].n})`);
          if (!allow) throw new Error("not the leader any more (epoch 3 < 4)");
        },
      });
      await s.instances.insert("db", spec, "running");
      expect(calls).toEqual(["fence (advisory locks held: 1)"]);
      allow = false;
      const before = await s.counts();
      await expect(s.events.add("db", "k", "m")).rejects.toThrow("not the leader any more");
      await expect(
        s.tx(async (t) => {
          calls.push("work");
          await t.events.add("db", "k", "m");
        }),
      ).rejects.toThrow("not the leader any more");
      expect(calls).not.toContain("work");
      expect(await s.counts()).toEqual(before);
      expect((await s.instances.get("db"))?.state).toBe("running");
      expect(await s.instances.list()).toHaveLength(1);
    });

    it("fails calls while the server is down and works again when it is back, with no reopen", async () => {
      const logged: string[] = [];
      const s = await open({ connectTimeoutMs: 1000, log: (l) => logged.push(l) });
      await s.instances.insert("db", spec, "running");
      await s.instances.get("db"); // a pooled idle connection that the halt breaks
      server.halt();
      try {
        const down = { name: "PostgresUnavailableError", code: "STORE_UNAVAILABLE" };
        await expect(s.instances.get("db")).rejects.toMatchObject(down);
        await expect(s.events.add("db", "k", "lost")).rejects.toMatchObject(down);
        await expect(s.tx(async (t) => t.events.add("db", "k", "lost"))).rejects.toMatchObject(down);
        await expect(s.counts()).rejects.toMatchObject(down);
      } finally {
        server.start();
      }
      await s.events.add("db", "k", "after the restart");
      expect((await s.events.list("db")).map((e) => e.message)).toEqual(["after the restart"]);
      expect((await s.instances.get("db"))?.state).toBe("running");
      expect(await s.tx(async (t) => (await t.instances.get("db"))?.name)).toBe("db");
    });

    it("lets a workflow wait out a database outage: a step that ends while the server is down is recorded once it is back", async () => {
      const s = await open({ connectTimeoutMs: 500 });
      let finishStep!: () => void;
      const stepMayEnd = new Promise<void>((r) => (finishStep = r));
      let runs = 0;
      const engine = new WorkflowEngine({
        store: s,
        clock: scaledClock(1),
        runbooks: {
          b: async (ctx) => {
            const a = await ctx.step("launch", async () => {
              runs++;
              await stepMayEnd;
              return "i-1";
            });
            return ctx.step("attach", async () => `${a}+vol-1`);
          },
        },
      });
      try {
        const id = await engine.start("b", "db", null);
        await until(async () => (await s.steps.get(id, 1))?.status === "running");
        server.halt();
        try {
          finishStep(); // the step's work is done; recording it fails until the server is back
          await new Promise((r) => setTimeout(r, 700));
        } finally {
          server.start();
        }
        const wf = await engine.wait(id);
        expect(wf).toMatchObject({ status: "succeeded", result: "i-1+vol-1" });
        expect(runs).toBe(1);
        expect((await s.steps.list(id)).map((x) => [x.name, x.status])).toEqual([
          ["launch", "done"],
          ["attach", "done"],
        ]);
      } finally {
        await engine.stop();
      }
    });

    it("keeps free text with a NUL character (which PostgreSQL text cannot hold) as U+FFFD instead of failing the write", async () => {
      const s = await open();
      await s.events.add("db", "agent-impostor", "bad hello: \u0000\u0000 in the secret");
      await s.agentReports.record("i-1", "notice", "n\u00001", { text: "\u0000 stays in JSON" });
      expect((await s.events.list("db"))[0]?.message).toBe("bad hello: \uFFFD\uFFFD in the secret");
      expect((await s.agentReports.get("i-1", "notice", "n\uFFFD1"))?.data).toEqual({ text: "\u0000 stays in JSON" });
    });

    it("frees the write lock of a transaction left idle (a paused holder) after the idle-in-transaction timeout", async () => {
      const paused = await open({ idleInTransactionTimeoutMs: 500 });
      const other = await open();
      await paused.instances.insert("db", spec, "running");
      let wake!: () => void;
      const sleeping = new Promise<void>((r) => (wake = r));
      const stuck = paused.tx(async (t) => {
        await t.events.add("db", "k", "never committed");
        await sleeping;
        await t.events.add("db", "k", "after the pause");
      });
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, 50));
      await other.events.add("db", "k", "the other coordinator writes");
      expect(Date.now() - t0).toBeLessThan(10_000);
      wake();
      await expect(stuck).rejects.toThrow();
      expect((await other.events.list("db")).map((e) => e.message)).toEqual(["the other coordinator writes"]);
      // The paused store's pool drops the broken connection and carries on.
      await paused.events.add("db", "k", "later");
      expect(await other.events.list("db")).toHaveLength(2);
    });
  });
});
