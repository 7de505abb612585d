/**
 * The ids a stateful instance spec needs on this localcloud: the default VPC's subnet in each AZ,
 * its default security group and the Linux base image of each architecture. localcloud makes new
 * random ids every time it starts (and on reset), so they are printed at start and served again by
 * the control API (`GET ids`).
 */
import { REGION } from "./catalog.js";
import type { World } from "./world.js";

export interface SpecIds {
  region: string;
  vpcId: string;
  /** One default subnet per AZ, by AZ name. */
  subnets: Array<{ availabilityZone: string; subnetId: string; cidr: string }>;
  securityGroupId: string;
  /** Linux base images by architecture (the Windows image, metadata only, is left out). */
  images: Record<string, string>;
}

export function specIds(w: World): SpecIds {
  const vpc = w.defaultVpc();
  const subnets = [...w.subnets.values()]
    .filter((s) => s.vpcId === vpc.id && s.defaultForAz)
    .sort((a, b) => a.az.localeCompare(b.az))
    .map((s) => ({ availabilityZone: s.az, subnetId: s.id, cidr: s.cidr }));
  const sg = w.defaultSecurityGroup(vpc.id);
  if (!sg) throw new Error(`localcloud: the default VPC ${vpc.id} has no default security group`);
  const images: Record<string, string> = {};
  const base = w.images.get(w.baseImageId);
  if (base) images[base.architecture] = base.id;
  return { region: REGION, vpcId: vpc.id, subnets, securityGroupId: sg.id, images };
}
