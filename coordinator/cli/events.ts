import { EventsResponse, type Timeline } from "../../shared/api.js";
import type { Command } from "./main.js";
import { parseFlags, UsageError } from "./args.js";
import { ApiClient, CLIENT_FLAGS, printJson, secs } from "./client.js";
import { renderTable } from "./table.js";

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

/** One workflow as a table: offsets from its start, durations, the critical path marked with *. */
export function renderTimeline(t: Timeline): string {
  const start = Date.parse(t.startedAt);
  const critical = new Set(t.criticalPath);
  const header = `${t.kind} ${t.workflowId}${t.trigger ? ` (trigger: ${t.trigger})` : ""}: ${t.outcome}; downtime ${secs(t.downtimeSeconds)}, recovery ${secs(t.recoverySeconds)}\n`;
  const rows = t.steps.map((s) => [
    critical.has(s.name) ? "*" : "",
    s.name,
    // Timestamps are wall-clock; offsets are shown in model seconds like the durations.
    s.startedAt ? `+${((Date.parse(s.startedAt) - start) / 1000 / t.timeScale).toFixed(1)}s` : "-",
    s.durationMs !== null ? `${(s.durationMs / 1000).toFixed(1)}s` : "-",
    s.status,
    s.attempts,
    s.error ?? "",
  ]);
  return (
    header +
    renderTable(["CP", "STEP", "START", "DURATION", "STATUS", "ATTEMPTS", "ERROR"], rows) +
    (critical.size ? `critical path: ${t.criticalPath.join(" -> ")}\n` : "")
  );
}
