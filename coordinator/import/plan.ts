/**
 * Import planning: from what EC2 says about an existing instance, the spec that makes it a
 * stateful instance (its root persisted, each data volume adopted by id, its own primary ENI
 * kept), the operator's overrides laid over it, and the refusals that name why an instance
 * cannot be imported. Pure: the caller gathers the facts (`ImportFacts`) from EC2 and the store.
 */
import { canonicalDevice, DEVICE_NAME_RE, parseSpec, type StatefulInstanceSpec } from "../../shared/spec.js";
import { ValidationError } from "../../shared/errors.js";
import type { ImageInfo, InstanceDetails, VolumeInfo } from "../cloud/gateway.js";

/** Everything planning needs, gathered before anything changes. */
export interface ImportFacts {
  instance: InstanceDetails;
  /** The image the instance was launched from; null when it was deregistered since (describeImage answers null for an unknown id). */
  image: ImageInfo | null;
  /** Every EBS volume attached to the instance, root included. */
  volumes: VolumeInfo[];
  userData: Buffer;
  /** The stateful instance that already manages this EC2 instance or one of its volumes/ENIs, if any. */
  managedBy: string | null;
  /** Its volumes and ENI that a deleted stateful instance kept (adopted only when asked: import's adoptKept). */
  kept?: Array<{ resourceId: string; kind: "volume" | "network-interface"; instance: string }>;
  region: string;
}

/** What the import runbook carries out, recorded as its input (the original flags for a rollback). */
export interface ImportInput {
  name: string;
  instanceId: string;
  /** EC2 state at admission: a rollback starts the instance again only if it was running. */
  wasRunning: boolean;
  /**
   * Stop the instance before capturing its root (a clean OS shutdown). A one-time spot instance
   * cannot be stopped: its root is captured after termination instead (crash-consistent).
   */
  stopFirst: boolean;
  rootDevice: string;
  rootVolumeId: string;
  architecture: string;
  /** Every EBS device with the DeleteOnTermination flag it had before the import (root included). */
  blockDevices: Array<{ deviceName: string; volumeId: string; deleteOnTermination: boolean }>;
  eni: { eniId: string; attachmentId: string; deleteOnTermination: boolean; privateIp: string };
  availabilityZone: string;
  subnetId: string;
  /** Kept resources of deleted instances this import took over (their TTL tag is removed when adopted). */
  adoptedKept?: string[];
}

export interface ImportPlan {
  spec: StatefulInstanceSpec;
  input: ImportInput;
  /** The steps, in words, for --dry-run. */
  steps: string[];
}

/** Why an instance cannot be imported: `reason` is the whole sentence the operator sees. */
export class ImportRefused extends Error {
  override name = "ImportRefused";
  constructor(
    readonly code:
      | "wrong-state"
      | "not-ebs-backed"
      | "not-in-vpc"
      | "windows"
      | "instance-store"
      | "already-managed"
      | "eni-cannot-be-kept"
      | "volume-cannot-be-kept"
      | "user-data",
    message: string,
  ) {
    super(message);
  }
}

/** User-data room left for the instance's own script next to spotkeep's bootstrap (the spec's limit). */
const USER_DATA_MAX = 12_000;

/** Override fields that describe the instance as it is; they come from EC2, not from the operator. */
const DISCOVERED = [
  ["region"],
  ["launch", "imageId"],
  ["launch", "subnetIds"],
  ["persistence", "root"],
  ["persistence", "network"],
] as const;
const DISCOVERED_VOLUME_FIELDS = ["volumeId", "sizeGiB", "type", "iops", "throughput"] as const;
const OVERRIDABLE_VOLUME_FIELDS = ["device", "mountPoint", "fsType"] as const;

/** Refuse, or build the spec and the runbook input. Throws ImportRefused or ValidationError (overrides). */
export function planImport(name: string, facts: ImportFacts, overrides: unknown): ImportPlan {
  const i = facts.instance;
  const id = i.instanceId;
  if (i.state !== "running" && i.state !== "stopped")
    throw new ImportRefused("wrong-state", `${id} is ${i.state}; only a running or stopped instance can be imported`);
  if (facts.managedBy)
    throw new ImportRefused("already-managed", `${id} is already managed by spotkeep (stateful instance ${facts.managedBy})`);
  if (i.rootDeviceType !== "ebs")
    throw new ImportRefused("not-ebs-backed", `${id} is ${i.rootDeviceType}-backed: only an EBS root can be kept across generations`);
  if (!i.vpcId || !i.subnetId) throw new ImportRefused("not-in-vpc", `${id} is not in a VPC: its private IP cannot be kept on an ENI`);
  if ((i.platform ?? facts.image?.platform ?? "").toLowerCase() === "windows")
    throw new ImportRefused("windows", `${id} runs Windows, which spotkeep does not support yet (the agent is Linux-only)`);
  const store = facts.image?.instanceStoreDevices ?? [];
  if (store.length)
    throw new ImportRefused(
      "instance-store",
      `${id} has instance store volumes (${store.join(", ")} from ${facts.image?.imageId}): their data does not survive a stop or a new instance`,
    );

  // The network identity: exactly one plain ENI, kept at device index 0.
  const primary = i.networkInterfaces.find((n) => n.deviceIndex === 0);
  if (!primary) throw new ImportRefused("eni-cannot-be-kept", `${id} has no network interface at device index 0`);
  const others = i.networkInterfaces.filter((n) => n !== primary);
  if (others.length)
    throw new ImportRefused(
      "eni-cannot-be-kept",
      `${id} has ${i.networkInterfaces.length} network interfaces (${others.map((n) => `${n.eniId} at device index ${n.deviceIndex}`).join(", ")}); ` +
        "only the primary ENI is carried to the next generation: detach the others first",
    );
  if (primary.interfaceType !== "interface")
    throw new ImportRefused(
      "eni-cannot-be-kept",
      `${id}'s primary network interface ${primary.eniId} is of type ${primary.interfaceType}; only a plain interface can be moved to a new instance`,
    );
  if (!primary.attachmentId)
    throw new ImportRefused("eni-cannot-be-kept", `${id}'s primary network interface ${primary.eniId} has no attachment id`);

  // The disks: an EBS root and EBS data volumes that can be re-attached by device name.
  const rootDevice = i.rootDeviceName;
  const root = i.blockDevices.find((b) => b.deviceName === rootDevice);
  if (!rootDevice || !root)
    throw new ImportRefused("not-ebs-backed", `${id} has no EBS volume at its root device ${rootDevice ?? "(none)"}`);
  const data = i.blockDevices.filter((b) => b !== root);
  if (data.length > 26) throw new ImportRefused("volume-cannot-be-kept", `${id} has ${data.length} data volumes; at most 26 can be kept`);
  const volumeFacts = new Map(facts.volumes.map((v) => [v.volumeId, v]));
  for (const b of i.blockDevices) {
    const v = volumeFacts.get(b.volumeId);
    if (!v) throw new ImportRefused("volume-cannot-be-kept", `${b.volumeId} (${b.deviceName} of ${id}) is not visible to DescribeVolumes`);
    if (v.multiAttachEnabled)
      throw new ImportRefused(
        "volume-cannot-be-kept",
        `${b.volumeId} (${b.deviceName}) has Multi-Attach enabled: another instance may hold it, so it cannot be moved safely`,
      );
    if (b !== root && !DEVICE_NAME_RE.test(b.deviceName))
      throw new ImportRefused(
        "volume-cannot-be-kept",
        `${b.volumeId} is attached as ${b.deviceName}, which is not a device name spotkeep can attach it under again (/dev/sdf…, /dev/xvdf…)`,
      );
  }

  const userData = userDataText(id, facts.userData);
  // Encrypted as the instance's volumes are when they all share one key (volumes keep their
  // encryption for life, and snapshots and images inherit it); mixed volumes leave it off.
  const keys = new Set(
    i.blockDevices.map((b) => (volumeFacts.get(b.volumeId)?.encrypted ? (volumeFacts.get(b.volumeId)?.kmsKeyId ?? "") : null)),
  );
  const [onlyKey] = [...keys];
  const encryption =
    keys.size === 1 && typeof onlyKey === "string" ? { encrypted: true, ...(onlyKey ? { kmsKeyId: onlyKey } : {}) } : undefined;
  const discovered = {
    name,
    region: facts.region,
    launch: {
      imageId: i.imageId,
      instanceTypes: [i.instanceType],
      subnetIds: [i.subnetId],
      securityGroupIds: i.securityGroupIds,
      ...(i.iamInstanceProfile ? { iamInstanceProfile: i.iamInstanceProfile } : {}),
      ...(i.keyName ? { keyName: i.keyName } : {}),
      userData,
      tags: userTags(i.tags),
      market: { type: "spot", fallbackToOnDemand: true, revertToSpot: true },
    },
    persistence: {
      root: true,
      dataMethod: "reattach",
      network: { privateIp: "same-eni", attach: "primary" },
      ...(encryption ? { encryption } : {}),
      volumes: data.map((b) => {
        const v = volumeFacts.get(b.volumeId)!;
        return {
          device: b.deviceName,
          volumeId: b.volumeId,
          sizeGiB: v.sizeGiB,
          type: v.volumeType,
          ...(v.iops !== null && ["gp3", "io1", "io2"].includes(v.volumeType) ? { iops: v.iops } : {}),
          ...(v.throughput !== null && v.volumeType === "gp3" ? { throughput: v.throughput } : {}),
        };
      }),
    },
  };
  const merged = mergeOverrides(discovered, overrides, name);
  const spec = parseSpec(merged, "import");

  const input: ImportInput = {
    name,
    instanceId: id,
    wasRunning: i.state === "running",
    stopFirst: i.lifecycle === "on-demand",
    rootDevice,
    rootVolumeId: root.volumeId,
    architecture: i.architecture,
    blockDevices: i.blockDevices.map((b) => ({ ...b })),
    eni: {
      eniId: primary.eniId,
      attachmentId: primary.attachmentId,
      deleteOnTermination: primary.deleteOnTermination,
      privateIp: primary.privateIp,
    },
    availabilityZone: i.availabilityZone,
    subnetId: i.subnetId,
  };
  return { spec, input, steps: describeSteps(spec, input) };
}

function userDataText(id: string, raw: Buffer): string {
  if (raw.length === 0) return "";
  if (raw[0] === 0x1f && raw[1] === 0x8b)
    throw new ImportRefused("user-data", `${id}'s user-data is gzip-compressed; spotkeep runs it after its bootstrap only as text`);
  const text = raw.toString("utf8");
  if (!Buffer.from(text, "utf8").equals(raw) || text.includes("\u0000"))
    throw new ImportRefused("user-data", `${id}'s user-data is not UTF-8 text; spotkeep runs it after its bootstrap only as text`);
  if (text.length > USER_DATA_MAX)
    throw new ImportRefused(
      "user-data",
      `${id}'s user-data is ${text.length} characters; with spotkeep's bootstrap in front at most ${USER_DATA_MAX} fit in EC2's 16 KB`,
    );
  return text;
}

/** The instance's own tags, carried to every generation (aws: and spotkeep: keys are not the user's). */
function userTags(tags: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(tags).filter(([k]) => !k.startsWith("aws:") && !k.startsWith("spotkeep:")));
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Lay the overrides (a partial spec in the spec's own format) over the discovered spec: mappings
 * merge key by key, lists and scalars replace, and `persistence.volumes` entries are matched to
 * the discovered volumes by device. Fields that describe the instance as it is are refused by name.
 */
export function mergeOverrides(discovered: Obj, overrides: unknown, name: string): Obj {
  if (overrides === undefined || overrides === null) return discovered;
  if (!isObj(overrides)) throw new ValidationError([{ path: "overrides", reason: "must be a mapping (a partial spec)" }]);
  const issues: Array<{ path: string; reason: string }> = [];
  if (overrides.name !== undefined && overrides.name !== name)
    issues.push({ path: "overrides.name", reason: `is ${JSON.stringify(overrides.name)} but the import is named ${name}` });
  for (const path of DISCOVERED) {
    let at: unknown = overrides;
    for (const key of path) at = isObj(at) ? at[key] : undefined;
    if (at !== undefined)
      issues.push({ path: `overrides.${path.join(".")}`, reason: "comes from the instance being imported and cannot be overridden" });
  }
  const persistence = overrides.persistence;
  let volumes: Obj[] | undefined;
  if (isObj(persistence) && persistence.volumes !== undefined) {
    const found = (discovered.persistence as { volumes: Obj[] }).volumes;
    if (!Array.isArray(persistence.volumes)) issues.push({ path: "overrides.persistence.volumes", reason: "must be a list" });
    else {
      volumes = found.map((v) => ({ ...v }));
      persistence.volumes.forEach((o: unknown, n: number) => {
        const at = `overrides.persistence.volumes[${n}]`;
        if (!isObj(o) || typeof o.device !== "string") {
          issues.push({ path: at, reason: "must be a mapping with the device of one of the instance's data volumes" });
          return;
        }
        const target = volumes!.find((v) => canonicalDevice(String(v.device)) === canonicalDevice(o.device as string));
        if (!target) {
          const devices = found.map((v) => String(v.device)).join(", ") || "none";
          issues.push({ path: `${at}.device`, reason: `${o.device} is not a data volume of the instance (it has: ${devices})` });
          return;
        }
        for (const key of Object.keys(o)) {
          if ((DISCOVERED_VOLUME_FIELDS as readonly string[]).includes(key))
            issues.push({ path: `${at}.${key}`, reason: "describes the existing volume and cannot be overridden" });
          else if (!(OVERRIDABLE_VOLUME_FIELDS as readonly string[]).includes(key))
            issues.push({ path: `${at}.${key}`, reason: `is not a volume field an import can set (allowed: mountPoint, fsType)` });
          else if (key !== "device") target[key] = o[key];
        }
      });
    }
  }
  if (issues.length) throw new ValidationError(issues);
  const merged = deepMerge(discovered, overrides);
  if (volumes) (merged.persistence as Obj).volumes = volumes;
  return merged;
}

function deepMerge(base: Obj, over: Obj): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (k === "__proto__" || k === "constructor" || k === "prototype") continue;
    const b = out[k];
    out[k] = isObj(b) && isObj(v) ? deepMerge(b, v) : v;
  }
  return out;
}

function describeSteps(spec: StatefulInstanceSpec, x: ImportInput): string[] {
  const data = spec.persistence.volumes;
  const flags = [
    ...x.blockDevices.map((b) => `${b.deviceName} ${b.volumeId} (now ${b.deleteOnTermination})`),
    `${x.eni.eniId} (now ${x.eni.deleteOnTermination})`,
  ];
  const types = spec.launch.instanceTypes.join(", ");
  const market = spec.launch.market;
  return [
    `tag ${x.instanceId}, its volumes and ${x.eni.eniId} as managed by spotkeep (stateful instance ${spec.name})`,
    `set DeleteOnTermination=false on ${flags.join(", ")}`,
    x.stopFirst
      ? x.wasRunning
        ? `stop ${x.instanceId} (a clean OS shutdown; it has no agent yet)`
        : `${x.instanceId} is already stopped`
      : `${x.instanceId} is a spot instance and cannot be stopped: its root is captured after termination (crash-consistent)`,
    ...(x.stopFirst ? [`snapshot the root volume ${x.rootVolumeId} and register it as an image`] : []),
    `terminate ${x.instanceId}; until here a failure rolls back (flags restored${x.wasRunning ? ", instance started again" : ""}, tags removed)`,
    ...(x.stopFirst ? [] : [`snapshot the root volume ${x.rootVolumeId} and register it as an image`]),
    `launch generation 1 as ${market.type} (${types}) in ${x.availabilityZone} with ${x.eni.eniId} (${x.eni.privateIp}) at device index 0` +
      `${market.type === "spot" && market.fallbackToOnDemand ? ", on-demand if spot has no capacity" : ""}; ` +
      "user-data: spotkeep's bootstrap, then the instance's own",
    ...data.map((v) =>
      v.mountPoint
        ? `attach ${v.volumeId} at ${v.device}; the agent mounts it at ${v.mountPoint} (${v.fsType}, never formatted)`
        : `attach ${v.volumeId} at ${v.device}; no mountPoint given, so the agent reports it attached but not mounted (the workload mounts it)`,
    ),
    `delete the original root volume ${x.rootVolumeId} once generation 1 is ready (its image is kept)`,
  ];
}
