import { beforeAll, describe, expect, it } from "vitest";
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VERSION } from "../shared/version.js";
import { CLI as cli, ensureBuilt, ROOT as root } from "./cli/built.js";

beforeAll(() => ensureBuilt());

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

  it("tsx is a devDependency only: the CLI runs built JavaScript", () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    expect(pkg.dependencies.tsx).toBeUndefined();
    expect(pkg.devDependencies.tsx).toBeDefined();
    expect(readFileSync(cli, "utf8")).not.toMatch(/tsx/);
  });

  it("bin/spotkeep.js runs from a package without TypeScript sources (bin, dist, package.json, node_modules)", () => {
    const dir = mkdtempSync(join(tmpdir(), "spotkeep-pkg-"));
    try {
      mkdirSync(join(dir, "bin"));
      copyFileSync(cli, join(dir, "bin", "spotkeep.js"));
      copyFileSync(join(root, "package.json"), join(dir, "package.json"));
      symlinkSync(join(root, "node_modules"), join(dir, "node_modules"));
      const bare = spawnSync(process.execPath, [join(dir, "bin", "spotkeep.js"), "--help"], { encoding: "utf8" });
      expect(bare.status).toBe(1);
      expect(bare.stderr).toMatch(/dist\/cli\/main\.mjs is missing: run npm run build/);
      cpSync(join(root, "dist"), join(dir, "dist"), { recursive: true });
      const out = execFileSync(process.execPath, [join(dir, "bin", "spotkeep.js"), "--help"], { encoding: "utf8" });
      expect(out).toMatch(/usage: spotkeep <subcommand>/);
      expect(execFileSync(process.execPath, [join(dir, "bin", "spotkeep.js"), "--version"], { encoding: "utf8" }).trim()).toBe(VERSION);
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
