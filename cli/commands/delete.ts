import { z } from "zod";
import { KEEP_ITEMS, keptList, parseKeep, parseTtlHours } from "../../shared/deletion.js";
import { InstanceDetail } from "../../shared/api.js";
import type { Command } from "../command.js";
import { numberFlag, parseFlags, UsageError } from "../args.js";
import { ApiClient, CLIENT_FLAGS, printJson } from "../client.js";
import { followWorkflow } from "../follow.js";

const DeleteResponse = z.object({ name: z.string(), workflowId: z.string(), archivedAs: z.string() });

export const command: Command = {
  usage: `usage: spotkeep delete NAME [--keep LIST] [--ttl HOURS] [--force] [--wait] [--timeout SECONDS] [--json] [--url URL] [--token T | --data-dir DIR]

Terminates the stateful instance's EC2 instance and deletes its resources, except the kinds named in
--keep (a comma list of ${KEEP_ITEMS.join(", ")}). Kept resources are tagged spotkeep:expires-at
and deleted by the coordinator when --ttl HOURS have passed; without --ttl they are kept until
deleted by hand. The instance ends deleted (listed by status --all under NAME~<created-at>, with
the ids of what was kept) and NAME can be created again. Works from running, paused and failed.
A running instance is quiesced first, as pause does: the agent runs the preStop hook, syncs and
unmounts the data volumes, waited for at most the hooks' timeoutSeconds plus 30 s (an agent that
does not answer by then is terminated anyway, and an event says the hook did not run). --force
terminates it at once, without the hook.
With --wait, follows the workflow step by step until it ends (exit 0 when it succeeded, 1 when not).`,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      {
        ...CLIENT_FLAGS,
        keep: { type: "string" },
        ttl: { type: "string" },
        force: { type: "boolean" },
        wait: { type: "boolean" },
        timeout: { type: "string" },
      },
      ["NAME"],
    );
    const name = positionals[0];
    if (!name) throw new UsageError("missing NAME: spotkeep delete NAME");
    // Checked here first, with the flag names, before anything is sent.
    const keep = parseKeep(values.keep, "--keep");
    const ttlHours = parseTtlHours(values.ttl, "--ttl");
    if (ttlHours !== null && keptList(keep) === "nothing") throw new UsageError("--ttl needs --keep: nothing is kept for it to expire");
    const timeoutS = numberFlag("timeout", values.timeout, { min: 1 }) ?? 1800;
    const query = new URLSearchParams();
    const items = KEEP_ITEMS.filter((k) => keep[k]);
    if (items.length) query.set("keep", items.join(","));
    if (ttlHours !== null) query.set("ttlHours", String(ttlHours));
    if (values.force) query.set("force", "true");
    const client = ApiClient.fromFlags(values);
    const q = query.toString();
    const started = await client.delete(`/api/v1/instances/${encodeURIComponent(name)}${q ? `?${q}` : ""}`, DeleteResponse);
    if (!values.wait) {
      if (values.json) printJson(started);
      else
        process.stdout.write(
          `deleting ${started.name} (workflow ${started.workflowId}, keep: ${keptList(keep)}); follow it with: spotkeep events ${started.name}\n`,
        );
      return 0;
    }
    const wf = await followWorkflow(client, started.workflowId, { timeoutMs: timeoutS * 1000, quiet: !!values.json });
    if (wf.status !== "succeeded") {
      if (values.json) printJson({ ...started, workflow: wf });
      process.stderr.write(`spotkeep delete: ${started.name}: workflow ${wf.status}${wf.error ? `: ${wf.error}` : ""}\n`);
      return 1;
    }
    const after = await client.get(`/api/v1/instances/${encodeURIComponent(started.archivedAs)}`, InstanceDetail);
    if (values.json) {
      printJson({ ...started, workflow: wf, state: after.state, kept: after.stateReason });
      return 0;
    }
    process.stdout.write(
      `${started.name} is deleted (${after.stateReason ?? "nothing kept"}); listed as ${started.archivedAs} by status --all\n`,
    );
    return 0;
  },
};
