/**
 * Suites that run bin/spotkeep.js run the BUILT CLI and coordinator (dist/). So that a suite
 * never tests a stale build of sources edited since, this rebuilds when any source file is newer
 * than the build (a few milliseconds of stat calls when it is fresh).
 */
import { execFileSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
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
