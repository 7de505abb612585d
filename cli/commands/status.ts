import { z } from "zod";
import { InstanceSummary } from "../../shared/api.js";
import type { Command } from "../command.js";
import { parseFlags } from "../args.js";
import { ApiClient, CLIENT_FLAGS, printJson, secs } from "../client.js";
import { renderTable } from "../table.js";
import { healthText } from "../health-text.js";
import { groupRows } from "./status-groups.js";

export const command: Command = {
  usage: `usage: spotkeep status [--all] [--json] [--url URL] [--token T | --data-dir DIR]

Lists every stateful instance: state, generation, EC2 instance, type, AZ, lifecycle, private IP and
the downtime of its last replacement, and its health (with spec \`health\`) and since when. --all adds deleted instances (as NAME~<created-at>) with the
ids of what their delete kept. Members of a stateful group are listed under their group (state,
members, members unavailable now); --json gives each instance its group.`,
  async run(argv) {
    const { values } = parseFlags(argv, { ...CLIENT_FLAGS, all: { type: "boolean" } });
    const client = ApiClient.fromFlags(values);
    const { instances } = await client.get(
      values.all ? "/api/v1/instances?all=true" : "/api/v1/instances",
      z.object({ instances: z.array(InstanceSummary) }),
    );
    const grouped = await groupRows(client, instances);
    if (values.json) {
      printJson(grouped.json);
      return 0;
    }
    if (instances.length === 0 && grouped.groups.length === 0) {
      process.stdout.write("no stateful instances yet (create one with: spotkeep create -f SPEC)\n");
      return 0;
    }
    process.stdout.write(
      renderTable(
        ["NAME", "STATE", "GEN", "INSTANCE", "TYPE", "AZ", "LIFECYCLE", "PRIVATE IP", "LAST DOWNTIME", "HEALTH"],
        grouped.rows((i, label) => [
          label,
          i.state + (i.stateReason && (i.state === "failed" || i.state === "deleted") ? ` (${i.stateReason})` : ""),
          i.generation,
          i.instanceId,
          i.instanceType,
          i.availabilityZone,
          i.lifecycle,
          i.privateIp,
          secs(i.lastDowntimeSeconds),
          healthText(i.health),
        ]),
      ),
    );
    return 0;
  },
};
