/**
 * An empty store beside managed resources. A coordinator whose store holds no stateful instance
 * (new, or lost: the database and its identity file removed, or a truncated database) looks in
 * its region for what spotkeep tagged (`spotkeep:instance`): instances not terminated, volumes,
 * ENIs, and the account's own snapshots and images. Starting empty beside them would orphan them
 * silently, so if there are any the start is refused, naming them and the ways forward:
 *  - restore the store from a backup;
 *  - `--adopt-from-ec2`: rebuild the stateful instances that can be rebuilt from EC2 (below);
 *  - `--accept-empty-store`: start empty anyway (they stay in EC2, unmanaged; the log names them).
 *
 * What `--adopt-from-ec2` rebuilds: for each name in the tags with a running, pending, stopping or
 * stopped instance (the highest `spotkeep:generation`), a stateful instance whose live generation
 * is that instance, with its data volumes (by device), its primary ENI and private IP, and its
 * image as the root lineage; the spec is built as `import` builds one, from what EC2 says about
 * the instance. What it cannot rebuild, because EC2 does not hold it: the rest of the spec (mount
 * points, hooks, health checks, schedules, snapshot policy, onRebalance, instance-type and subnet
 * fallbacks, the user's own user-data), the history (generations before, workflows, events,
 * snapshots taken, kept resources of deleted instances), and any stateful instance with no
 * instance in EC2 (paused, or between generations): those resources are listed, left alone, and
 * can be imported or cleaned up by hand.
 */
import { TAG, type Ec2Gateway, type TaggedResources } from "./cloud/gateway.js";
import type { Store } from "./db/store.js";
import { ImportRefused, planImport } from "./import/plan.js";

export const ADOPT_FROM_EC2_FLAG = "--adopt-from-ec2";
export const ACCEPT_EMPTY_FLAG = "--accept-empty-store";

/** The start is refused: the store is empty, and spotkeep-tagged resources are in EC2. */
export class EmptyStoreRefused extends Error {
  override name = "EmptyStoreRefused";
}

export type EmptyStoreGateway = Pick<Ec2Gateway, "findTagged" | "describeInstanceDetails" | "describeImage" | "describeVolume">;

export interface EmptyStoreDeps {
  store: Store;
  ec2: EmptyStoreGateway;
  region: string;
  /** The other regions this coordinator manages, each looked at the same way. */
  otherRegions?: ReadonlyArray<{ region: string; ec2: EmptyStoreGateway }>;
  log: (line: string) => void;
}

/** How many ids of each kind a message names before "and N more". */
const NAMED = 10;

const LIVE = new Set(["pending", "running", "stopping", "stopped"]);

/** What spotkeep tagged, as one line per kind ("instances i-1 (db), i-2 (web)"). */
function describeFound(f: TaggedResources): string[] {
  const name = (t: Record<string, string>) => (t[TAG.instance] ? ` (${t[TAG.instance]})` : "");
  const kinds: Array<[string, string[]]> = [
    ["instances", f.instances.map((i) => `${i.instanceId}${name(i.tags)}`)],
    ["volumes", f.volumes.map((v) => `${v.volumeId}${name(v.tags)}`)],
    ["network interfaces", f.networkInterfaces.map((e) => `${e.eniId}${name(e.tags)}`)],
    ["snapshots", f.snapshots.map((s) => `${s.snapshotId}${name(s.tags)}`)],
    ["images", f.images.map((i) => `${i.imageId}${name(i.tags)}`)],
  ];
  return kinds
    .filter(([, ids]) => ids.length > 0)
    .map(([kind, ids]) => `${kind} ${ids.slice(0, NAMED).join(", ")}${ids.length > NAMED ? ` and ${ids.length - NAMED} more` : ""}`);
}

function count(f: TaggedResources): number {
  return f.instances.length + f.volumes.length + f.networkInterfaces.length + f.snapshots.length + f.images.length;
}

/**
 * Run at start, before anything acts. Returns what it did in words (nothing when the store is not
 * empty or EC2 holds nothing of spotkeep's); throws EmptyStoreRefused when neither way forward
 * was chosen.
 */
/** What spotkeep tagged in one region that still counts (null when the gateway cannot list tags). */
async function tagged(ec2: EmptyStoreGateway): Promise<TaggedResources | null> {
  if (!ec2.findTagged) return null;
  const raw = await ec2.findTagged(TAG.instance);
  return {
    // A capacity probe is terminated at once and belongs to no stateful instance.
    instances: raw.instances.filter((i) => LIVE.has(i.state) && i.tags[TAG.probe] === undefined),
    volumes: raw.volumes.filter((v) => v.state !== "deleting" && v.state !== "deleted"),
    networkInterfaces: raw.networkInterfaces,
    snapshots: raw.snapshots,
    images: raw.images.filter((i) => i.state !== "deregistered" && i.state !== "failed"),
  };
}

export async function guardEmptyStore(
  d: EmptyStoreDeps,
  o: { adoptFromEc2: boolean; acceptEmptyStore: boolean; restoreHint: string },
): Promise<string[]> {
  // Empty means no record of the store's own work at all: a group recorded before its first member,
  // or a workflow, is work in flight whose resources may already be in EC2.
  const c = await d.store.counts();
  if ((c.instances ?? 0) + (c.stateful_groups ?? 0) + (c.workflows ?? 0) > 0) {
    if (o.adoptFromEc2)
      throw new EmptyStoreRefused(`${ADOPT_FROM_EC2_FLAG}: the store is not empty; it rebuilds records only into an empty store`);
    return [];
  }
  const places: Array<{ region: string; ec2: EmptyStoreGateway; found: TaggedResources }> = [];
  for (const p of [{ region: d.region, ec2: d.ec2 }, ...(d.otherRegions ?? [])]) {
    const f = await tagged(p.ec2);
    if (f && count(f) > 0) places.push({ ...p, found: f });
  }
  if (places.length === 0) return [];
  if (o.adoptFromEc2) {
    const lines: string[] = [];
    for (const p of places) lines.push(...(await adoptFromEc2({ ...d, ec2: p.ec2, region: p.region }, p.found)));
    return lines;
  }
  // One region: as before; several: each line says its region.
  const where = places.map((p) => p.region).join(", ");
  const what = places.flatMap((p) => describeFound(p.found).map((w) => (places.length > 1 ? `${p.region}: ${w}` : w)));
  const found = places.reduce<TaggedResources>(
    (all, p) => ({
      instances: [...all.instances, ...p.found.instances],
      volumes: [...all.volumes, ...p.found.volumes],
      networkInterfaces: [...all.networkInterfaces, ...p.found.networkInterfaces],
      snapshots: [...all.snapshots, ...p.found.snapshots],
      images: [...all.images, ...p.found.images],
    }),
    { instances: [], volumes: [], networkInterfaces: [], snapshots: [], images: [] },
  );
  if (o.acceptEmptyStore) {
    const lines = [
      `${ACCEPT_EMPTY_FLAG}: starting on an empty store although EC2 in ${where} holds ${count(found)} resource(s) tagged by spotkeep; ` +
        "they stay as they are, unmanaged by this coordinator:",
      ...what.map((w) => `  ${w}`),
    ];
    for (const l of lines) d.log(l);
    return lines;
  }
  throw new EmptyStoreRefused(
    `the store is empty, but EC2 in ${where} holds ${count(found)} resource(s) tagged by spotkeep: ${what.join("; ")}. ` +
      "Starting empty would leave them orphaned (running, billed, never replaced). Either " +
      `${o.restoreHint}; or start once with ${ADOPT_FROM_EC2_FLAG} to rebuild the stateful instances that still have an instance ` +
      "in EC2 from what EC2 says (their spec's mount points, hooks, health checks, schedules and history cannot be rebuilt); " +
      `or start once with ${ACCEPT_EMPTY_FLAG} to start empty anyway and leave them unmanaged`,
  );
}

async function adoptFromEc2(d: EmptyStoreDeps, found: TaggedResources): Promise<string[]> {
  const lines: string[] = [];
  const say = (l: string) => {
    lines.push(l);
    d.log(`${ADOPT_FROM_EC2_FLAG}: ${l}`);
  };
  // The newest generation of each name.
  const newest = new Map<string, (typeof found.instances)[number]>();
  for (const i of found.instances) {
    const name = i.tags[TAG.instance]!;
    const prev = newest.get(name);
    if (!prev || Number(i.tags[TAG.generation] ?? 0) > Number(prev.tags[TAG.generation] ?? 0)) newest.set(name, i);
  }
  const claimed = new Set<string>();
  for (const [name, inst] of [...newest].sort(([a], [b]) => a.localeCompare(b))) {
    const generation = Math.max(1, Math.floor(Number(inst.tags[TAG.generation] ?? 1)) || 1);
    try {
      const details = await d.ec2.describeInstanceDetails(inst.instanceId);
      if (!details) throw new Error(`EC2 no longer knows ${inst.instanceId}`);
      const [image, volumes] = await Promise.all([
        d.ec2.describeImage(details.imageId),
        Promise.all(details.blockDevices.map((b) => d.ec2.describeVolume(b.volumeId))),
      ]);
      // The instance's user-data is spotkeep's bootstrap; the user's own part is not carried over.
      const plan = planImport(
        name,
        {
          instance: details,
          image,
          volumes: volumes.flatMap((v) => (v ? [v] : [])),
          userData: Buffer.alloc(0),
          managedBy: null,
          region: d.region,
        },
        undefined,
      );
      const { spec, input } = plan;
      await d.store.tx(async (t) => {
        await t.instances.insert(name, spec, "running");
        await t.generations.ensure(name, generation, "adopt-from-ec2");
        await t.generations.recordLaunch(name, generation, {
          ec2InstanceId: details.instanceId,
          instanceType: details.instanceType,
          availabilityZone: details.availabilityZone,
          market: details.lifecycle,
          privateIp: details.privateIp,
        });
        await t.generations.markLive(name, generation);
        await t.instances.setCurrentGeneration(name, generation);
        for (const v of spec.persistence.volumes) {
          await t.volumes.declare(name, v.device, v.mountPoint ?? null, v.fsType);
          if (v.volumeId) await t.volumes.setCurrent(name, v.device, v.volumeId, details.availabilityZone);
        }
        await t.network.set({
          instance: name,
          eniId: input.eni.eniId,
          privateIp: input.eni.privateIp,
          subnetId: input.subnetId,
          availabilityZone: input.availabilityZone,
        });
        await t.root.set({
          instance: name,
          imageId: details.imageId,
          snapshotId: null,
          rootDeviceName: input.rootDevice,
          architecture: input.architecture,
        });
        await t.events.add(
          name,
          "adopted-from-ec2",
          `rebuilt from EC2 after the store was found empty: generation ${generation} is ${details.instanceId} (${input.eni.privateIp}), ` +
            `${spec.persistence.volumes.length} data volume(s), ${input.eni.eniId}, image ${details.imageId}. Not rebuilt (EC2 does not hold ` +
            "them): mount points, hooks, health checks, schedules, snapshot policy, instance-type fallbacks, the user's own user-data " +
            "and the history; set them with spotkeep update",
        );
      });
      for (const id of [details.instanceId, input.eni.eniId, ...details.blockDevices.map((b) => b.volumeId)]) claimed.add(id);
      claimed.add(details.imageId);
      say(`rebuilt stateful instance ${name}: generation ${generation} is ${details.instanceId}`);
    } catch (err) {
      const why = err instanceof ImportRefused ? err.message : (err as Error).message;
      say(`could not rebuild ${name} from ${inst.instanceId}: ${why}`);
    }
  }
  const left: TaggedResources = {
    instances: found.instances.filter((i) => !claimed.has(i.instanceId)),
    volumes: found.volumes.filter((v) => !claimed.has(v.volumeId)),
    networkInterfaces: found.networkInterfaces.filter((e) => !claimed.has(e.eniId)),
    snapshots: found.snapshots,
    images: found.images.filter((i) => !claimed.has(i.imageId)),
  };
  if (count(left) > 0)
    say(
      `left alone, not rebuilt (no instance of theirs in EC2 to rebuild from, or older snapshots and images): ${describeFound(left).join("; ")}`,
    );
  return lines;
}
