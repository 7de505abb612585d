/**
 * Builds the agent bundle for tests into a private temp file with the same esbuild options as
 * scripts/build.mjs, so tests always run the current sources and never race another suite (or
 * `npm run build`) writing dist/spotkeep-agent.js.
 */
import { build } from "esbuild";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { agentBundleOptions } from "../../scripts/agent-bundle-options.mjs";

export async function buildAgentBundle(): Promise<{ file: string; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), "spotkeep-agent-bundle-"));
  const file = join(dir, "spotkeep-agent.js");
  await build({ ...agentBundleOptions(file), logLevel: "error" });
  return { file, dir };
}
