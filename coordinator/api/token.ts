/**
 * The admin bearer token. Generated at first start into the data dir (mode 0600) unless configured,
 * so a fresh install is never open; the CLI reads the same file when it runs on the same machine.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const TOKEN_FILE = "admin-token";

/**
 * Where the CLI looks for the coordinator's data dir (and its admin token) unless told:
 * $SPOTKEEP_DATA_DIR, else the coordinator's own default, ./spotkeep-data.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.SPOTKEEP_DATA_DIR || "spotkeep-data";
}

/** The configured token, or the one in `<dataDir>/admin-token`, created (0600) when missing. */
export function loadOrCreateAdminToken(dataDir: string, configured?: string): string {
  if (configured) {
    if (configured.length < 16) throw new Error("adminToken must be at least 16 characters");
    return configured;
  }
  const file = join(dataDir, TOKEN_FILE);
  if (existsSync(file)) return readTokenFile(file);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const token = randomBytes(24).toString("base64url");
  // "wx": never overwrite a token another process created between the check and the write.
  try {
    writeFileSync(file, `${token}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return readTokenFile(file);
    throw err;
  }
  chmodSync(file, 0o600);
  return token;
}

export function readTokenFile(file: string): string {
  const token = readFileSync(file, "utf8").trim();
  if (!token) throw new Error(`${file} is empty`);
  return token;
}

/** Constant-time comparison of a presented bearer token with the expected one. */
export function tokenMatches(presented: string | undefined, expected: string): boolean {
  if (!presented) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
