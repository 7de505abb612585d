// esbuild options for the agent bundle: ONE CommonJS file that runs with plain `node` and no
// node_modules. Shared by scripts/build.mjs and the tests' private builds.
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

/** @param {string} outfile */
export function agentBundleOptions(outfile) {
  return {
    entryPoints: [join(repoRoot, "agent", "main.ts")],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20.19",
    format: "cjs",
    minify: true,
    legalComments: "none",
    banner: { js: "#!/usr/bin/env node" },
    logLevel: "warning",
  };
}
