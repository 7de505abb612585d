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
    // ES module builds first: esbuild drops what the agent does not use from them, where a package's
    // single CommonJS file comes whole (@smithy/node-http-handler's would bring about 110 KB of
    // @smithy/core's serialisation code along with the one handler the IMDS client uses).
    mainFields: ["module", "main"],
    target: "node20.19",
    format: "cjs",
    minify: true,
    legalComments: "none",
    banner: { js: "#!/usr/bin/env node" },
    logLevel: "warning",
  };
}
