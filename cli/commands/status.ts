import { z } from "zod";
import { InstanceSummary } from "../../shared/api.js";
import type { Command } from "../command.js";
import { parseFlags } from "../args.js";
import { ApiClient, CLIENT_FLAGS, printJson, secs } from "../client.js";
import { renderTable } from "../table.js";
import { healthText } from "../health-text.js";
import { groupRows } from "./status-groups.js";

const Healthz = z.object({
  role: z.enum(["leader", "standby"]).optional(),
  leader: z.string().nullable().optional(),
  epoch: z.number().optional(),
  coordinator: z.string().optional(),
});

/** "coordinator: leader …" / "coordinator: standby, leader …" with `ha`; null for a single coordinator (no epoch). */
async function leadership(client: ApiClient): Promise<string | null> {
  const h = await client.get("/healthz", Healthz).catch(() => null);
  if (!h || h.epoch === undefined) return null;
  if (h.role === "leader") return `coordinator: ${client.baseUrl} leads (${h.coordinator ?? "?"}, lease epoch ${h.epoch})`;
  return h.leader
    ? `coordinator: ${client.baseUrl} is a standby; ${h.leader} leads (lease epoch ${h.epoch})`
    : `coordinator: ${client.baseUrl} is a standby; no coordinator leads just now (last lease epoch ${h.epoch})`;
}

export const command: Command = {
  usage: `usage: spotkeep status [--all] [--json] [--url URL] [--token T | --data-dir DIR]

Lists every stateful instance: state, generation, EC2 instance, type, AZ, lifecycle, private IP and
the downtime of its last replacement, and its health (with spec \`health\`) and since when. --all adds
deleted instances (as NAME~<created-at>), and below the table a KEPT BY DELETE section lists what
each delete kept: the resource, its kind and when it expires. Members of a stateful group are listed under their group (state,
members, members unavailable now); --json gives each instance its group. With several coordinators
(config \`ha\`), a first line says whether the one asked leads, which one does, and the lease's epoch.`,
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
    const lead = await leadership(client);
    if (lead) process.stdout.write(`${lead}\n`);
    if (instances.length === 0 && grouped.groups.length === 0) {
      process.stdout.write("no stateful instances yet (create one with: spotkeep create -f SPEC)\n");
      return 0;
    }
    process.stdout.write(
      renderTable(
        ["NAME", "STATE", "GEN", "INSTANCE", "TYPE", "AZ", "LIFECYCLE", "PRIVATE IP", "LAST DOWNTIME", "HEALTH"],
        grouped.rows((i, label) => [
          label,
          i.state + (i.stateReason && i.state === "failed" ? ` (${i.stateReason})` : ""),
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
    const kept = keptRows(instances);
    if (kept.length) process.stdout.write(`\nKEPT BY DELETE\n${renderTable(["NAME", "KIND", "RESOURCE", "EXPIRES"], kept)}`);
    return 0;
  },
};

/** One row per resource a deleted instance's delete kept ("nothing" when it kept none). */
function keptRows(instances: InstanceSummary[]): Array<Array<string | null>> {
  const rows: Array<Array<string | null>> = [];
  for (const i of instances) {
    if (i.state !== "deleted") continue;
    // A coordinator that does not list kept resources still says what it kept in the state reason.
    if (!i.kept) rows.push([i.name, null, i.stateReason, null]);
    else if (i.kept.length === 0) rows.push([i.name, null, "nothing", null]);
    else
      for (const k of i.kept)
        rows.push([i.name, k.kind, k.resourceId, k.gone ? "deleted" : (k.expiresAt ?? "never (until deleted by hand)")]);
  }
  return rows;
}
