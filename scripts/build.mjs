// Builds what ships (npm runs it as prepare after npm ci, and as prepack before npm pack/publish):
//  - dist/spotkeep-agent.js: the agent as ONE file that runs with plain `node` and no node_modules
//    (CommonJS so it needs no package.json beside it);
//  - dist/cli/main.mjs (+ chunks): the `spotkeep` CLI and the coordinator, run by bin/spotkeep.js.
// Each file is written to a temp name and renamed, so a build running beside another (parallel
// test workers) or beside a running CLI never exposes a half-written file. Progress goes to stderr
// (`npm pack --json` prints its JSON on stdout after this runs).
import { builtinModules } from "node:module";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { agentBundleOptions, repoRoot } from "./agent-bundle-options.mjs";

const dist = join(repoRoot, "dist");

// `npm pack` and `npm publish` run prepack and then prepare, both this script: building once is enough.
if (process.env.npm_lifecycle_event === "prepare" && ["pack", "publish"].includes(process.env.npm_command ?? "")) {
  console.error("prepare: dist/ was built by prepack");
  process.exit(0);
}

// esbuild is a devDependency. `npm ci --omit=dev` on a tree that carries a dist/ built elsewhere
// (a release tarball) still runs this script through `prepare`: keep what is there.
let build;
try {
  ({ build } = await import("esbuild"));
} catch (err) {
  if (existsSync(join(dist, "cli", "main.mjs")) && existsSync(join(dist, "spotkeep-agent.js"))) {
    console.error("esbuild is not installed (npm ci --omit=dev?): keeping the dist/ that is already built");
    process.exit(0);
  }
  console.error(
    `cannot build: esbuild is not installed (${err.code ?? err.message}) and dist/ is not built; run npm ci (with dev dependencies)`,
  );
  process.exit(1);
}

/**
 * What ships runs with production dependencies only (a release installs no devDependencies): the
 * build fails when a devDependency (tsx, vitest, esbuild, typescript...) was bundled in, or when
 * the output imports at run time anything but Node's built-ins and (optional) dependencies.
 */
/**
 * Imports that bundled dependencies make inside try/catch for packages that are optional by design
 * (esbuild leaves an unresolvable require() in a try block external): not installed, not needed.
 */
const OPTIONAL_IMPORTS = new Map([
  ["bufferutil", "ws: optional native frame masking; falls back to JavaScript"],
  ["utf-8-validate", "ws: optional native UTF-8 check; falls back to JavaScript"],
  ["pg-native", "pg: only for `native: true` clients, which spotkeep never creates"],
]);

function checkRuntimeImports(results) {
  const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8"));
  const prod = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})]);
  const dev = new Set(Object.keys(pkg.devDependencies ?? {}).filter((n) => !prod.has(n)));
  const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
  const packageOf = (spec) => (spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]);
  const problems = new Set();
  for (const { metafile } of results) {
    for (const input of Object.keys(metafile.inputs)) {
      const at = input.lastIndexOf("node_modules/");
      if (at < 0) continue;
      const name = packageOf(input.slice(at + "node_modules/".length));
      if (dev.has(name)) problems.add(`devDependency ${name} is bundled (${input})`);
    }
    for (const [file, out] of Object.entries(metafile.outputs))
      for (const imp of out.imports)
        if (
          imp.external &&
          !imp.path.startsWith(".") &&
          !builtins.has(imp.path) &&
          !prod.has(packageOf(imp.path)) &&
          !OPTIONAL_IMPORTS.has(imp.path)
        )
          problems.add(`${file} imports ${imp.path} at run time, which is not a dependency`);
  }
  if (problems.size > 0) {
    console.error(`the build would not run from a release (production dependencies only):\n  ${[...problems].join("\n  ")}`);
    process.exit(1);
  }
}

function writeAtomic(file, contents) {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, contents);
  renameSync(tmp, file);
}

// --- agent ---
const agentFile = join(dist, "spotkeep-agent.js");
const agent = await build({ ...agentBundleOptions(agentFile), write: false, metafile: true });
for (const f of agent.outputFiles) writeAtomic(f.path, f.contents);
// The repo's package.json says "type": "module"; without this, `node dist/spotkeep-agent.js` run
// inside the repo would load the CJS bundle as ESM and fail (copies elsewhere are unaffected).
writeAtomic(join(dist, "package.json"), '{ "type": "commonjs" }\n');
const size = statSync(agentFile).size;
const limit = 2 * 1024 * 1024;
console.error(`built ${agentFile} (${(size / 1024).toFixed(0)} KiB)`);
if (size > limit) {
  console.error(`agent bundle is ${size} bytes, over the ${limit}-byte budget`);
  process.exit(1);
}

// --- CLI and coordinator ---
// npm dependencies are bundled too: one parse of a few large files starts faster than resolving
// and loading hundreds of small ones from node_modules; their ES module builds are preferred so
// that only the parts in use are kept. better-sqlite3 (both majors, see coordinator/db/sqlite/driver.ts) stays external (native addon). Code
// splitting keeps the lazily loaded subcommands lazy (`spotkeep status` does not load the
// coordinator). Not minified: an operator reads the coordinator's stack traces.
//
// localcloud and the demo are a build of their own in dist/cli/localcloud/: localcloud's EC2
// codec uses every shape of the AWS SDK, and in one build those would land in the chunk the
// coordinator shares with it, costing the coordinator's start-up about 100 ms and 30 MiB.
const cliDir = join(dist, "cli");
const APART = ["localcloud", "demo"];
const common = {
  bundle: true,
  splitting: true,
  platform: "node",
  target: "node20.19",
  format: "esm",
  outExtension: { ".js": ".mjs" },
  external: ["better-sqlite3", "better-sqlite3-13"],
  mainFields: ["module", "main"],
  // Bundled CommonJS dependencies call require() for Node's built-ins; ESM has no require.
  banner: {
    js: 'import { createRequire as __spotkeepCreateRequire } from "node:module";\nconst require = __spotkeepCreateRequire(import.meta.url);',
  },
  legalComments: "none",
  logLevel: "warning",
  write: false,
  metafile: true,
};
/** In the main build, `import("./commands/<apart>.js")` loads the other build's entry. */
const apart = {
  name: "subcommands-built-apart",
  setup(b) {
    const filter = new RegExp(`^\\./commands/(${APART.join("|")})\\.js$`);
    b.onResolve({ filter }, (args) => ({ path: `./localcloud/${filter.exec(args.path)[1]}.mjs`, external: true }));
  },
};
const [main, rest] = await Promise.all([
  build({ ...common, entryPoints: [join(repoRoot, "cli", "main.ts")], outdir: cliDir, plugins: [apart] }),
  build({ ...common, entryPoints: APART.map((n) => join(repoRoot, "cli", "commands", `${n}.ts`)), outdir: join(cliDir, "localcloud") }),
]);
checkRuntimeImports([agent, main, rest]);
// Chunks first, the entry last: a reader that sees the new main.mjs finds every chunk it names.
const entry = join(cliDir, "main.mjs");
const outputs = [...rest.outputFiles, ...main.outputFiles].sort((a, b) => Number(a.path === entry) - Number(b.path === entry));
for (const f of outputs) writeAtomic(f.path, f.contents);
const built = new Set(outputs.map((f) => f.path));
for (const d of [cliDir, join(cliDir, "localcloud")])
  for (const e of readdirSync(d, { withFileTypes: true }))
    if (e.isFile() && !built.has(join(d, e.name)) && !e.name.endsWith(".tmp")) rmSync(join(d, e.name), { force: true });
const cliBytes = outputs.reduce((n, f) => n + f.contents.length, 0);
console.error(`built ${entry} and ${outputs.length - 1} more files (${(cliBytes / 1024).toFixed(0)} KiB)`);

// --- web console ---
// console/main.ts (Preact + htm: no JSX step) and its stylesheet, minified, with content hashes in
// the file names so the coordinator can serve them as immutable; index.html names them and is the
// only file served no-cache. No inline script or style: the console runs under a strict CSP.
const consoleDir = join(dist, "console");
const assetsDir = join(consoleDir, "assets");
const ui = await build({
  entryPoints: { main: join(repoRoot, "console", "main.ts") },
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  outdir: assetsDir,
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
  write: false,
});
for (const f of ui.outputFiles) writeAtomic(f.path, f.contents);
const names = ui.outputFiles.map((f) => f.path.slice(assetsDir.length + 1));
const js = names.find((n) => n.endsWith(".js"));
const css = names.find((n) => n.endsWith(".css"));
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>spotkeep</title>
<link rel="icon" href="data:,">
${css ? `<link rel="stylesheet" href="/assets/${css}">\n` : ""}<script type="module" src="/assets/${js}"></script>
</head>
<body><div id="app"></div></body>
</html>
`;
writeAtomic(join(consoleDir, "index.html"), html);
// Earlier builds' assets go once index.html names the new ones.
for (const e of readdirSync(assetsDir, { withFileTypes: true }))
  if (e.isFile() && !names.includes(e.name) && !e.name.endsWith(".tmp")) rmSync(join(assetsDir, e.name), { force: true });
console.error(`built ${join(consoleDir, "index.html")} (${names.join(", ")})`);
