/**
 * Generates docs/spec-reference.md from the zod schema in shared/spec.ts, so the reference cannot
 * drift from what the parser accepts (a test regenerates it and compares).
 * Run: npx tsx scripts/spec-doc.ts > docs/spec-reference.md
 */
import { z } from "zod";
import { StatefulInstanceSpec } from "../shared/spec.js";

/** What each field means, by path (`[]` marks list items). Every schema path must have one. */
export const DESCRIPTIONS: Record<string, string> = {
  name: "The stateful instance's name: unique per coordinator, used in tags and the CLI.",
  region:
    "AWS region the instance lives in: every EC2, ELBv2 and KMS call about it goes to that region. It must be one the coordinator " +
    "manages (its config `region`, or one of its `regions`): create, update, import and group create/update refuse any other. " +
    "A spec sent without `region` is in the coordinator's own `region`. It cannot change by `update`.",
  launch: "How each generation is launched.",
  "launch.imageId":
    "AMI of the first generation. With `persistence.root`, later generations boot from spotkeep's own image of the root volume.",
  "launch.instanceTypes": "Instance types in order of preference; the next one is tried when EC2 has no capacity for the previous.",
  "launch.instanceTypes[]":
    "An EC2 instance type such as `m6i.large`. Its architecture must be the image's (an arm64 type such as `m7g.large` needs an arm64 image): " +
    "create, update and import refuse a type that cannot boot it.",
  "launch.subnetIds":
    "Subnets (one AZ each) to launch in. With `dataMethod: reattach` the data volumes pin the AZ; other subnets are used only through snapshot restore.",
  "launch.subnetIds[]": "A subnet id.",
  "launch.securityGroupIds": "Security groups of the instance (or of the ENI spotkeep creates).",
  "launch.securityGroupIds[]": "A security group id.",
  "launch.iamInstanceProfile": "Instance profile name for the workload. The agent itself needs no AWS permissions.",
  "launch.keyName": "EC2 key pair for SSH access, given to every generation (an imported instance keeps its own).",
  "launch.userData":
    "Your own user-data; it runs after spotkeep restored storage and network. " +
    "With spotkeep's bootstrap (about 8.5 KB) it must fit EC2's 16 KB: a create, update or import over it is refused.",
  "launch.tags": "Tags for the instance and every resource spotkeep creates for it. `aws:` and `spotkeep:` prefixes are reserved.",
  "launch.market": "Purchase options.",
  "launch.market.type": "`spot` (default) or `on-demand`.",
  "launch.market.fallbackToOnDemand": "Launch on-demand when no spot capacity is left in any allowed type/subnet.",
  "launch.market.revertWindow": "Weekly UTC window in which a move back to spot may run (`Mon:02:00-Mon:04:00`); any time when absent.",
  "launch.market.revertToSpot":
    "While a generation runs on-demand, the coordinator periodically checks for spot capacity (a short-lived probe launch) and, " +
    "when there is some, recycles onto spot (within `revertWindow`); without capacity the on-demand instance keeps serving. `false`: never.",
  "launch.market.maxPrice": "Spot max price per hour in USD; default is the on-demand price.",
  "launch.rootVolume":
    "The root volume of every generation; a field left out keeps what the image maps. Create and update refuse a size below the root " +
    "snapshot of the image the next generation boots; a persisted root that has grown past it keeps its own size (with an event).",
  "launch.rootVolume.sizeGiB": "Size in GiB, at least the image's root snapshot.",
  "launch.rootVolume.type": "EBS volume type of the root (a root cannot be st1 or sc1).",
  "launch.rootVolume.iops": "Provisioned IOPS (gp3, io1, io2; needs `type`).",
  "launch.rootVolume.throughput": "Throughput in MiB/s (gp3; needs `type`).",
  persistence: "What survives a replacement.",
  "persistence.root": "Keep the root disk: snapshot it and register an AMI that the next generation boots from.",
  "persistence.volumes":
    "Data volumes, created at the first launch (or imported with `volumeId`); `update` grows them and adds new ones live (see below).",
  "persistence.volumes[]": "One data volume.",
  "persistence.volumes[].device":
    "Device name at attach (`/dev/sdf`…`/dev/sdp`, `/dev/xvdf`…). On Nitro the agent finds the volume by id, not by this name.",
  "persistence.volumes[].sizeGiB": "Size in GiB, within the volume type's range.",
  "persistence.volumes[].type": "EBS volume type.",
  "persistence.volumes[].iops": "Provisioned IOPS (gp3, io1, io2).",
  "persistence.volumes[].throughput": "Throughput in MiB/s (gp3).",
  "persistence.volumes[].mountPoint":
    "Where the agent mounts the filesystem on every generation. Required, except on a volume adopted by `volumeId`: " +
    "without one it is attached and reported, and the workload mounts it.",
  "persistence.volumes[].fsType": "Filesystem created on a new volume and checked after an unclean stop.",
  "persistence.volumes[].volumeId": "Adopt this existing volume instead of creating one.",
  "persistence.dataMethod":
    "`reattach` moves the same EBS volumes to the replacement (same AZ); `snapshot` restores new volumes from snapshots taken at quiesce (any AZ).",
  "persistence.encryption":
    "EBS encryption of every volume spotkeep has EC2 create for the instance (root and data, at every launch and from snapshots); " +
    "EC2 encrypts their snapshots and images with the same key. It cannot change on an existing instance (update refuses it). " +
    "Off, a volume is still encrypted when the account encrypts by default (`spotkeep doctor` shows it) or its snapshot is encrypted.",
  "persistence.encryption.encrypted": "Encrypt the volumes spotkeep creates.",
  "persistence.encryption.kmsKeyId":
    "The KMS key: key id, key ARN, alias name (`alias/…`) or alias ARN, in the instance's region; absent: the account's default EBS key. " +
    "Create, update and import refuse a key KMS does not have, one not Enabled, or one that is not a symmetric encryption key. " +
    "The coordinator's role needs the KMS statements of docs/iam/coordinator-policy.json (and the key policy must allow them).",
  "persistence.network": "How the private IP is kept.",
  "persistence.network.privateIp":
    "`same-eni` keeps a dedicated network interface (and its IP) across generations; `pool` picks a free address from `ipPool`; `none` lets EC2 choose.",
  "persistence.network.ipPool": "Addresses for `privateIp: pool`.",
  "persistence.network.ipPool[]": "An IPv4 address inside one of the subnets.",
  "persistence.network.attach":
    "`primary` (the ENI is the instance's eth0) or `secondary` (make-before-break: " +
    "the stable ENI sits at device index 1 and each generation has its own primary ENI; at a notice the replacement boots while the old instance serves, " +
    "then only the ENI and the volumes move; the agent configures the ENI on Linux; clients use the stable IP).",
  snapshots: "Continuous snapshots of the data volumes (and of the root with `root`); they carry `launch.tags` as well as spotkeep's tags.",
  "snapshots.intervalMinutes": "Take a snapshot every N minutes (0 = off, else at least 5).",
  "snapshots.keep": "How many snapshots to keep per volume, and how many root images.",
  "snapshots.consistency": "`crash` (no coordination), `freeze` (fsfreeze around CreateSnapshot) or `hooks` (pre-stop hook, then freeze).",
  "snapshots.root":
    "Also capture the root volume as an image at every snapshot (needs `persistence.root`); images are kept by `keep` too, " +
    "never the one the next generation boots from.",
  "snapshots.copyToRegions":
    "Disaster recovery: regions (each one the coordinator manages, not the instance's own) that get a copy of every data snapshot " +
    "and root image spotkeep keeps for the instance. The coordinator's periodic pass copies each once it is complete " +
    "(CopySnapshot/CopyImage, tagged `spotkeep:copy-of`), and deletes a copy when its original goes (retention, delete) or its " +
    "region leaves the list. `describe --json` lists the copies (`snapshot-copy`, `image-copy`, with their region). " +
    "`spotkeep restore NAME --region R` brings the instance back in R from the latest copies there.",
  "snapshots.copyToRegions[]": "A region as a string (`us-west-2`), or `{region, kmsKeyId}`.",
  "snapshots.copyToRegions[].region": "The region the copies go to.",
  "snapshots.copyToRegions[].kmsKeyId":
    "The key of that region the copies are encrypted with; absent: that region's default EBS key when the copy is encrypted " +
    "(a copy of an encrypted snapshot always is).",
  hooks: "Commands the agent runs on the instance.",
  "hooks.preStop":
    "Runs at quiesce, before sync and freeze (e.g. a fast database shutdown): at a spot notice, a recycle, a pause, and the " +
    "`delete` of a running instance (there followed by sync and unmount, no freeze; `delete --force` skips it).",
  "hooks.postRestore": "Runs on the replacement after the volumes are mounted, before your user-data.",
  "hooks.timeoutSeconds": "Limit for each hook; a hook that times out makes the quiesce unclean.",
  onRebalance:
    "What a rebalance recommendation triggers: `ignore`, a fresh `snapshot`, or `recycle`: a planned replacement before EC2 " +
    "takes the instance (quiesce, capture, a new generation keeping what `persistence` keeps); when another workflow " +
    "already moves the instance, no recycle starts and an event says why.",
  health: "Health checks and autohealing; absent: an instance is replaced only when EC2 takes it or says it is gone.",
  "health.type":
    "`agent`: the agent's heartbeats (silent while EC2 says running = unhealthy); `ec2`: " +
    "EC2's system and instance status checks (`impaired` = unhealthy); " +
    "`http`: the agent probes `http://127.0.0.1:PORT/PATH` on the instance (2xx = healthy) and reports it in its heartbeat.",
  "health.gracePeriodSeconds": "After a generation is ready, how long unhealthy observations are ignored.",
  "health.unhealthyDurationSeconds": "How long an instance must stay unhealthy (after the grace period) before it counts as unhealthy.",
  "health.autoHealing":
    "Recycle an unhealthy instance (crash-consistent capture when its agent cannot quiesce). `false`: " +
    "only an event and the `spotkeep_instances_unhealthy` gauge.",
  "health.http": "The application's health endpoint, for `type: http`.",
  "health.http.port": "Port on the instance's loopback.",
  "health.http.path": "Path to GET; any 2xx answer within 5 s is healthy.",
  maintenance: "What happens ahead of an EC2 scheduled event (instance-retirement, system-reboot, …) on the live instance.",
  "maintenance.recycle":
    "Recycle onto a new instance `leadSeconds` before the event's NotBefore. `false`: the event is only put on the timeline.",
  "maintenance.leadSeconds": "How long before the event's NotBefore the recycle starts (it must finish by then).",
  schedule:
    "Operations the coordinator starts on a timetable, each due time once (recorded, so a restart neither repeats nor loses one); " +
    "`spotkeep describe` shows each task's next run.",
  "schedule[]": "One scheduled task.",
  "schedule[].action":
    "`pause` and `recycle` apply to a running instance, `resume` to a paused one, `snapshot` to a running one with data volumes; " +
    "in any other state the due time is skipped with a `schedule-skipped` event. " +
    "While another workflow moves the instance the due time waits; seen more than an hour late it is `schedule-missed`.",
  "schedule[].cron":
    "Five-field cron expression in UTC (minute hour day-of-month month day-of-week), e.g. " +
    '`"0 20 * * 1-5"`; names (`MON-FRI`) and `@daily`-style nicknames work, seconds do not.',
  loadBalancers:
    "ELBv2 target groups the current generation is registered in: " +
    "each new generation is registered once ready (and awaited healthy), the old one deregistered and drained before its quiesce. " +
    "Groups of target type `ip` need nothing (the private IP is kept) and are left alone.",
  "loadBalancers.targetGroupArns": "Target group ARNs, in the instance's region.",
  "loadBalancers.targetGroupArns[]": "One target group ARN.",
  "loadBalancers.drainingSeconds":
    "Longest wait (model seconds) for the old generation to finish draining after it is deregistered, before it is quiesced; " +
    "at a spot interruption at most half of what the notice leaves.",
};

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  default?: unknown;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  maxLength?: number;
  format?: string;
  anyOf?: JsonSchema[];
}

interface Row {
  path: string;
  type: string;
  required: boolean;
  default: string;
  rules: string;
}

function walk(schema: JsonSchema, path: string, required: boolean, rows: Row[]): void {
  const type = schema.enum
    ? schema.enum.map((e) => `\`${String(e)}\``).join(" \\| ")
    : schema.type === "array"
      ? `list of ${schema.items?.type ?? "value"}`
      : schema.type === "object" && !schema.properties
        ? "map of string"
        : (schema.type ?? (schema.format ? "string" : "value"));
  const rules: string[] = [];
  if (schema.pattern && !schema.enum) rules.push(`pattern \`${schema.pattern}\``);
  if (schema.format) rules.push(schema.format);
  if (schema.minimum !== undefined) rules.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) rules.push(`≤ ${schema.maximum}`);
  if (schema.minItems !== undefined) rules.push(`at least ${schema.minItems}`);
  if (schema.maxItems !== undefined) rules.push(`at most ${schema.maxItems}`);
  if (schema.maxLength !== undefined) rules.push(`at most ${schema.maxLength} chars`);
  if (path)
    rows.push({
      path,
      type,
      required,
      default: schema.default === undefined ? "" : `\`${JSON.stringify(schema.default)}\``,
      rules: rules.join(", "),
    });
  if (schema.type === "object" && schema.properties) {
    for (const [key, child] of Object.entries(schema.properties))
      walk(child, path ? `${path}.${key}` : key, (schema.required ?? []).includes(key), rows);
  }
  if (schema.type === "array" && schema.items) walk(schema.items, `${path}[]`, true, rows);
}

export function specRows(): Row[] {
  const rows: Row[] = [];
  walk(z.toJSONSchema(StatefulInstanceSpec, { io: "input", unrepresentable: "any" }) as JsonSchema, "", true, rows);
  return rows;
}

export function renderSpecReference(): string {
  const rows = specRows();
  const missing = rows.filter((r) => !DESCRIPTIONS[r.path]).map((r) => r.path);
  if (missing.length) throw new Error(`scripts/spec-doc.ts has no description for: ${missing.join(", ")}`);
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  return [
    "# Stateful instance spec reference",
    "",
    "<!-- Generated by `npx tsx scripts/spec-doc.ts > docs/spec-reference.md` from shared/spec.ts; a test fails when they differ. -->",
    "",
    "A spec is YAML or JSON. `spotkeep create -f SPEC` checks it locally before sending it; every error names the",
    'field (`persistence.volumes[0].device: "/dev/foo!" is not a valid device name …`). Unknown fields are errors.',
    "",
    "| field | type | required | default | rules | meaning |",
    "|---|---|---|---|---|---|",
    ...rows.map(
      (r) => `| \`${r.path}\` | ${r.type} | ${r.required ? "yes" : ""} | ${r.default} | ${esc(r.rules)} | ${DESCRIPTIONS[r.path]} |`,
    ),
    "",
    "Rules across fields:",
    "- `persistence.network.privateIp: pool` needs a non-empty `ipPool`; `ipPool` is only used with `pool`.",
    "- `persistence.network.attach: secondary` needs `privateIp: same-eni`; the coordinator refuses it with `persistence.root: " +
      "true` or `dataMethod: snapshot` (the replacement boots before the old root or data could be captured).",
    "- Device names and mount points are unique across volumes (`/dev/sdf` and `/dev/xvdf` are the same slot); " +
      "the root device (`/dev/sda*`, `/dev/xvda*`) is not a data volume.",
    "- `sizeGiB` must lie in the volume type's range (gp2/gp3 1–16384, io1 4–16384, io2 4–65536, st1/sc1 125–16384, " +
      "standard 1–1024); `iops` only for gp3/io1/io2, `throughput` only for gp3.",
    "- `dataMethod: reattach` with subnets in several AZs is allowed: the volumes pin the AZ, and a replacement elsewhere goes through snapshot restore.",
    "- `snapshots.intervalMinutes` is 0 (off) or at least 5.",
    "- `snapshots.root` needs `persistence.root: true`.",
    "- A scheduled task (the same `action` and `cron`) is listed once.",
    "- A target group ARN is listed once and lies in the spec's `region`.",
    "- `persistence.encryption.kmsKeyId` needs `encrypted: true`; a key ARN lies in the spec's `region`; the only AWS-managed key allowed is " +
      "`alias/aws/ebs`.",
    "- A volume adopted by `volumeId` must already be encrypted as `persistence.encryption` asks (EC2 keeps a volume's encryption for its life).",
    "- `launch.rootVolume`: size within the type's range, `iops` only with type gp3/io1/io2, `throughput` only with type gp3.",
    "- `region`, and each `snapshots.copyToRegions[].region`, is a region the coordinator manages (checked by the coordinator at " +
      "create, update, import and group create/update; `spotkeep create --dry-run` shows the refusal without creating anything).",
    "- `snapshots.copyToRegions` lists each region once and never the instance's own; a key ARN lies in its region.",
    "",
    "Changing data volumes with `spotkeep update` (volumes are matched by `device`):",
    "- Accepted on a running instance, made live without a restart: a larger `sizeGiB`, and a new `type`, `iops` or `throughput` " +
      "that EC2's ModifyVolume can make; spotkeep modifies the EBS volume, follows the modification to `optimizing` (the new size " +
      "is usable from there) and the agent grows the filesystem online (ext2/3/4 with `resize2fs`, xfs with `xfs_growfs`; a btrfs " +
      "volume's size is refused). A volume without `mountPoint` is grown in EBS only: its filesystem is the workload's to grow.",
    "- Accepted too: a new entry with a device of its own and a `mountPoint`; spotkeep creates the volume, attaches it, the agent " +
      "formats it (it is blank) and mounts it, and from then on every generation keeps it.",
    "- The spec is stored only once every change is in place; until then `describe` shows the previous one. An update with a volume " +
      "change cannot be combined with `--recycle`, and another update waits until the change is done (409).",
    "- Refused, naming the field: a smaller `sizeGiB`; a change of `fsType`, `volumeId`, `device`, or of a `mountPoint` a volume " +
      "already has (an adopted volume without one may get one: mounted from the next generation on); removing a volume; a new " +
      "volume without `mountPoint` or with `volumeId`; io1/io2 without `iops` or above 50 (io1) / 1000 (io2) IOPS per GiB; gp3 " +
      "`iops` outside 3000–16000 or above 500 per GiB, `throughput` outside 125–1000 MiB/s or above 0.25 MiB/s per IOPS; a volume " +
      "whose previous modification is still running or completed less than 6 hours ago (EC2's wait between modifications).",
    "- A volume change needs the instance `running`; it does not start while a pause, recycle or another workflow moves the " +
      "instance (409). A spot interruption during the change is not delayed: the change goes on with the replacement generation " +
      "(a new volume is attached and mounted there) and ends with every volume of the stored spec attached and mounted.",
    "- A change that fails (EC2 refuses the modification, the agent cannot grow the filesystem) leaves the stored spec as it " +
      "was; an event on the timeline says why, and a volume already created for it stays (tagged with the workflow).",
    "",
    "Restoring in another region (`spotkeep restore NAME --region R -f OVERRIDES`, POST /api/v1/instances/NAME/restore):",
    "- Allowed when the instance is paused or failed. The overrides are a partial spec laid over the stored one (mappings merge, " +
      "lists and values replace, data volumes matched by `device`, of which `mountPoint`, `sizeGiB`, `type`, `iops` and `throughput` " +
      "may be set); the result must be a valid spec in `region: R`. Required in the overrides: `launch.subnetIds` (subnets of R); " +
      "`launch.securityGroupIds` when the spec has security groups; `launch.keyName` and `loadBalancers.targetGroupArns` when it " +
      "has them; `persistence.encryption.kmsKeyId` (a key of R) when the spec " +
      "names a key; `persistence.network.ipPool` with `privateIp: pool`; `launch.imageId` (an image of R) without " +
      "`persistence.root` or when R has no available copy of the root image. Each data volume needs a completed copy in R.",
    "- Volumes adopted by `volumeId` lose it (new volumes are made from the copies); when the overrides leave " +
      "`snapshots.copyToRegions` out, R is dropped from it.",
    "- The instance gets a new ENI (`privateIp: same-eni`) and so a new private IP. What it had in its old region is kept, untouched, " +
      "without expiry (`describe` lists it), for you to delete there.",
    "- A restore that fails once it has begun leaves the instance failed in R, its spec there; `spotkeep resume` then makes " +
      "the data volumes from the same copies.",
    "",
  ]
    .map(wrapBullet)
    .join("\n");
}

/** A list item longer than 100 characters, broken between words onto indented continuation lines. */
function wrapBullet(line: string): string {
  if (!line.startsWith("- ") || line.length <= 100) return line;
  const out: string[] = [];
  let cur = "";
  for (const word of line.split(" ")) {
    if (cur && cur.length + 1 + word.length > 100) {
      out.push(cur);
      cur = `  ${word}`;
    } else cur = cur ? `${cur} ${word}` : word;
  }
  out.push(cur);
  return out.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(renderSpecReference());
