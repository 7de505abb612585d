/**
 * The per-generation session secret: 32 random bytes (base64url) the agent creates at its first
 * start on an EC2 instance and presents in every `hello`. The identity document proves the
 * instance but is readable by any process that reaches IMDS; the coordinator registers this
 * secret at the instance's first hello and requires it afterwards.
 *
 * It lives in `<stateDir>/session/secret.json` (directory 0700, file 0600, root-only as the agent
 * runs as root) together with the instance id it belongs to. The state directory is on the root
 * disk, so a replacement booted from an image of an earlier generation's root (persistence.root)
 * finds that generation's file: the agent creates a fresh secret for its own instance and keeps the
 * earlier one beside it as `carried`, which it presents in its hellos. The coordinator knows which
 * generation's root the image was made from and registers the new secret only after a first hello
 * proves the carried one, so a process on the instance that cannot read this file cannot register
 * first. A fresh root (no file) carries nothing and the first hello is trusted on first use.
 *
 * Looser permissions found on an existing file or directory are tightened (and logged); the secret
 * is kept, since a new one would be refused by the coordinator that registered the old one.
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
  /** The secret of the earlier instance whose root this one booted from, and that instance's id. */
  carried?: { instanceId: string; secret: string };
}

/** What the agent presents in its hellos. */
export interface SessionSecrets {
  /** This instance's own secret. */
  secret: string;
  /** The secret of the earlier generation whose root this instance booted from; null on a fresh root. */
  carried: string | null;
}

const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function newSessionSecret(): string {
  return randomBytes(SECRET_BYTES).toString("base64url");
}

/**
 * This instance's session secret, created on first use, and the secret the root carries from an
 * earlier instance, if any. Throws (saying what failed) when the secret cannot be read or stored:
 * an agent that would present a different secret after every restart must not run silently.
 */
export function loadSessionSecret(stateDir: string, instanceId: string, log: Logger): SessionSecrets {
  const dir = join(stateDir, SESSION_DIR);
  const path = join(dir, SESSION_SECRET_FILE);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  tighten(dir, 0o700, log);
  const existing = readSecretFile(path, log);
  if (existing && existing.instanceId === instanceId) {
    tighten(path, 0o600, log);
    return { secret: existing.secret, carried: existing.carried?.secret ?? null };
  }
  if (existing)
    log.info(
      "the root disk carries the session secret of an earlier instance (booted from its image); creating a new one and keeping that as proof",
      {
        secretInstanceId: existing.instanceId,
        instanceId,
      },
    );
  const file: SecretFile = {
    instanceId,
    secret: newSessionSecret(),
    createdAt: new Date().toISOString(),
    ...(existing ? { carried: { instanceId: existing.instanceId, secret: existing.secret } } : {}),
  };
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
  return { secret: file.secret, carried: file.carried?.secret ?? null };
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
    if (typeof f.instanceId === "string" && typeof f.secret === "string" && SECRET_PATTERN.test(f.secret)) {
      const c = f.carried;
      const carried =
        c && typeof c === "object" && typeof c.instanceId === "string" && typeof c.secret === "string" && SECRET_PATTERN.test(c.secret)
          ? { instanceId: c.instanceId, secret: c.secret }
          : undefined;
      if (c !== undefined && !carried) log.warn("the carried session secret in the secret file is malformed; ignoring it", { path });
      return { instanceId: f.instanceId, secret: f.secret, createdAt: String(f.createdAt ?? ""), ...(carried ? { carried } : {}) };
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
