/**
 * Builds the agent bundle for tests into a private temp file with the same esbuild options as
 * scripts/build.mjs, so tests always run the current sources and never race another suite (or
 * `npm run build`) writing dist/spotkeep-agent.js.
 */
import { build } from "esbuild";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const repo = join(import.meta.dirname, "..", "..");

export async function buildAgentBundle(): Promise<{ file: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), "spotkeep-agent-bundle-"));
  const file = join(dir, "spotkeep-agent.js");
  await build({
    entryPoints: [join(repo, "agent", "main.ts")],
    outfile: file,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    minify: true,
    legalComments: "none",
    banner: { js: "#!/usr/bin/env node" },
    logLevel: "error",
  });
  return { file, dir };
}
