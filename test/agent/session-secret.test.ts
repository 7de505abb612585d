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
    const { secret: a, carried } = loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a, "base64url")).toHaveLength(32);
    expect(carried).toBeNull(); // a fresh root carries nothing
    expect(loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger)).toEqual({ secret: a, carried: null });
    expect(statSync(file()).mode & 0o777).toBe(0o600);
    expect(statSync(join(stateDir, SESSION_DIR)).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(file(), "utf8"))).toMatchObject({ instanceId: "i-0123456789abcdef0", secret: a });
    const hello = { v: 1, id: "h", type: "hello", identity: { document: "{}", signature: "x" }, agentVersion: "1", mode: "run" };
    expect(Hello.safeParse({ ...hello, sessionSecret: a }).success).toBe(true);
    expect(Hello.safeParse(hello).success).toBe(false);
  });

  it("is replaced, not reused, when the file belongs to another instance (a root disk cloned from an earlier generation), which is kept as the carried proof", () => {
    const old = loadSessionSecret(stateDir, "i-0aaaaaaaaaaaaaaaa", silentLogger).secret;
    const mine = loadSessionSecret(stateDir, "i-0bbbbbbbbbbbbbbbb", silentLogger);
    expect(mine.secret).not.toBe(old);
    expect(mine.carried).toBe(old);
    expect(JSON.parse(readFileSync(file(), "utf8"))).toMatchObject({
      instanceId: "i-0bbbbbbbbbbbbbbbb",
      secret: mine.secret,
      carried: { instanceId: "i-0aaaaaaaaaaaaaaaa", secret: old },
    });
    expect(statSync(file()).mode & 0o777).toBe(0o600);
    // An agent restarted before its first hello got through still has the proof.
    expect(loadSessionSecret(stateDir, "i-0bbbbbbbbbbbbbbbb", silentLogger)).toEqual(mine);
    // The next generation booted from this root carries this one's secret, not the older one.
    const third = loadSessionSecret(stateDir, "i-0cccccccccccccccc", silentLogger);
    expect(third.carried).toBe(mine.secret);
    expect(JSON.stringify(JSON.parse(readFileSync(file(), "utf8")))).not.toContain(old);
    const hello = { v: 1, id: "h", type: "hello", identity: { document: "{}", signature: "x" }, agentVersion: "1", mode: "restore" };
    expect(Hello.safeParse({ ...hello, sessionSecret: third.secret, carriedSecret: third.carried }).success).toBe(true);
    expect(Hello.safeParse({ ...hello, sessionSecret: third.secret, carriedSecret: "short" }).success).toBe(false);
  });

  it("ignores a malformed carried secret and keeps its own", () => {
    const { secret } = loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger);
    writeFileSync(file(), JSON.stringify({ instanceId: "i-0123456789abcdef0", secret, carried: { instanceId: "i-0a", secret: "x" } }));
    expect(loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger)).toEqual({ secret, carried: null });
  });

  it("tightens loose permissions and keeps the secret; replaces an unreadable file", () => {
    const a = loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger).secret;
    chmodSync(file(), 0o644);
    chmodSync(join(stateDir, SESSION_DIR), 0o755);
    expect(loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger).secret).toBe(a);
    expect(statSync(file()).mode & 0o777).toBe(0o600);
    expect(statSync(join(stateDir, SESSION_DIR)).mode & 0o777).toBe(0o700);
    writeFileSync(file(), "{not json");
    const b = loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger).secret;
    expect(b).not.toBe(a);
    expect(b).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it("fails saying where when the secret cannot be stored", () => {
    mkdirSync(join(stateDir, SESSION_DIR), { mode: 0o700 });
    mkdirSync(file()); // a directory where the file should be: rename fails for root too
    expect(() => loadSessionSecret(stateDir, "i-0123456789abcdef0", silentLogger)).toThrow(/session secret/);
  });
});
