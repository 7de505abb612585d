/** `status` with stateful groups: each group's members listed under a line for the group. */
import type { InstanceSummary } from "../../shared/api.js";
import { GroupList, type GroupSummary } from "../../shared/group-api.js";
import { type ApiClient, CliError } from "../client.js";

type Row = Array<string | number | null | undefined>;

export async function groupRows(client: ApiClient, instances: InstanceSummary[]) {
  // A coordinator from before stateful groups answers 501 here (every current one serves them): list the instances alone.
  const groups = await client
    .get("/api/v1/groups", GroupList)
    .then((r) => r.groups)
    .catch((err) => {
      if (err instanceof CliError) return [] as GroupSummary[];
      throw err;
    });
  const groupOf = new Map<string, string>();
  for (const g of groups) for (const m of g.memberNames) groupOf.set(m, g.name);
  const byName = new Map(instances.map((i) => [i.name, i]));
  return {
    groups,
    /** Every instance with the group it belongs to (null: none). */
    json: instances.map((i) => ({ ...i, group: groupOf.get(i.name) ?? null })),
    /** Instances in no group first, then each group's line and its members (indented) by ordinal. */
    rows(rowOf: (i: InstanceSummary, label: string) => Row): Row[] {
      const out: Row[] = instances.filter((i) => !groupOf.has(i.name)).map((i) => rowOf(i, i.name));
      for (const g of groups) {
        out.push(groupLine(g));
        for (const m of g.memberNames) {
          const i = byName.get(m);
          if (i) out.push(rowOf(i, `  ${m}`));
        }
      }
      return out;
    },
  };
}

function groupLine(g: GroupSummary): Row {
  const states = Object.entries(g.byState)
    .map(([s, n]) => `${n} ${s}`)
    .join(", ");
  return [
    `group ${g.name}`,
    g.state + (g.stateReason && g.state === "stopped" ? ` (${g.stateReason})` : ""),
    null,
    `${g.members}/${g.size} members${states ? ` (${states})` : ""}, ${g.unavailable} unavailable (max ${g.maxUnavailable})`,
  ];
}
