#!/usr/bin/env node
// Runs the built CLI, dist/cli/main.mjs: `npm run build` writes it (npm ci runs the build through
// the prepare script; a release tarball carries it). No TypeScript loader at run time.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

// The AWS SDK prints a notice on every client on Node < 22. spotkeep runs on Node 20, 22, 24 and 26;
// on Node 20 (past its end of life) one notice per SDK client would bury the CLI's own output.
// Set AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=false to see it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
const entry = new URL("../dist/cli/main.mjs", import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write(`spotkeep: ${fileURLToPath(entry)} is missing: run npm run build (npm ci runs it)\n`);
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv.slice(2));
