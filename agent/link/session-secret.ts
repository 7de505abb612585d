/**
 * The per-generation session secret: 32 random bytes (base64url) the agent creates at its first
 * start on an EC2 instance and presents in every `hello`. The identity document proves the
 * instance but is readable by any process that reaches IMDS; the coordinator registers this
 * secret at the instance's first hello and requires it afterwards (trust on first use).
 *
 * It lives in `<stateDir>/session/secret.json` (directory 0700, file 0600, root-only as the agent
 * runs as root) together with the instance id it belongs to. A replacement booted from an image
 * of an earlier generation's root disk carries that generation's file: a file bound to another
 * instance id is replaced by a fresh secret, never reused. Looser permissions found on an existing
 * file or directory are tightened (and logged); the secret is kept, since a new one would be
 * refused by the coordinator that registered the old one.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log.js";

export const SESSION_DIR = "session";
export const SESSION_SECRET_FILE = "secret.json";
const SECRET_BYTES = 32;

interface SecretFile {
  instanceId: string;
  secret: string;
  createdAt: string;
}

export function newSessionSecret(): string {
  return randomBytes(SECRET_BYTES).toString("base64url");
}

/**
 * This instance's session secret, created on first use. Throws (saying what failed) when the
 * secret cannot be read or stored: an agent that would present a different secret after every
 * restart must not run silently.
 */
export function loadSessionSecret(stateDir: string, instanceId: string, log: Logger): string {
  const dir = join(stateDir, SESSION_DIR);
  const path = join(dir, SESSION_SECRET_FILE);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  tighten(dir, 0o700, log);
  const existing = readSecretFile(path, log);
  if (existing && existing.instanceId === instanceId) {
    tighten(path, 0o600, log);
    return existing.secret;
  }
  if (existing)
    log.info("session secret belongs to another instance (root disk restored from an image); creating a new one", {
      secretInstanceId: existing.instanceId,
      instanceId,
    });
  const file: SecretFile = { instanceId, secret: newSessionSecret(), createdAt: new Date().toISOString() };
  const tmp = `${path}.tmp`;
  rmSync(tmp, { force: true });
  try {
    const fd = openSync(tmp, "wx", 0o600);
    try {
      writeSync(fd, JSON.stringify(file));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    fsyncDir(dir);
  } catch (err) {
    throw new Error(`storing the agent's session secret in ${path}: ${(err as Error).message}`, { cause: err });
  }
  return file.secret;
}

function readSecretFile(path: string, log: Logger): SecretFile | null {
  let raw: string;
  try {
    raw = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new Error(`reading the agent's session secret ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const f = JSON.parse(raw) as Partial<SecretFile>;
    if (typeof f.instanceId === "string" && typeof f.secret === "string" && /^[A-Za-z0-9_-]{43}$/.test(f.secret)) {
      return { instanceId: f.instanceId, secret: f.secret, createdAt: String(f.createdAt ?? "") };
    }
  } catch {
    /* reported below */
  }
  log.warn("session secret file is unreadable; creating a new one (the coordinator may refuse it)", { path });
  return null;
}

function tighten(path: string, mode: number, log: Logger): void {
  const st = statSync(path);
  if ((st.mode & 0o777) !== mode) {
    log.warn("tightening permissions of the agent's session secret", { path, was: (st.mode & 0o777).toString(8), now: mode.toString(8) });
    chmodSync(path, mode);
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* best effort: the file itself is fsync'd */
  }
}
