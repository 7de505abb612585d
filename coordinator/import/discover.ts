/**
 * Gather what import planning needs from EC2 and the store, changing nothing: the instance with
 * its block devices and ENIs, its image, its volumes, its user-data, and whether spotkeep already
 * manages it or one of its volumes or ENIs.
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
  store: Pick<Store, "generations">,
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
  const tagged = [instance.tags, ...volumes.map((v) => v?.tags ?? {}), ...enis.map((e) => e?.tags ?? {})]
    .map((t) => t[TAG.instance])
    .find((n) => n !== undefined);
  return {
    instance,
    image,
    volumes: volumes.flatMap((v) => (v ? [v] : [])),
    userData,
    managedBy: known?.instance ?? tagged ?? null,
    region,
  };
}
