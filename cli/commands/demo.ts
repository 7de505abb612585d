/** `spotkeep demo`: run a stateful instance through a spot interruption on localcloud and verify it. */
import { choiceFlag, numberFlag, parseFlags, UsageError } from "../args.js";
import type { Command } from "../command.js";

export const command: Command = {
  usage: `usage: spotkeep demo [--json] [--time-scale N] [--data-method reattach|snapshot] [--network primary|secondary] [--keep]

Runs a stateful instance through a spot interruption on localcloud (no AWS account, no root) and
verifies the recovery: same private IP and ENI, same data volume, root disk kept, no acknowledged
write lost. Prints progress, the verification and the step timeline; --json prints one JSON object.
  --time-scale N   real seconds per model second (default 0.2: the run takes about a minute)
  --data-method    reattach (default) moves the same EBS volume; snapshot restores a new one
  --network        primary (default): the stable ENI is eth0, break-before-make; secondary: it sits
                   at device index 1 and the replacement boots before the old instance stops
                   (make-before-break; reattach, no root persistence)
  --keep           keep the temp dir (localcloud state, coordinator database, instance logs)
Exit status 0 only when everything verified.`,
  async run(argv) {
    const { values } = parseFlags(argv, {
      json: { type: "boolean" },
      "time-scale": { type: "string" },
      "data-method": { type: "string" },
      network: { type: "string" },
      keep: { type: "boolean" },
    });
    const timeScale = numberFlag("time-scale", values["time-scale"], { min: 0.01, max: 1 }) ?? 0.2;
    const dataMethod = choiceFlag("data-method", values["data-method"], ["reattach", "snapshot"] as const) ?? "reattach";
    const network = choiceFlag("network", values.network, ["primary", "secondary"] as const) ?? "primary";
    if (network === "secondary" && dataMethod === "snapshot")
      throw new UsageError("--network secondary moves the volumes themselves: it needs --data-method reattach");
    const { runDemo } = await import("../demo/scenario.js");
    const { verified } = await import("../demo/report.js");
    const result = await runDemo({ timeScale, dataMethod, network, keep: !!values.keep, json: !!values.json });
    if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
    return verified(result) ? 0 : 1;
  },
};
