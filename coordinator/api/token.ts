/**
 * The admin bearer token. Generated at first start into the data dir (mode 0600) unless configured,
 * so a fresh install is never open; the CLI reads the same file when it runs on the same machine.
 * An existing token file that others can read or write is refused, not silently tightened: the
 * token may already have leaked, and only the operator can decide to rotate it.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
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
  if (existsSync(file)) return readPrivateTokenFile(file);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const token = randomBytes(24).toString("base64url");
  // "wx": never overwrite a token another process created between the check and the write.
  try {
    writeFileSync(file, `${token}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return readPrivateTokenFile(file);
    throw err;
  }
  chmodSync(file, 0o600);
  return token;
}

/** A token file open to group or others (mode & 077), refused with the fix in the message. */
export class TokenFilePermissionError extends Error {
  override name = "TokenFilePermissionError";
  readonly code = "TOKEN_FILE_PERMISSIONS";
}

/** Read the coordinator's own token file, refusing one that anyone but its owner can read or write. */
export function readPrivateTokenFile(file: string): string {
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0)
    throw new TokenFilePermissionError(
      `${file} has mode 0${mode.toString(8)}: the admin token must be readable by its owner only. ` +
        `Run chmod 600 ${file} (and, if other users could have read it, delete the file instead so that a new token is generated at the next start)`,
    );
  return readTokenFile(file);
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
