import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { driverOrder, loadSqliteDriver, type PackageLoader, SqliteDriverError, sqliteDriver } from "./driver.js";

/** A stand-in for better-sqlite3's constructor: enough for the driver's in-memory probe. */
class FakeDatabase {
  constructor(readonly file: string) {}
  prepare() {
    return { pluck: () => ({ get: () => "3.99.0" }) };
  }
  close() {}
}

function notFound(name: string): Error {
  return Object.assign(new Error(`Cannot find module '${name}'\nRequire stack:\n- driver.ts`), { code: "MODULE_NOT_FOUND" });
}

/** A loader that has exactly `installed` (name → version) and records what was asked for. */
function loader(installed: Record<string, string>, asked: string[] = []): PackageLoader {
  return (name) => {
    asked.push(name);
    const version = installed[name];
    if (!version) throw notFound(name);
    return { main: FakeDatabase, version };
  };
}

describe("SQLite driver choice", () => {
  it("uses better-sqlite3 12 on Node 20, both on 22 (13 first), and only 13 on 24 and later", () => {
    expect(driverOrder(20)).toEqual(["better-sqlite3"]);
    expect(driverOrder(22)).toEqual(["better-sqlite3-13", "better-sqlite3"]);
    expect(driverOrder(24)).toEqual(["better-sqlite3-13"]);
    expect(driverOrder(26)).toEqual(["better-sqlite3-13"]);
  });

  it("never loads 13 on Node 20, even when a tree installed under a newer Node has it (it crashes Node 20 on load)", () => {
    const asked: string[] = [];
    const d = loadSqliteDriver("20.19.0", loader({ "better-sqlite3": "12.11.1", "better-sqlite3-13": "13.2.0" }, asked));
    expect(d).toMatchObject({ package: "better-sqlite3", version: "12.11.1", sqliteVersion: "3.99.0" });
    expect(asked).toEqual(["better-sqlite3"]);
  });

  it("falls back to 12 on Node 22 when 13 is not installed", () => {
    expect(loadSqliteDriver("22.12.0", loader({ "better-sqlite3": "12.11.1" }))).toMatchObject({ package: "better-sqlite3" });
  });

  it("refuses 12 on Node 24 and says how to get 13", () => {
    const asked: string[] = [];
    const load = () => loadSqliteDriver("24.11.0", loader({ "better-sqlite3": "12.11.1" }, asked));
    expect(load).toThrow(SqliteDriverError);
    expect(load).toThrow(/no SQLite driver for Node\.js 24\.11\.0: better-sqlite3-13 is not installed; .*npm ci/);
    expect(asked).not.toContain("better-sqlite3");
  });

  it("on Node 20 without 12 (its build failed) names the build tools", () => {
    expect(() => loadSqliteDriver("20.19.0", loader({}))).toThrow(/better-sqlite3 is not installed; .*python3, make and g\+\+/);
  });

  it("reports an installed addon that does not load on this Node.js with the fix, instead of crashing later", () => {
    const broken: PackageLoader = () => ({
      main: class {
        constructor() {
          throw new Error("was compiled against a different Node.js version using NODE_MODULE_VERSION 115");
        }
      },
      version: "12.11.1",
    });
    expect(() => loadSqliteDriver("22.12.0", broken)).toThrow(
      /better-sqlite3-13 12\.11\.1 is installed but does not load on Node\.js 22\.12\.0 \(was compiled .*\); reinstall/,
    );
  });

  it("loads the preferred driver for the Node.js running this test, and it works", () => {
    const d = sqliteDriver();
    const major = Number.parseInt(process.versions.node, 10);
    expect(d.package).toBe(driverOrder(major)[0]);
    expect(d.version).toMatch(major >= 22 ? /^13\./ : /^12\./);
    expect(d.sqliteVersion).toMatch(/^3\.\d+\.\d+$/);
    const db = new d.open(":memory:");
    expect(db.prepare("SELECT 40 + 2").pluck().get()).toBe(42);
    db.close();
  });

  it("is the only way into better-sqlite3: no other source imports or requires it as a value", () => {
    // Importing `better-sqlite3` directly loads major 12 on every Node.js, which aborts on Node 24
    // and later and is not even built there (doctor and a test did, and failed only on Node 24).
    const root = fileURLToPath(new URL("../../..", import.meta.url));
    const skip = new Set(["node_modules", "dist", ".git", "test-output"]);
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
        const rel = dir ? `${dir}/${e.name}` : e.name;
        if (e.isDirectory() && !skip.has(e.name)) walk(rel);
        else if (e.isFile() && /\.(ts|mts|mjs|js)$/.test(e.name)) files.push(rel);
      }
    };
    walk("");
    expect(files).toContain("cli/commands/doctor.ts");
    const valueImport =
      /^\s*import\s+(?!type\b)[^;]*?from\s+["']better-sqlite3(-13)?["']|require\(\s*["']better-sqlite3(-13)?["']\s*\)|import\(\s*["']better-sqlite3/m;
    const offenders = files.filter(
      (f) =>
        f !== "coordinator/db/sqlite/driver.ts" && !f.endsWith("driver.test.ts") && valueImport.test(readFileSync(`${root}/${f}`, "utf8")),
    );
    expect(offenders).toEqual([]);
  });
});
