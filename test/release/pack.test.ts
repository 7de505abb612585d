/**
 * The release artefact as an operator gets it: `npm pack` builds and packs the tree; the tarball is
 * installed with `npm install -g` into an empty prefix (production dependencies only) from the npm
 * cache (--prefer-offline: the registry is asked only for what the cache lacks, such as package
 * metadata, which npm ci never fetches); the installed `spotkeep` runs --version, version --json,
 * localcloud, coordinator and the demo.
 *
 * Slow by nature: on Node 20 the install builds better-sqlite3 12 from source (no prebuilt binary
 * can be downloaded here), which takes minutes on a busy machine.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { driverOrder } from "../../coordinator/db/sqlite/driver.js";
import { VERSION } from "../../shared/version.js";

const ROOT = join(import.meta.dirname, "..", "..");
const MINUTE = 60_000;

let dir: string;
let prefix: string;
let tarball: string;
let packed: string[];
const children = new Set<ChildProcess>();

/** The test's own node first on PATH: npm, and the installed command's `#!/usr/bin/env node`, run on it. */
const env = {
  ...process.env,
  PATH: [dirname(process.execPath), ...(process.env.PATH ?? "").split(delimiter)].join(delimiter),
  npm_config_update_notifier: "false",
};

function npm(args: string[], cwd: string): string {
  return execFileSync("npm", args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 * 1024 * 1024 });
}

/** The installed command, run with the test's node. */
function spotkeep(args: string[]): string {
  return execFileSync(join(prefix, "bin", "spotkeep"), args, { env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function startInstalled(args: string[], ready: RegExp): Promise<{ child: ChildProcess; match: RegExpExecArray; output: () => string }> {
  const child = spawn(join(prefix, "bin", "spotkeep"), args, { env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`spotkeep ${args[0]} did not print ${ready} within 60 s:\n${out}`)), MINUTE);
    const onData = (d: Buffer) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, match: m, output: () => out });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`spotkeep ${args[0]} exited ${code} before it was ready:\n${out}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  child.kill("SIGTERM");
  return exited;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-release-"));
  prefix = join(dir, "prefix");
  // prepack builds dist/.
  const [info] = JSON.parse(npm(["pack", "--json", "--pack-destination", dir], ROOT)) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, info!.filename);
  packed = info!.files.map((f) => f.path);
}, 10 * MINUTE);

afterAll(async () => {
  for (const c of children) await stop(c);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("release tarball", () => {
  it("carries the built code, bin, operator docs, IAM policy, systemd unit and changelog", () => {
    expect(tarball.endsWith(`spotkeep-${VERSION}.tgz`)).toBe(true);
    for (const f of [
      "package.json",
      "README.md",
      "CHANGELOG.md",
      "LICENSE",
      "bin/spotkeep.js",
      "dist/spotkeep-agent.js",
      "dist/cli/main.mjs",
      "dist/cli/localcloud/demo.mjs",
      "dist/console/index.html",
      "docs/deploy-aws.md",
      "docs/spec-reference.md",
      "docs/iam/coordinator-policy.json",
      "docs/systemd/spotkeep-coordinator.service",
      // The identity certificate of each region (the coordinator picks its region's) and the stack.
      "certs/aws-identity/us-east-1.pem",
      "deploy/spotkeep.cfn.yaml",
      "examples/postgres.yaml",
      "scripts/demo-workload.mjs",
      // Unpacked and installed with `npm install --omit=dev` (docs/deploy-aws.md), npm runs prepare:
      // the build script keeps the shipped dist/ when esbuild is not installed.
      "scripts/build.mjs",
      "scripts/agent-bundle-options.mjs",
    ])
      expect(packed, f).toContain(f);
  });

  it("lists no tests, benchmarks, TypeScript sources or development configuration", () => {
    const unwanted = packed.filter(
      (f) =>
        /(^|\/)test\//.test(f) ||
        /\.test\.[cm]?[jt]s$/.test(f) ||
        /^bench\//.test(f) ||
        /\.(ts|mts|cts)$/.test(f) ||
        /^(agent|coordinator|shared|localcloud|cli|console)\//.test(f) ||
        f.startsWith(".ci/") ||
        ["package-lock.json", "tsconfig.json", "vitest.config.ts", "biome.json"].includes(f),
    );
    expect(unwanted).toEqual([]);
  });

  it(
    "installs into an empty prefix with production dependencies only, and the installed command runs",
    async () => {
      npm(["install", "--global", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", tarball], dir);
      const installed = join(prefix, "lib", "node_modules", "spotkeep");
      const modules = readdirSync(join(installed, "node_modules"));
      for (const dev of ["tsx", "vitest", "esbuild", "typescript", "@biomejs", "puppeteer-core", "@types"])
        expect(modules).not.toContain(dev);
      const major = Number.parseInt(process.versions.node, 10);
      // npm skips better-sqlite3-13 on Node 20 (its engines say >= 22).
      expect(modules.includes("better-sqlite3-13")).toBe(major >= 22);

      expect(spotkeep(["--version"]).trim()).toBe(VERSION);
      const v = JSON.parse(spotkeep(["version", "--json"]));
      const bundle = join(installed, "dist", "spotkeep-agent.js");
      const sha256 = createHash("sha256").update(readFileSync(bundle)).digest("hex");
      expect(v).toMatchObject({
        version: VERSION,
        node: process.versions.node,
        sqlite: { package: driverOrder(major)[0] },
        agentBundle: { path: bundle, sha256 },
      });

      const cloud = await startInstalled(
        ["localcloud", "--port", "0", "--state-dir", join(dir, "localcloud")],
        /localcloud listening on (http:\/\/\S+)/,
      );
      const coordinator = await startInstalled(
        ["coordinator", "--localcloud", cloud.match[1]!, "--listen", "127.0.0.1:0", "--data-dir", join(dir, "coordinator")],
        /coordinator listening on (http:\/\/\S+)/,
      );
      const url = coordinator.match[1]!;
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      const agent = await fetch(`${url}/agent/v1/agent.js`);
      expect(agent.status).toBe(200);
      expect(agent.headers.get("x-spotkeep-agent-sha256")).toBe(sha256);
      expect(
        createHash("sha256")
          .update(Buffer.from(await agent.arrayBuffer()))
          .digest("hex"),
      ).toBe(sha256);
      expect(await stop(coordinator.child)).toBe(0);
      expect(await stop(cloud.child)).toBe(0);

      const demo = JSON.parse(spotkeep(["demo", "--json", "--time-scale", "0.05"]));
      expect(demo).toMatchObject({ recovered: true, samePrivateIp: true, sameDataVolume: true, lostWrites: 0 });
    },
    25 * MINUTE,
  );
});
