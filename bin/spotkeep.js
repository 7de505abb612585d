#!/usr/bin/env node
// Runs the TypeScript sources directly (no build step needed for the CLI): tsx registers a loader.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../coordinator/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
