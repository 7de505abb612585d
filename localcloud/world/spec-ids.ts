/**
 * The ids a stateful instance spec needs on this localcloud: the default VPC's subnet in each AZ,
 * its default security group, and the Linux base image (node on its instances) and the stock image
 * (no node, like a stock Amazon Linux AMI) of each architecture. localcloud makes new
 * random ids every time it starts (and on reset), so they are printed at start and served again by
 * the control API (`GET ids`).
 */
import type { World } from "./world.js";

export interface SpecIds {
  region: string;
  vpcId: string;
  /** One default subnet per AZ, by AZ name. */
  subnets: Array<{ availabilityZone: string; subnetId: string; cidr: string }>;
  securityGroupId: string;
  /** Linux base images (the host's node on their instances) by architecture; the Windows image, metadata only, is left out. */
  images: Record<string, string>;
  /** Stock images (no node on their instances, like a stock Amazon Linux 2023 AMI) by architecture. */
  stockImages: Record<string, string>;
}

export function specIds(w: World): SpecIds {
  const vpc = w.defaultVpc();
  const subnets = [...w.subnets.values()]
    .filter((s) => s.vpcId === vpc.id && s.defaultForAz)
    .sort((a, b) => a.az.localeCompare(b.az))
    .map((s) => ({ availabilityZone: s.az, subnetId: s.id, cidr: s.cidr }));
  const sg = w.defaultSecurityGroup(vpc.id);
  if (!sg) throw new Error(`localcloud: the default VPC ${vpc.id} has no default security group`);
  const byArch = (ids: Record<string, string>): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const [arch, id] of Object.entries(ids)) if (w.images.has(id)) out[arch] = id;
    return out;
  };
  return {
    region: w.region,
    vpcId: vpc.id,
    subnets,
    securityGroupId: sg.id,
    images: byArch(w.baseImageIds),
    stockImages: byArch(w.stockImageIds),
  };
}
