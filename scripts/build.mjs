// Bundles the agent into ONE file, dist/spotkeep-agent.js, that runs with plain `node` and no
// node_modules (CommonJS so it needs no package.json beside it).
import { build } from "esbuild";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { agentBundleOptions, repoRoot } from "./agent-bundle-options.mjs";

const outfile = join(repoRoot, "dist", "spotkeep-agent.js");
mkdirSync(dirname(outfile), { recursive: true });
await build(agentBundleOptions(outfile));

// The repo's package.json says "type": "module"; without this, `node dist/spotkeep-agent.js` run
// inside the repo would load the CJS bundle as ESM and fail (copies elsewhere are unaffected).
writeFileSync(join(repoRoot, "dist", "package.json"), '{ "type": "commonjs" }\n');

const size = statSync(outfile).size;
const limit = 2 * 1024 * 1024;
console.log(`built ${outfile} (${(size / 1024).toFixed(0)} KiB)`);
if (size > limit) {
  console.error(`agent bundle is ${size} bytes, over the ${limit}-byte budget`);
  process.exit(1);
}
