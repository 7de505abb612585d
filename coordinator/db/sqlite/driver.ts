/**
 * Which better-sqlite3 this process uses, chosen by the Node.js it runs on.
 *
 * package.json names two optional dependencies: `better-sqlite3` (major 12, a V8 addon built for
 * each Node ABI, compiled from source where no prebuilt binary can be fetched) and
 * `better-sqlite3-13` (an npm alias of major 13: Node-API, with prebuilt binaries inside the npm
 * package, engines >= 22, so npm skips it on Node 20). One package-lock serves every Node line:
 *  - Node >= 24: 13 only. 12 wraps its objects in node::ObjectWrap, whose destructor asserts a live
 *    Environment on Node 24 and later; a Statement the GC collects aborts the process.
 *  - Node 22 and 23: 13, else 12 (both run there).
 *  - Node 20 and 21: 12 only. 13's binary crashes Node 20 when it loads (SIGSEGV, not an
 *    exception), so it is never tried there, even when a tree installed under a newer Node has it.
 * The choice is made once, on first use, so commands that never open a store never load an addon.
 */
import { createRequire } from "node:module";
import type Database from "better-sqlite3";

export type SqliteDatabase = Database.Database;
export type SqliteOptions = Database.Options;
type SqliteConstructor = new (file: string, options?: SqliteOptions) => SqliteDatabase;

/** The packages (as named in node_modules) to try on a Node.js major, preferred first. */
export function driverOrder(nodeMajor: number): readonly string[] {
  if (nodeMajor >= 24) return ["better-sqlite3-13"];
  if (nodeMajor >= 22) return ["better-sqlite3-13", "better-sqlite3"];
  return ["better-sqlite3"];
}

export interface SqliteDriver {
  /** The name it is installed under: better-sqlite3 (12) or better-sqlite3-13. */
  package: string;
  /** better-sqlite3's own version, e.g. 13.2.0. */
  version: string;
  /** The SQLite library it carries, e.g. 3.50.4. */
  sqliteVersion: string;
  open: SqliteConstructor;
}

/** How to load a package (its main module and its package.json); tests inject their own. */
export type PackageLoader = (name: string) => { main: unknown; version: string };

const requireHere = createRequire(import.meta.url);
const loadInstalled: PackageLoader = (name) => ({
  main: requireHere(name),
  version: (requireHere(`${name}/package.json`) as { version?: string }).version ?? "unknown",
});

export class SqliteDriverError extends Error {
  override name = "SqliteDriverError";
}

function isNotInstalled(err: unknown, name: string): boolean {
  const e = err as { code?: string; message?: string };
  return e?.code === "MODULE_NOT_FOUND" && typeof e.message === "string" && e.message.includes(`'${name}'`);
}

/**
 * Loads the first package of driverOrder(nodeMajor) that is installed and opens an in-memory
 * database with it (an addon built for another Node ABI fails there, not at the first real open).
 * Throws SqliteDriverError naming the Node version, what was tried and how to fix it.
 */
export function loadSqliteDriver(nodeVersion: string = process.versions.node, load: PackageLoader = loadInstalled): SqliteDriver {
  const major = Number.parseInt(nodeVersion, 10);
  const order = driverOrder(major);
  const tried: string[] = [];
  for (const name of order) {
    let loaded: { main: unknown; version: string };
    try {
      loaded = load(name);
    } catch (err) {
      if (isNotInstalled(err, name)) {
        tried.push(`${name} is not installed`);
        continue;
      }
      throw new SqliteDriverError(`loading ${name} on Node.js ${nodeVersion}: ${(err as Error).message}`, { cause: err });
    }
    const open = ((loaded.main as { default?: unknown }).default ?? loaded.main) as SqliteConstructor;
    let sqliteVersion: string;
    try {
      const probe = new open(":memory:");
      sqliteVersion = String(probe.prepare("SELECT sqlite_version()").pluck().get());
      probe.close();
    } catch (err) {
      throw new SqliteDriverError(
        `${name} ${loaded.version} is installed but does not load on Node.js ${nodeVersion} (${(err as Error).message}); ` +
          "reinstall under this Node.js (npm ci, or npm rebuild better-sqlite3)",
        { cause: err },
      );
    }
    return { package: name, version: loaded.version, sqliteVersion, open };
  }
  const fix =
    major >= 22
      ? "reinstall spotkeep's dependencies under this Node.js (npm ci): npm installs better-sqlite3-13 on Node 22 and later"
      : "better-sqlite3 12 is built from source at install on Node 20 where no prebuilt binary can be downloaded: " +
        "install python3, make and g++, then npm ci (or npm rebuild better-sqlite3); or run spotkeep on Node.js 22, 24 or 26";
  throw new SqliteDriverError(`no SQLite driver for Node.js ${nodeVersion}: ${tried.join(", ")}; ${fix}`);
}

let chosen: SqliteDriver | undefined;

/** The driver for this process, loaded on first use. */
export function sqliteDriver(): SqliteDriver {
  chosen ??= loadSqliteDriver();
  return chosen;
}

/** `new Database(file, options)` with this process's driver. */
export function openSqlite(file: string, options?: SqliteOptions): SqliteDatabase {
  const { open } = sqliteDriver();
  return new open(file, options);
}
