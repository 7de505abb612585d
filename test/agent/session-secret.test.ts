import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadSessionSecret, SESSION_DIR, SESSION_SECRET_FILE } from "../../agent/link/session-secret.js";
import { silentLogger } from "../../agent/log.js";
import { Hello } from "../../shared/protocol.js";

let stateDir: string;
beforeEach(() => {
  stateDir = mkdtempSync(join(tmpdir(), "spotkeep-secret-"));
});
afterEach(() => rmSync(stateDir, { recursive: true, force: true }));

const file = () => join(stateDir, SESSION_DIR, SESSION_SECRET_FILE);

describe("agent session secret", () => {
  it("is created once per instance (32 random bytes, base64url) in a 0600 file inside a 0700 directory", () => {
    const a = loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a, "base64url")).toHaveLength(32);
    expect(loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger)).toBe(a);
    expect(statSync(file()).mode & 0o777).toBe(0o600);
    expect(statSync(join(stateDir, SESSION_DIR)).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(file(), "utf8"))).toMatchObject({ instanceId: "i-0123456789abcdef0", secret: a });
    const hello = { v: 1, id: "h", type: "hello", identity: { document: "{}", signature: "x" }, agentVersion: "1", mode: "run" };
    expect(Hello.safeParse({ ...hello, sessionSecret: a }).success).toBe(true);
    expect(Hello.safeParse(hello).success).toBe(false);
  });

  it("is replaced, not reused, when the file belongs to another instance (a root disk cloned from an earlier generation)", () => {
    const old = loadSessionSecret(stateDir, "i-0aaaaaaaaaaaaaaaa", silentLogger);
    const mine = loadSessionSecret(stateDir, "i-0bbbbbbbbbbbbbbbb", silentLogger);
    expect(mine).not.toBe(old);
    expect(JSON.parse(readFileSync(file(), "utf8"))).toMatchObject({ instanceId: "i-0bbbbbbbbbbbbbbbb", secret: mine });
  });

  it("tightens loose permissions and keeps the secret; replaces an unreadable file", () => {
    const a = loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger);
    chmodSync(file(), 0o644);
    chmodSync(join(stateDir, SESSION_DIR), 0o755);
    expect(loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger)).toBe(a);
    expect(statSync(file()).mode & 0o777).toBe(0o600);
    expect(statSync(join(stateDir, SESSION_DIR)).mode & 0o777).toBe(0o700);
    writeFileSync(file(), "{not json");
    const b = loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger);
    expect(b).not.toBe(a);
    expect(b).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it("fails saying where when the secret cannot be stored", () => {
    mkdirSync(join(stateDir, SESSION_DIR), { mode: 0o700 });
    mkdirSync(file()); // a directory where the file should be: rename fails for root too
    expect(() => loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger)).toThrow(/session secret/);
  });
});
