/** `spotkeep-agent status`: prints the agent's persisted state (outbox, last notice, connection) as JSON. */
import type { AgentConfig } from "./config.js";
import { readStateFile } from "./link/state.js";

export function statusMode(cfg: AgentConfig, out: (s: string) => void = (s) => void process.stdout.write(s)): number {
  const state = readStateFile(cfg.stateDir);
  if (!state) {
    out(`${JSON.stringify({ stateDir: cfg.stateDir, state: null, note: "no agent state yet (the agent has not run here)" })}\n`);
    return 1;
  }
  out(
    `${JSON.stringify({
      stateDir: cfg.stateDir,
      instanceId: state.instanceId ?? null,
      pending: state.outbox.map((e) => ({ id: e.message.id, type: e.message.type })),
      noticesReported: state.notices.length,
      status: state.status ?? {},
    })}\n`,
  );
  return 0;
}
