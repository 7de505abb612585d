/**
 * `spotkeep version`: what an operator checks after installing: the version, the Node.js and SQLite
 * driver in use, and the agent bundle's SHA-256 (the one the coordinator serves and bootstraps check).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { driverOrder } from "../../coordinator/db/sqlite/driver.js";
import { VERSION } from "../../shared/version.js";
import { CLI, ensureBuilt, ROOT } from "./built.js";

beforeAll(() => ensureBuilt());

describe("spotkeep version", () => {
  it("--json prints the version, Node.js, the SQLite driver for this Node line and the agent bundle's SHA-256", () => {
    const r = JSON.parse(execFileSync(process.execPath, [CLI, "version", "--json"], { encoding: "utf8" }));
    const bundle = join(ROOT, "dist", "spotkeep-agent.js");
    const bytes = readFileSync(bundle);
    expect(r).toEqual({
      version: VERSION,
      node: process.versions.node,
      platform: `${process.platform}-${process.arch}`,
      sqlite: {
        package: driverOrder(Number.parseInt(process.versions.node, 10))[0],
        version: expect.stringMatching(/^1[23]\.\d+\.\d+$/),
        sqliteVersion: expect.stringMatching(/^3\.\d+\.\d+$/),
      },
      agentBundle: { path: bundle, bytes: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") },
    });
    const text = execFileSync(process.execPath, [CLI, "version"], { encoding: "utf8" });
    expect(text).toContain(`spotkeep ${VERSION}\n`);
    expect(text).toContain(`sha256 ${r.agentBundle.sha256}`);
  });

  it("exits 1 and names the missing agent bundle, still printing the version", () => {
    const dir = mkdtempSync(join(tmpdir(), "spotkeep-version-"));
    try {
      mkdirSync(join(dir, "bin"));
      cpSync(CLI, join(dir, "bin", "spotkeep.js"));
      cpSync(join(ROOT, "package.json"), join(dir, "package.json"));
      cpSync(join(ROOT, "dist", "cli"), join(dir, "dist", "cli"), { recursive: true });
      symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
      const r = spawnSync(process.execPath, [join(dir, "bin", "spotkeep.js"), "version", "--json"], { encoding: "utf8" });
      expect(r.status).toBe(1);
      const out = JSON.parse(r.stdout);
      expect(out.version).toBe(VERSION);
      expect(out.agentBundle).toEqual({
        path: join(dir, "dist", "spotkeep-agent.js"),
        error: expect.stringMatching(/^hashing the agent bundle .*spotkeep-agent\.js: ENOENT/),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses flags it does not know", () => {
    const r = spawnSync(process.execPath, [CLI, "version", "--jsn"], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/spotkeep version: .*--jsn/);
  });
});
