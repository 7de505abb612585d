import { EventsResponse } from "../../shared/api.js";
import type { Command } from "../command.js";
import { parseFlags, UsageError } from "../args.js";
import { ApiClient, CLIENT_FLAGS, printJson } from "../client.js";
import { renderTable } from "../table.js";
import { renderTimeline } from "../timeline.js";

export const command: Command = {
  usage: `usage: spotkeep events NAME [--json] [--all] [--url URL] [--token T | --data-dir DIR]

Shows the timeline of the latest workflow of a stateful instance (--all: every workflow): each
step with its start offset, duration and attempts, the critical path (*), downtime and recovery time.`,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, { ...CLIENT_FLAGS, all: { type: "boolean" } }, ["NAME"]);
    const name = positionals[0];
    if (!name) throw new UsageError("missing NAME");
    const client = ApiClient.fromFlags(values);
    const ev = await client.get(`/api/v1/instances/${encodeURIComponent(name)}/events`, EventsResponse);
    if (values.json) {
      printJson(ev);
      return 0;
    }
    const timelines = values.all ? ev.timelines : ev.timelines.slice(-1);
    if (timelines.length === 0) process.stdout.write(`no workflows yet for ${name}\n`);
    for (const t of timelines) process.stdout.write(`${renderTimeline(t)}\n`);
    if (ev.events.length) {
      process.stdout.write("EVENTS\n");
      process.stdout.write(
        renderTable(
          ["AT", "KIND", "MESSAGE"],
          ev.events.slice(values.all ? 0 : -20).map((e) => [e.at, e.kind, e.message]),
        ),
      );
    }
    return 0;
  },
};
