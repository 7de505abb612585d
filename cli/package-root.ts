/**
 * Files the CLI uses that are not code (the agent bundle it serves, the demo's workload script)
 * are found from the package root, which is the same whether this module runs from cli/ as
 * TypeScript or bundled into dist/cli/.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let root: string | undefined;

/** The folder of the package.json named "spotkeep" at or above this module. */
export function packageRoot(): string {
  if (root) return root;
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; ) {
    const manifest = join(dir, "package.json");
    // dist/ has its own package.json (it only sets the module type), hence the name check.
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "spotkeep") return (root = dir);
    const up = dirname(dir);
    if (up === dir) throw new Error(`no spotkeep package.json at or above ${start}`);
    dir = up;
  }
}

/** The agent bundle that `npm run build` writes and the coordinator serves to instances. */
export function agentBundlePath(): string {
  return join(packageRoot(), "dist", "spotkeep-agent.js");
}
