import { describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../shared/version.js";

const root = join(import.meta.dirname, "..");
const cli = join(root, "bin", "spotkeep.js");

describe("packaging", () => {
  it("keeps shared/version.ts equal to package.json", () => {
    expect(JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version).toBe(VERSION);
  });

  it("agent bundle runs alone in an empty folder and stays under 2 MB", () => {
    const bundle = join(root, "dist", "spotkeep-agent.js");
    expect(statSync(bundle).size).toBeLessThan(2 * 1024 * 1024);
    const dir = mkdtempSync(join(tmpdir(), "spotkeep-agent-"));
    try {
      copyFileSync(bundle, join(dir, "spotkeep-agent.js"));
      expect(execFileSync(process.execPath, ["spotkeep-agent.js", "--version"], { cwd: dir, encoding: "utf8" }).trim()).toBe(VERSION);
      expect(execFileSync(process.execPath, ["spotkeep-agent.js", "--help"], { cwd: dir, encoding: "utf8" })).toMatch(
        /usage: spotkeep-agent/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("spotkeep CLI", () => {
  it("--help lists the subcommands", () => {
    const out = execFileSync(process.execPath, [cli, "--help"], { encoding: "utf8" });
    expect(out).toMatch(/usage: spotkeep <subcommand>/);
    expect(out).toMatch(/\n {2}demo /);
  });
  it("an unknown subcommand exits 2 with one line", () => {
    const r = spawnSync(process.execPath, [cli, "frobnicate"], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/unknown subcommand "frobnicate"/);
  });
  it("an unknown flag exits 2 with one line", () => {
    const r = spawnSync(process.execPath, [cli, "demo", "--frob"], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(/^spotkeep demo: unknown flag --frob/);
  });
});
