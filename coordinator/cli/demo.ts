import type { Command } from "./main.js";
import { parseFlags } from "./args.js";

export const command: Command = {
  usage: "usage: spotkeep demo [--json]\n\nStarts localcloud and a coordinator, interrupts a stateful instance and verifies its recovery.",
  async run(argv) {
    parseFlags(argv, { json: { type: "boolean" } });
    process.stderr.write("spotkeep demo: not built yet: the demo arrives with the operator-surfaces issue (localcloud, agent and coordinator come first)\n");
    return 1;
  },
};
