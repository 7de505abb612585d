/** `spotkeep group create|scale|describe|update|delete|list`: stateful groups (/api/v1/groups). */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { KEEP_ITEMS, keptList, parseKeep, parseTtlHours } from "../../shared/deletion.js";
import { GroupDetail, GroupList, GroupStarted } from "../../shared/group-api.js";
import { MAX_GROUP_SIZE, parseGroupSpec } from "../../shared/group-spec.js";
import type { Command } from "../command.js";
import { numberFlag, parseFlags, UsageError } from "../args.js";
import { type ApiClient, ApiClient as Client, CLIENT_FLAGS, CliError, printJson } from "../client.js";
import { followWorkflow } from "../follow.js";
import { renderTable } from "../table.js";

const COMMON = "[--json] [--url URL] [--token T | --data-dir DIR]";
const WAIT_FLAGS = { wait: { type: "boolean" }, timeout: { type: "string" } } as const;

export const command: Command = {
  usage: `usage: spotkeep group SUBCOMMAND …
  spotkeep group create -f SPEC [--wait] [--timeout SECONDS] ${COMMON}
  spotkeep group scale NAME SIZE [--keep LIST] [--ttl HOURS] [--wait] [--timeout SECONDS] ${COMMON}
  spotkeep group update -f SPEC [--wait] [--timeout SECONDS] ${COMMON}
  spotkeep group describe NAME ${COMMON}
  spotkeep group list ${COMMON}
  spotkeep group delete NAME [--keep LIST] [--ttl HOURS] [--wait] [--timeout SECONDS] ${COMMON}

A stateful group (spec kind: group) runs SIZE stateful instances NAME-0, NAME-1, … from one template,
each with its own volumes and ENI and an address from the group's ipPool, kept for its whole life.
scale adds members (the next free addresses, spread over the template's AZs) or deletes the highest
ordinals, keeping what --keep names (${KEEP_ITEMS.join(", ")}) as delete does. update rolls a new
template member by member (a recycle each, never more than maxUnavailable members down, waiting
while an interruption is being recovered) and stops at the first failure. --wait follows the
group's workflow step by step (exit 0 when it succeeded, 1 when not).`,
  async run(argv) {
    const [sub, ...rest] = argv;
    switch (sub) {
      case "create":
      case "update":
        return applySpec(sub, rest);
      case "scale":
        return scale(rest);
      case "describe":
        return describe(rest);
      case "list":
        return list(rest);
      case "delete":
        return remove(rest);
      case undefined:
        throw new UsageError("missing SUBCOMMAND: spotkeep group create|scale|update|describe|list|delete");
      default:
        throw new UsageError(`unknown group subcommand ${JSON.stringify(sub)} (create, scale, update, describe, list, delete)`);
    }
  },
};

async function applySpec(sub: "create" | "update", argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { ...CLIENT_FLAGS, ...WAIT_FLAGS, file: { type: "string", short: "f" } });
  if (!values.file) throw new UsageError(`missing -f SPEC: spotkeep group ${sub} -f SPEC`);
  const timeoutS = numberFlag("timeout", values.timeout, { min: 1 }) ?? 3600;
  let text: string;
  try {
    text = values.file === "-" ? readFileSync(0, "utf8") : readFileSync(values.file, "utf8");
  } catch (err) {
    throw new CliError(`cannot read ${values.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const spec = parseGroupSpec(text, values.file); // names the bad path before anything is sent
  const client = Client.fromFlags(values);
  const started =
    sub === "create"
      ? await client.post("/api/v1/groups", JSON.stringify(spec), GroupStarted)
      : await client.put(`/api/v1/groups/${encodeURIComponent(spec.name)}`, JSON.stringify(spec), GroupStarted);
  const what = sub === "create" ? `creating group ${spec.name} (${spec.size} members)` : `rolling the new template over ${spec.name}`;
  if (!started.workflowId) {
    if (values.json) printJson(started);
    else process.stdout.write(`${spec.name}: spec stored; every member is on the template, nothing to roll out\n`);
    return 0;
  }
  return finish(client, started.name, started.workflowId, what, values, timeoutS);
}

async function scale(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...CLIENT_FLAGS, ...WAIT_FLAGS, keep: { type: "string" }, ttl: { type: "string" } }, [
    "NAME",
    "SIZE",
  ]);
  const [name, sizeText] = positionals;
  if (!name || sizeText === undefined) throw new UsageError("missing NAME or SIZE: spotkeep group scale NAME SIZE");
  const size = Number(sizeText);
  if (!/^\d+$/.test(sizeText) || size > MAX_GROUP_SIZE)
    throw new UsageError(`SIZE must be a whole number from 0 to ${MAX_GROUP_SIZE}, got ${JSON.stringify(sizeText)}`);
  const keep = parseKeep(values.keep, "--keep");
  const ttlHours = parseTtlHours(values.ttl, "--ttl");
  if (ttlHours !== null && keptList(keep) === "nothing") throw new UsageError("--ttl needs --keep: nothing is kept for it to expire");
  const timeoutS = numberFlag("timeout", values.timeout, { min: 1 }) ?? 3600;
  const client = Client.fromFlags(values);
  const body = { size, keep: KEEP_ITEMS.filter((k) => keep[k]), ...(ttlHours !== null ? { ttlHours } : {}) };
  const started = await client.post(`/api/v1/groups/${encodeURIComponent(name)}/scale`, JSON.stringify(body), GroupStarted);
  return finish(client, name, started.workflowId as string, `scaling ${name} to ${size}`, values, timeoutS);
}

async function remove(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...CLIENT_FLAGS, ...WAIT_FLAGS, keep: { type: "string" }, ttl: { type: "string" } }, [
    "NAME",
  ]);
  const name = positionals[0];
  if (!name) throw new UsageError("missing NAME: spotkeep group delete NAME");
  const keep = parseKeep(values.keep, "--keep");
  const ttlHours = parseTtlHours(values.ttl, "--ttl");
  if (ttlHours !== null && keptList(keep) === "nothing") throw new UsageError("--ttl needs --keep: nothing is kept for it to expire");
  const timeoutS = numberFlag("timeout", values.timeout, { min: 1 }) ?? 3600;
  const query = new URLSearchParams();
  const items = KEEP_ITEMS.filter((k) => keep[k]);
  if (items.length) query.set("keep", items.join(","));
  if (ttlHours !== null) query.set("ttlHours", String(ttlHours));
  const client = Client.fromFlags(values);
  const q = query.toString();
  const started = await client.delete(`/api/v1/groups/${encodeURIComponent(name)}${q ? `?${q}` : ""}`, GroupStarted);
  return finish(client, name, started.workflowId as string, `deleting group ${name} (keep: ${keptList(keep)})`, values, timeoutS);
}

async function finish(
  client: ApiClient,
  name: string,
  workflowId: string,
  what: string,
  values: { wait?: boolean; json?: boolean },
  timeoutS: number,
): Promise<number> {
  if (!values.wait) {
    if (values.json) printJson({ name, workflowId });
    else process.stdout.write(`${what} (workflow ${workflowId}); follow it with: spotkeep group describe ${name}\n`);
    return 0;
  }
  const wf = await followWorkflow(client, workflowId, { timeoutMs: timeoutS * 1000, quiet: !!values.json });
  if (values.json) printJson({ name, workflowId, workflow: wf });
  if (wf.status !== "succeeded") {
    process.stderr.write(`spotkeep group: ${name}: workflow ${wf.status}${wf.error ? `: ${wf.error}` : ""}\n`);
    return 1;
  }
  if (!values.json) process.stdout.write(`${name}: done\n`);
  return 0;
}

async function describe(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, CLIENT_FLAGS, ["NAME"]);
  const name = positionals[0];
  if (!name) throw new UsageError("missing NAME: spotkeep group describe NAME");
  const client = Client.fromFlags(values);
  const d = await client.get(`/api/v1/groups/${encodeURIComponent(name)}`, GroupDetail);
  const { events } = await client.get(
    `/api/v1/groups/${encodeURIComponent(name)}/events`,
    z.object({ events: z.array(z.object({ at: z.string(), kind: z.string(), message: z.string() })) }),
  );
  if (values.json) {
    printJson({ ...d, events });
    return 0;
  }
  const out: string[] = [];
  out.push(`group ${d.name}: ${d.state}${d.stateReason ? ` (${d.stateReason})` : ""}`);
  out.push(
    `size ${d.size}, ${d.members} member${d.members === 1 ? "" : "s"}, ${d.unavailable} unavailable now, maxUnavailable ${d.maxUnavailable}`,
  );
  if (d.workflowId) out.push(`running: ${d.workflowId}`);
  out.push(
    `spread: ${
      Object.entries(d.spread)
        .map(([az, n]) => `${az} ${n}`)
        .join(", ") || "-"
    }`,
  );
  out.push(`ipPool: ${d.ipPool.length} addresses, free: ${d.freeAddresses.join(", ") || "none"}`);
  out.push("");
  out.push(
    renderTable(
      ["MEMBER", "STATE", "GEN", "INSTANCE", "AZ", "PRIVATE IP", "ENI", "UNAVAILABLE"],
      d.memberList.map((m) => [
        m.name,
        (m.state ?? "gone") +
          (m.membership === "removing" ? " (removing)" : "") +
          (m.state === "failed" && m.stateReason ? ` (${m.stateReason})` : ""),
        m.generation,
        m.instanceId,
        m.availabilityZone,
        m.privateIp,
        m.eniId,
        m.unavailable ? "yes" : "no",
      ]),
    ).trimEnd(),
  );
  if (events.length) {
    out.push("", "recent events:");
    for (const e of events.slice(-10)) out.push(`  ${e.at}  ${e.kind.padEnd(18)} ${e.message}`);
  }
  process.stdout.write(`${out.join("\n")}\n`);
  return 0;
}

async function list(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, CLIENT_FLAGS);
  const client = Client.fromFlags(values);
  const { groups } = await client.get("/api/v1/groups", GroupList);
  if (values.json) {
    printJson(groups);
    return 0;
  }
  if (groups.length === 0) {
    process.stdout.write("no groups yet (create one with: spotkeep group create -f SPEC)\n");
    return 0;
  }
  process.stdout.write(
    renderTable(
      ["GROUP", "STATE", "SIZE", "MEMBERS", "UNAVAILABLE", "MAX UNAVAILABLE", "BY STATE"],
      groups.map((g) => [
        g.name,
        g.state,
        g.size,
        g.members,
        g.unavailable,
        g.maxUnavailable,
        Object.entries(g.byState)
          .map(([s, n]) => `${s} ${n}`)
          .join(", "),
      ]),
    ),
  );
  return 0;
}
