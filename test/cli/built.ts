/**
 * Suites that run bin/spotkeep.js run the BUILT CLI and coordinator (dist/). So that a suite
 * never tests a stale build of sources edited since, this rebuilds when any source file is newer
 * than the build (a few milliseconds of stat calls when it is fresh).
 */
import { execFileSync } from "node:child_process";
import { readdirSync, renameSync, statSync } from "node:fs";
import { buildSync } from "esbuild";
import { join } from "node:path";

export const ROOT = join(import.meta.dirname, "..", "..");
export const CLI = join(ROOT, "bin", "spotkeep.js");
const OUTPUTS = [join(ROOT, "dist", "cli", "main.mjs"), join(ROOT, "dist", "spotkeep-agent.js")];
const SOURCES = ["shared", "agent", "coordinator", "cli", "localcloud"];

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts")) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function builtAt(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

/** Build dist/ unless it is newer than every source file (and the build script). */
export function ensureBuilt(): void {
  const sources = Math.max(...SOURCES.map((d) => newestSource(join(ROOT, d))), builtAt(join(ROOT, "scripts", "build.mjs")));
  if (OUTPUTS.every((f) => builtAt(f) >= sources)) return;
  execFileSync(process.execPath, [join(ROOT, "scripts", "build.mjs")], { stdio: "ignore" });
}

/**
 * test/coordinator/crashing-coordinator.ts bundled the way the CLI is (npm dependencies included,
 * better-sqlite3 external), so a crash test's coordinator starts as fast as the built product
 * instead of compiling the sources through tsx at every start. It lands in a dist/cli/ folder of
 * its own under test-output/ (never in the package's dist/): the coordinator finds its package
 * root by walking up to package.json, and better-sqlite3 resolves from the repository's
 * node_modules. Rebuilt when a source is newer; written beside and renamed, so workers building
 * it at once never see half a file.
 */
export function crashingCoordinator(): string {
  const out = join(ROOT, "test-output", "build", "dist", "cli", "crashing-coordinator.mjs");
  const entry = join(ROOT, "test", "coordinator", "crashing-coordinator.ts");
  const sources = Math.max(...SOURCES.map((d) => newestSource(join(ROOT, d))), builtAt(entry));
  if (builtAt(out) >= sources) return out;
  const tmp = `${out}.${process.pid}.tmp`;
  buildSync({
    entryPoints: [entry],
    outfile: tmp,
    bundle: true,
    platform: "node",
    target: "node20.19",
    format: "esm",
    external: ["better-sqlite3", "better-sqlite3-13"],
    mainFields: ["module", "main"],
    banner: {
      js: 'import { createRequire as __spotkeepCreateRequire } from "node:module";\nconst require = __spotkeepCreateRequire(import.meta.url);',
    },
    legalComments: "none",
    logLevel: "warning",
  });
  renameSync(tmp, out);
  return out;
}
