import { InstanceDetail } from "../../shared/api.js";
import type { Command } from "../command.js";
import { parseFlags, UsageError } from "../args.js";
import { ApiClient, CLIENT_FLAGS, printJson, secs } from "../client.js";
import { renderTable } from "../table.js";
import { healthText } from "../health-text.js";

/**
 * How a replacement keeps (or does not keep) the private IP, from `persistence.network` of the
 * served spec (the API types the spec loosely; absent fields take the spec's defaults).
 */
export function replacementText(spec: unknown): string {
  const net = (spec as { persistence?: { network?: { attach?: unknown; privateIp?: unknown } } } | null)?.persistence?.network;
  const privateIp = typeof net?.privateIp === "string" ? net.privateIp : "same-eni";
  if (net?.attach === "secondary") return "make-before-break (stable ENI at device index 1)";
  if (privateIp === "pool") return "break-before-make (a new primary ENI each generation, its address from the IP pool)";
  if (privateIp === "none") return "break-before-make (a new primary ENI each generation; the private IP changes)";
  return "break-before-make (stable ENI as the primary)";
}

export const command: Command = {
  usage: `usage: spotkeep describe NAME [--json] [--url URL] [--token T | --data-dir DIR]

Shows one stateful instance: its state, persisted resources (data volumes, root image, network
interface), its health and since when, EC2 scheduled maintenance with when the recycle ahead of it
starts, every generation that served it, and the next run of each scheduled task.`,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, CLIENT_FLAGS, ["NAME"]);
    const name = positionals[0];
    if (!name) throw new UsageError("missing NAME");
    const client = ApiClient.fromFlags(values);
    const d = await client.get(`/api/v1/instances/${encodeURIComponent(name)}`, InstanceDetail);
    if (values.json) {
      printJson(d);
      return 0;
    }
    const out: string[] = [];
    out.push(
      renderTable(
        ["FIELD", "VALUE"],
        [
          ["name", d.name],
          ["state", d.state + (d.stateReason ? ` (${d.stateReason})` : "")],
          ["generation", d.generation],
          ["instance", d.instanceId],
          ["type", d.instanceType],
          ["availability zone", d.availabilityZone],
          ["lifecycle", d.lifecycle],
          ["private IP", d.privateIp],
          ["network interface", d.resources.network.eniId],
          ["replacement", replacementText(d.spec)],
          ["root image", d.resources.root.imageId],
          ["root snapshot", d.resources.root.snapshotId],
          ["last downtime", secs(d.lastDowntimeSeconds)],
          ["health", healthText(d.health, { reason: true })],
        ],
      ),
    );
    out.push("\nDATA VOLUMES\n");
    out.push(
      d.resources.volumes.length
        ? renderTable(
            ["DEVICE", "MOUNT POINT", "VOLUME", "AZ", "LATEST SNAPSHOT"],
            d.resources.volumes.map((v) => [v.device, v.mountPoint ?? "(not mounted)", v.volumeId, v.availabilityZone, v.latestSnapshotId]),
          )
        : "none\n",
    );
    if (d.maintenance?.length) {
      out.push("\nSCHEDULED MAINTENANCE\n");
      out.push(
        renderTable(
          ["EVENT", "CODE", "NOT BEFORE", "RECYCLE AT"],
          d.maintenance.map((m) => [m.eventId, m.code, m.notBefore, m.recycleAt ?? "not recycled (maintenance.recycle: false)"]),
        ),
      );
    }
    out.push("\nGENERATIONS\n");
    out.push(
      d.generations.length
        ? renderTable(
            ["GEN", "INSTANCE", "TYPE", "AZ", "LIFECYCLE", "LAUNCHED", "ENDED", "END REASON"],
            d.generations.map((g) => [
              g.generation,
              g.instanceId,
              g.instanceType,
              g.availabilityZone,
              g.lifecycle,
              g.launchedAt,
              g.endedAt,
              g.endReason,
            ]),
          )
        : "none yet\n",
    );
    if (d.schedule.length) {
      out.push("\nSCHEDULE (UTC)\n");
      out.push(
        renderTable(
          ["ACTION", "CRON", "NEXT RUN", "LAST DUE", "LAST OUTCOME"],
          d.schedule.map((t) => [t.action, t.cron, t.nextRunAt ?? "never", t.lastDueAt, t.lastOutcome]),
        ),
      );
    }
    process.stdout.write(out.join(""));
    return 0;
  },
};
