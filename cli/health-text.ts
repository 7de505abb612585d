/** How `status` and `describe` show an instance's health: `healthy since 10:02:03Z`, `-` without health checks. */
import type { InstanceSummary } from "../shared/api.js";

export function healthText(h: InstanceSummary["health"], o: { reason?: boolean } = {}): string {
  if (!h) return "-";
  const since = h.since ? ` since ${h.since.replace(/\.\d{3}Z$/, "Z")}` : "";
  const reason = o.reason && h.reason ? ` (${h.reason})` : "";
  return `${h.status}${since}${reason}`;
}
