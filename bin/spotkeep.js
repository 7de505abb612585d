#!/usr/bin/env node
// Runs the TypeScript sources directly (no build step needed for the CLI): tsx registers a loader.
import { register } from "tsx/esm/api";

// spotkeep supports Node 20 (the AWS SDK nags about its end of support on every run; it still
// works). Set AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=false to see the notice.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
register();
const { main } = await import("../coordinator/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
