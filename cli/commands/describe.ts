import { InstanceDetail, type InventoryView } from "../../shared/api.js";
import type { Command } from "../command.js";
import { parseFlags, UsageError } from "../args.js";
import { ApiClient, CLIENT_FLAGS, printJson, secs } from "../client.js";
import { renderTable } from "../table.js";
import { healthText } from "../health-text.js";

/** The EBS encryption the spec asks of every volume spotkeep creates (a spec stored before the field asks for none). */
/** The spec's region and the regions its copies go to (the API sends the spec as stored, untyped). */
function regionsOf(spec: unknown): { region: string; copyTo: string[] } {
  const sp = spec as { region?: unknown; snapshots?: { copyToRegions?: Array<{ region?: unknown }> } } | null;
  const copyTo = Array.isArray(sp?.snapshots?.copyToRegions) ? sp.snapshots.copyToRegions : [];
  return {
    region: typeof sp?.region === "string" ? sp.region : "",
    copyTo: copyTo.flatMap((c) => (typeof c?.region === "string" ? [c.region] : [])),
  };
}

export function encryptionText(spec: unknown): string {
  const e = (spec as { persistence?: { encryption?: { encrypted?: unknown; kmsKeyId?: unknown } } } | null)?.persistence?.encryption;
  if (e?.encrypted !== true) return "not asked (the account's default encryption applies)";
  return typeof e.kmsKeyId === "string" ? `encrypted with ${e.kmsKeyId}` : "encrypted with the account's default EBS key";
}

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

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
/** A string the instance reported, safe for a terminal: control characters (escape sequences) shown as "?". */
const shown = (s: string | undefined): string | undefined => s?.replace(CONTROL, "?");

/** Bytes in binary units, one decimal (1.5 GiB). */
export function bytesText(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** The agent's latest inventory: filesystems with their use, network interfaces, volume links. */
export function inventoryText(inv: InventoryView): string {
  const out: string[] = [];
  out.push(`\nINVENTORY (generation ${inv.generation}, ${inv.instanceId}, reported by its agent at ${inv.receivedAt})\n`);
  out.push("\nFILESYSTEMS\n");
  out.push(
    inv.filesystems.length
      ? renderTable(
          ["MOUNT POINT", "DEVICE", "VOLUME", "TYPE", "SIZE", "USED", "AVAILABLE", "USE%"],
          inv.filesystems.map((f) => [
            shown(f.mountPoint),
            shown(f.device),
            f.volumeId,
            shown(f.fsType),
            bytesText(f.sizeBytes),
            bytesText(f.usedBytes),
            bytesText(f.availableBytes),
            f.usedRatio === null ? null : `${Math.round(f.usedRatio * 100)}%`,
          ]),
        )
      : "none reported\n",
  );
  out.push("\nNETWORK INTERFACES\n");
  out.push(
    inv.networkInterfaces.length
      ? renderTable(
          ["NAME", "MAC", "ADDRESSES"],
          inv.networkInterfaces.map((n) => [shown(n.name), shown(n.mac), shown(n.addresses.join(", "))]),
        )
      : "none reported\n",
  );
  out.push("\nVOLUMES SEEN BY THE AGENT\n");
  out.push(
    inv.devices.length
      ? renderTable(
          ["VOLUME", "DEVICE", "MOUNT POINT", "TYPE", "SIZE"],
          inv.devices.map((v) => [
            v.volumeId ?? "-",
            shown(v.device) + (v.root ? " (root)" : ""),
            shown(v.mountPoint),
            shown(v.fsType),
            v.sizeBytes === undefined ? null : bytesText(v.sizeBytes),
          ]),
        )
      : "none\n",
  );
  return out.join("");
}

export const command: Command = {
  usage: `usage: spotkeep describe NAME [--json] [--url URL] [--token T | --data-dir DIR]

Shows one stateful instance: its state, persisted resources (data volumes, root image, network
interface), its health and since when, EC2 scheduled maintenance with when the recycle ahead of it
starts, every generation that served it, the next run of each scheduled task, and the latest
inventory its agent reported (filesystems with use, network interfaces, volumes it sees: a claim
of the instance, not EC2's view). --json has all of it under the same names as the API.`,
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
          ["region", regionsOf(d.spec).region],
          ["state", d.state + (d.stateReason ? ` (${d.stateReason})` : "")],
          ["generation", d.generation],
          ["instance", d.instanceId],
          ["type", d.instanceType],
          ["availability zone", d.availabilityZone],
          ["lifecycle", d.lifecycle],
          ["private IP", d.privateIp],
          ["network interface", d.resources.network.eniId],
          ["replacement", replacementText(d.spec)],
          ["encryption", encryptionText(d.spec)],
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
    const copies = (d.resources.artifacts ?? []).filter((a) => a.region);
    const copyTo = regionsOf(d.spec).copyTo;
    if (copies.length || copyTo.length) {
      out.push("\nCOPIES IN OTHER REGIONS\n");
      out.push(
        copies.length
          ? renderTable(
              ["REGION", "COPY", "OF", "KIND", "DEVICE", "GEN", "CREATED"],
              copies.map((c) => [
                c.region,
                c.id,
                c.sourceId,
                c.kind === "image-copy" ? "root image" : "snapshot",
                c.device,
                c.generation,
                c.createdAt,
              ]),
            )
          : `none yet (snapshots.copyToRegions: ${copyTo.join(", ")})\n`,
      );
    }
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
    if (d.inventory) out.push(inventoryText(d.inventory));
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
