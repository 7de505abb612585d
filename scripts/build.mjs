// Builds what ships:
//  - dist/spotkeep-agent.js: the agent as ONE file that runs with plain `node` and no node_modules
//    (CommonJS so it needs no package.json beside it);
//  - dist/cli/main.mjs (+ chunks): the `spotkeep` CLI and the coordinator, run by bin/spotkeep.js.
// Each file is written to a temp name and renamed, so a build running beside another (parallel
// test workers) or beside a running CLI never exposes a half-written file.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { agentBundleOptions, repoRoot } from "./agent-bundle-options.mjs";

const dist = join(repoRoot, "dist");

// esbuild is a devDependency. `npm ci --omit=dev` on a tree that carries a dist/ built elsewhere
// (a release tarball) still runs this script through `prepare`: keep what is there.
let build;
try {
  ({ build } = await import("esbuild"));
} catch (err) {
  if (existsSync(join(dist, "cli", "main.mjs")) && existsSync(join(dist, "spotkeep-agent.js"))) {
    console.log("esbuild is not installed (npm ci --omit=dev?): keeping the dist/ that is already built");
    process.exit(0);
  }
  console.error(
    `cannot build: esbuild is not installed (${err.code ?? err.message}) and dist/ is not built; run npm ci (with dev dependencies)`,
  );
  process.exit(1);
}

function writeAtomic(file, contents) {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, file);
}

// --- agent ---
const agentFile = join(dist, "spotkeep-agent.js");
const agent = await build({ ...agentBundleOptions(agentFile), write: false });
for (const f of agent.outputFiles) writeAtomic(f.path, f.contents);
// The repo's package.json says "type": "module"; without this, `node dist/spotkeep-agent.js` run
// inside the repo would load the CJS bundle as ESM and fail (copies elsewhere are unaffected).
writeAtomic(join(dist, "package.json"), '{ "type": "commonjs" }\n');
const size = statSync(agentFile).size;
const limit = 2 * 1024 * 1024;
console.log(`built ${agentFile} (${(size / 1024).toFixed(0)} KiB)`);
if (size > limit) {
  console.error(`agent bundle is ${size} bytes, over the ${limit}-byte budget`);
  process.exit(1);
}

// --- CLI and coordinator ---
// npm dependencies are bundled too: one parse of a few large files starts faster than resolving
// and loading hundreds of small ones from node_modules. better-sqlite3 stays external (native
// addon). Code splitting keeps the lazily loaded subcommands lazy: `spotkeep status` does not
// load the coordinator, nor `spotkeep coordinator` localcloud. Not minified: an operator reads
// the coordinator's stack traces.
const cliDir = join(dist, "cli");
const cli = await build({
  entryPoints: [join(repoRoot, "cli", "main.ts")],
  outdir: cliDir,
  bundle: true,
  splitting: true,
  platform: "node",
  target: "node20",
  format: "esm",
  outExtension: { ".js": ".mjs" },
  external: ["better-sqlite3"],
  // Bundled CommonJS dependencies call require() for Node's built-ins; ESM has no require.
  banner: {
    js: 'import { createRequire as __spotkeepCreateRequire } from "node:module";\nconst require = __spotkeepCreateRequire(import.meta.url);',
  },
  legalComments: "none",
  logLevel: "warning",
  write: false,
});
// Chunks first, the entry last: a reader that sees the new main.mjs finds every chunk it names.
const entry = join(cliDir, "main.mjs");
const outputs = [...cli.outputFiles].sort((a, b) => Number(a.path === entry) - Number(b.path === entry));
for (const f of outputs) writeAtomic(f.path, f.contents);
const built = new Set(outputs.map((f) => basename(f.path)));
for (const name of readdirSync(cliDir)) if (!built.has(name) && !name.endsWith(".tmp")) rmSync(join(cliDir, name), { force: true });
const cliBytes = outputs.reduce((n, f) => n + f.contents.length, 0);
console.log(`built ${entry} and ${outputs.length - 1} chunks (${(cliBytes / 1024).toFixed(0)} KiB)`);
