/**
 * The runtime folder a coordinator serves from, as its config says: `agentRuntime.dir`, or with
 * `agentRuntime.hostNode` a per-user folder holding this process's own node binary for both
 * architectures (packed once per binary and shared by every coordinator on the host, so a test
 * suite pays the packing once), else `<data dir>/agent-runtime`.
 */
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { CoordinatorConfig } from "../config.js";
import { packRuntime } from "./fetch.js";
import { AgentRuntimes } from "./runtimes.js";

export function hostRuntimeDir(): string {
  return join(tmpdir(), `spotkeep-host-runtime-${process.getuid?.() ?? "user"}`);
}

export async function openAgentRuntimes(
  config: Pick<CoordinatorConfig, "agentRuntime">,
  dataDir: string,
  log: (line: string) => void,
): Promise<AgentRuntimes> {
  const { hostNode } = config.agentRuntime;
  const dir = config.agentRuntime.dir ? resolve(config.agentRuntime.dir) : hostNode ? hostRuntimeDir() : join(dataDir, "agent-runtime");
  if (hostNode) await packRuntime({ dir, binary: process.execPath, version: process.versions.node, arches: ["x64", "arm64"] });
  const runtimes = new AgentRuntimes(dir);
  const st = runtimes.load();
  const arches = Object.keys(st.served).map((a) => `linux-${a}`);
  log(
    arches.length
      ? `agent runtime: Node.js ${st.version} for ${arches.join(", ")} from ${dir}${hostNode ? " (this host's node, agentRuntime.hostNode)" : ""}`
      : `agent runtime: none in ${dir}: an instance whose image has no Node.js 20.19+ cannot start the agent and says so at boot ` +
          `(spotkeep runtime fetch --dir ${dir})`,
  );
  for (const p of st.problems) if (arches.length) log(`agent runtime: ${p}`);
  void runtimes.verify().then(
    (v) => {
      for (const a of arches) if (!(a.slice(6) in v.served)) log(`agent runtime: ${a} no longer served: ${v.problems.at(-1) ?? "damaged"}`);
    },
    (err: Error) => log(`agent runtime: checking ${dir}: ${err.message}`),
  );
  return runtimes;
}
