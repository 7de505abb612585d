import type { Timeline } from "../shared/api.js";
import { secs } from "./client.js";
import { renderTable } from "./table.js";

/** One workflow as a table: offsets from its start, durations, the critical path marked with *. */
export function renderTimeline(t: Timeline): string {
  const start = Date.parse(t.startedAt);
  const critical = new Set(t.criticalPath);
  const trigger = t.trigger ? ` (trigger: ${t.trigger})` : "";
  const header = `${t.kind} ${t.workflowId}${trigger}: ${t.outcome}; downtime ${secs(t.downtimeSeconds)}, recovery ${secs(t.recoverySeconds)}\n`;
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
