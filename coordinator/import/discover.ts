/**
 * Gather what import planning needs from EC2 and the store, changing nothing: the instance with
 * its block devices and ENIs, its image, its volumes, its user-data, and whether spotkeep already
 * manages it or one of its volumes or ENIs. Ownership is the store's: a volume or ENI the store
 * records for a stateful instance that is not deleted is managed by it, whatever its tags say; one
 * a deleted instance kept is listed as `kept` (import may adopt it explicitly), and that deleted
 * instance's own `spotkeep:instance` tag on it is explained by the store and not held against it.
 */
import { TAG, type Ec2Gateway } from "../cloud/gateway.js";
import type { Store } from "../db/store.js";
import type { ImportFacts } from "./plan.js";

export type DiscoveryGateway = Pick<
  Ec2Gateway,
  "describeInstanceDetails" | "describeImage" | "describeVolume" | "describeNetworkInterface" | "instanceUserData"
>;

/** null when EC2 does not know the instance. */
export async function discoverInstance(
  ec2: DiscoveryGateway,
  store: Pick<Store, "generations" | "deletions">,
  instanceId: string,
  region: string,
): Promise<ImportFacts | null> {
  const instance = await ec2.describeInstanceDetails(instanceId);
  if (!instance) return null;
  const [image, volumes, enis, userData] = await Promise.all([
    ec2.describeImage(instance.imageId),
    Promise.all(instance.blockDevices.map((b) => ec2.describeVolume(b.volumeId))),
    Promise.all(instance.networkInterfaces.map((n) => ec2.describeNetworkInterface(n.eniId))),
    ec2.instanceUserData(instanceId),
  ]);
  const known = await store.generations.byEc2InstanceId(instanceId);
  const resources = [
    ...volumes.flatMap((v) => (v ? [{ id: v.volumeId, kind: "volume" as const, tags: v.tags }] : [])),
    ...enis.flatMap((e) => (e ? [{ id: e.eniId, kind: "network-interface" as const, tags: e.tags }] : [])),
  ];
  const claimed = await Promise.all(resources.map(async (r) => ({ ...r, claims: await store.deletions.claims(r.id) })));
  const owned = claimed.flatMap((r) => r.claims.filter((c) => c.as !== "kept").map((c) => `${c.instance} (${r.id} is its ${c.as})`));
  const kept = claimed.flatMap((r) =>
    r.claims.filter((c) => c.as === "kept").map((c) => ({ resourceId: r.id, kind: r.kind, instance: c.instance })),
  );
  // A tag the store explains (the deleted instance that kept the resource) is not another owner.
  const explained = (r: (typeof claimed)[number], name: string) =>
    kept.some((k) => k.resourceId === r.id && k.instance.split("~")[0] === name);
  const tagged = [
    instance.tags[TAG.instance],
    ...claimed.map((r) => {
      const t = r.tags[TAG.instance];
      return t !== undefined && !explained(r, t) ? t : undefined;
    }),
  ].find((n) => n !== undefined);
  return {
    instance,
    image,
    volumes: volumes.flatMap((v) => (v ? [v] : [])),
    userData,
    managedBy: known?.instance ?? owned[0] ?? tagged ?? null,
    kept,
    region,
  };
}
