/** Per-group gauges on the coordinator's registry, read from the store at each scrape. */
import { Gauge, type Registry } from "prom-client";
import type { GroupSummary } from "../../shared/group-api.js";

export function registerGroupMetrics(registry: Registry, groups: () => Promise<GroupSummary[]>): void {
  new Gauge({
    name: "spotkeep_group_members",
    help: "Members of each stateful group by lifecycle state",
    labelNames: ["group", "state"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const g of await groups()) for (const [state, n] of Object.entries(g.byState)) this.set({ group: g.name, state }, n);
    },
  });
  new Gauge({
    name: "spotkeep_group_unavailable",
    help: "Members of each stateful group down now (not running, or moved by a workflow other than a snapshot)",
    labelNames: ["group"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const g of await groups()) this.set({ group: g.name }, g.unavailable);
    },
  });
}
