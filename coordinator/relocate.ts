/**
 * What `spotkeep restore NAME --region R` (a relocate) is checked against before anything is
 * recorded: the overrides laid over the stored spec, what an instance must be told anew in another
 * region (subnets, security groups, a key pair, target groups, a KMS key, an address pool, an image
 * when no root image copy is there), and the copies in R it comes back from. Pure: the EC2 answers come in as arguments.
 */
import { ValidationError } from "../shared/errors.js";
import { canonicalDevice, encryptionOf, parseSpec, type StatefulInstanceSpec } from "../shared/spec.js";
import type { Artifact } from "./db/store.js";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Volume fields a relocate's overrides may set (matched by device); the rest describe the data. */
const VOLUME_FIELDS = ["device", "mountPoint", "sizeGiB", "type", "iops", "throughput"] as const;

const at = (o: unknown, path: readonly string[]): unknown => path.reduce<unknown>((x, k) => (isObj(x) ? x[k] : undefined), o);

/**
 * The new spec: the stored one with the overrides laid over it (mappings merge key by key, lists and
 * scalars replace, data volumes matched by device), in `region`. Volumes adopted by id lose the id
 * (the relocate makes new volumes from the copies); when the overrides do not set
 * snapshots.copyToRegions, `region` leaves that list (the instance now lives there). Throws
 * ValidationError naming each wrong field, the regional ones the overrides must give included.
 */
export function relocatedSpec(stored: StatefulInstanceSpec, overrides: unknown, region: string): StatefulInstanceSpec {
  if (overrides !== undefined && overrides !== null && !isObj(overrides))
    throw new ValidationError([{ path: "overrides", reason: "must be a mapping (a partial spec)" }]);
  const over: Obj = isObj(overrides) ? overrides : {};
  const issues: Array<{ path: string; reason: string }> = [];
  if (over.name !== undefined && over.name !== stored.name)
    issues.push({ path: "overrides.name", reason: `is ${JSON.stringify(over.name)} but the instance is ${stored.name}` });
  if (over.region !== undefined && over.region !== region)
    issues.push({ path: "overrides.region", reason: `is ${JSON.stringify(over.region)} but the restore is to ${region}` });
  const from = stored.region;
  const need = (path: string[], why: string) => {
    if (at(over, path) === undefined) issues.push({ path: `overrides.${path.join(".")}`, reason: `is required: ${why}` });
  };
  need(["launch", "subnetIds"], `subnets are regional; give subnets of ${region} (the stored ones are in ${from})`);
  if (stored.launch.securityGroupIds.length)
    need(["launch", "securityGroupIds"], `security groups are regional; give groups of ${region}'s VPC (the stored ones are in ${from})`);
  if (encryptionOf(stored).kmsKeyId)
    need(
      ["persistence", "encryption", "kmsKeyId"],
      `the volumes are encrypted with a key of ${from}; EBS in ${region} needs a key of ${region}`,
    );
  if (stored.launch.keyName !== undefined)
    need(["launch", "keyName"], `key pairs are regional; give a key pair of ${region} (the stored one is in ${from})`);
  if (stored.loadBalancers)
    need(
      ["loadBalancers", "targetGroupArns"],
      `target groups are regional; give target groups of ${region} (the stored ones are in ${from})`,
    );
  if (stored.persistence.network.privateIp === "pool")
    need(["persistence", "network", "ipPool"], `the stored addresses belong to subnets of ${from}; give addresses in the new subnets`);

  const volumes = stored.persistence.volumes.map((v) => {
    const { volumeId: _adopted, ...rest } = v;
    return rest as Obj;
  });
  const listed = at(over, ["persistence", "volumes"]);
  if (listed !== undefined) {
    if (!Array.isArray(listed)) issues.push({ path: "overrides.persistence.volumes", reason: "must be a list" });
    else
      listed.forEach((o: unknown, n: number) => {
        const here = `overrides.persistence.volumes[${n}]`;
        if (!isObj(o) || typeof o.device !== "string") {
          issues.push({ path: here, reason: "must be a mapping with the device of one of the instance's data volumes" });
          return;
        }
        const target = volumes.find((v) => canonicalDevice(String(v.device)) === canonicalDevice(o.device as string));
        if (!target) {
          const devices = stored.persistence.volumes.map((v) => v.device).join(", ") || "none";
          issues.push({ path: `${here}.device`, reason: `${o.device} is not a data volume of the instance (it has: ${devices})` });
          return;
        }
        for (const key of Object.keys(o)) {
          if (!(VOLUME_FIELDS as readonly string[]).includes(key))
            issues.push({
              path: `${here}.${key}`,
              reason: `is not a volume field a restore can set (allowed: ${VOLUME_FIELDS.slice(1).join(", ")})`,
            });
          else if (key !== "device") target[key] = o[key];
        }
      });
  }
  if (issues.length) throw new ValidationError(issues);

  const base = JSON.parse(JSON.stringify(stored)) as Obj;
  const merged = deepMerge(base, over);
  merged.region = region;
  (merged.persistence as Obj).volumes = volumes;
  if (at(over, ["snapshots", "copyToRegions"]) === undefined) {
    const snapshots = merged.snapshots as { copyToRegions: Array<{ region: string }> };
    snapshots.copyToRegions = snapshots.copyToRegions.filter((c) => c.region !== region);
  }
  return parseSpec(merged);
}

function deepMerge(base: Obj, over: Obj): Obj {
  const out: Obj = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (k === "__proto__" || k === "constructor" || k === "prototype") continue;
    const b = out[k];
    out[k] = isObj(b) && isObj(v) && k !== "volumes" ? deepMerge(b, v) : v;
  }
  return out;
}

/** What EC2 in the new region says of one copy. */
export type CopyState = (id: string) => Promise<string | null>;

/**
 * Each data volume's latest copy in `region` that EC2 reports completed, by device; the devices
 * without one are refused by name (field `region`).
 */
export async function latestCopies(
  spec: StatefulInstanceSpec,
  copies: readonly Artifact[],
  region: string,
  state: CopyState,
): Promise<Array<{ device: string; snapshotId: string }>> {
  const out: Array<{ device: string; snapshotId: string }> = [];
  const missing: string[] = [];
  for (const v of spec.persistence.volumes) {
    let found: string | null = null;
    // Newest first (the store's order).
    for (const c of copies)
      if (
        c.region === region &&
        c.device &&
        canonicalDevice(c.device) === canonicalDevice(v.device) &&
        (await state(c.id)) === "completed"
      ) {
        found = c.id;
        break;
      }
    if (found) out.push({ device: v.device, snapshotId: found });
    else missing.push(v.device);
  }
  if (missing.length)
    throw new ValidationError([
      {
        path: "region",
        reason:
          `${region} has no completed copy of ${missing.join(", ")} ` +
          `(snapshots.copyToRegions copies each kept snapshot there once it completes; nothing to restore the data from)`,
      },
    ]);
  return out;
}

/**
 * What the new generation boots: with persistence.root, the latest root image copy in `region`
 * that EC2 reports available; else (or when there is none) the overrides' launch.imageId, which is
 * then required (field named).
 */
export async function relocateImage(
  spec: StatefulInstanceSpec,
  overrides: unknown,
  copies: readonly Artifact[],
  region: string,
  state: CopyState,
): Promise<{ imageId: string; fromCopy: boolean }> {
  if (spec.persistence.root)
    for (const c of copies) if (c.region === region && (await state(c.id)) === "available") return { imageId: c.id, fromCopy: true };
  if (at(overrides, ["launch", "imageId"]) === undefined)
    throw new ValidationError([
      {
        path: "overrides.launch.imageId",
        reason: spec.persistence.root
          ? `is required: ${region} has no available copy of the instance's root image (persistence.root); give an image of ${region}`
          : `is required: images are regional; give an image of ${region} (the stored one is in the old region)`,
      },
    ]);
  return { imageId: spec.launch.imageId, fromCopy: false };
}
