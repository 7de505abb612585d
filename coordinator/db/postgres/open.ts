/**
 * Opening the PostgreSQL store for the coordinator service. The data directory still holds the
 * admin token and the directory lock; a marker file in it (`store-postgres`) records that this
 * coordinator's store is in PostgreSQL, so `spotkeep backup` / `restore-backup` on that directory
 * point at pg_dump / pg_restore instead of looking for an SQLite file.
 */
import { existsSync, readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { writePrivateFileAtomic } from "../datadir.js";
import { describePostgresUrl, PostgresStore, type PostgresStoreOptions } from "./index.js";

export const POSTGRES_MARKER_FILE = "store-postgres";

export interface PostgresStoreConfig {
  url: string;
  poolSize: number;
  connectTimeoutSeconds: number;
}

/** Opens the store and marks the data directory as one whose store lives in PostgreSQL. */
export async function openPostgresStore(
  dataDir: string,
  cfg: PostgresStoreConfig,
  opts: Pick<PostgresStoreOptions, "now" | "fence" | "log">,
): Promise<PostgresStore> {
  const store = await PostgresStore.open(cfg.url, {
    ...opts,
    poolSize: cfg.poolSize,
    connectTimeoutMs: cfg.connectTimeoutSeconds * 1000,
  });
  const where = describePostgresUrl(cfg.url);
  writePrivateFileAtomic(join(dataDir, POSTGRES_MARKER_FILE), `${JSON.stringify({ backend: "postgres", at: where })}\n`);
  opts.log?.(`store: PostgreSQL at ${where}`);
  return store;
}

/** Where the store of the coordinator using `dataDir` lives in PostgreSQL (host:port/db), or null. */
export function postgresStoreOf(dataDir: string): string | null {
  const file = join(dataDir, POSTGRES_MARKER_FILE);
  if (!existsSync(file)) return null;
  try {
    const at = (JSON.parse(readFileSync(file, "utf8")) as { at?: unknown }).at;
    return typeof at === "string" ? at : "PostgreSQL";
  } catch {
    return "PostgreSQL";
  }
}

/** The data directory's coordinator is back on SQLite: the marker no longer applies. */
export function clearPostgresMarker(dataDir: string): void {
  const file = join(dataDir, POSTGRES_MARKER_FILE);
  if (existsSync(file)) unlinkSync(file);
}
