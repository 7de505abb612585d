/**
 * The ids a spec needs on a localcloud (its default subnets per AZ, security group and base image
 * per architecture), how they are printed, and the placeholders the specs in examples/ use for
 * them, so a printed `sed` line turns an example into a spec for that localcloud.
 */
import { z } from "zod";

export const SpecIds = z.object({
  region: z.string(),
  vpcId: z.string(),
  subnets: z.array(z.object({ availabilityZone: z.string(), subnetId: z.string(), cidr: z.string() })),
  securityGroupId: z.string(),
  images: z.record(z.string(), z.string()),
});
export type SpecIds = z.infer<typeof SpecIds>;

/** The placeholder ids examples/ uses: a subnet per AZ (a, b, c), the security group, the x86_64 image. */
export const EXAMPLE_PLACEHOLDERS = {
  subnets: { "us-east-1a": "subnet-0aaaaaaaaaaaaaaaa", "us-east-1b": "subnet-0bbbbbbbbbbbbbbbb", "us-east-1c": "subnet-0cccccccccccccccc" },
  securityGroup: "sg-0dddddddddddddddd",
  images: { x86_64: "ami-0eeeeeeeeeeeeeeee" },
} as const;

/** Placeholder -> this localcloud's id, for every placeholder it has an id for. */
export function substitutions(ids: SpecIds): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const s of ids.subnets) {
    const p = (EXAMPLE_PLACEHOLDERS.subnets as Record<string, string>)[s.availabilityZone];
    if (p) out.push([p, s.subnetId]);
  }
  out.push([EXAMPLE_PLACEHOLDERS.securityGroup, ids.securityGroupId]);
  for (const [arch, id] of Object.entries(ids.images)) {
    const p = (EXAMPLE_PLACEHOLDERS.images as Record<string, string>)[arch];
    if (p) out.push([p, id]);
  }
  return out;
}

/** A spec text with every placeholder replaced by this localcloud's id. */
export function fillPlaceholders(text: string, ids: SpecIds): string {
  let out = text;
  for (const [from, to] of substitutions(ids)) out = out.split(from).join(to);
  return out;
}

/** The ids as a human reads them, with the `sed` line that fills an example. */
export function renderSpecIds(ids: SpecIds): string {
  const lines = [`ids for a spec (region ${ids.region}, default VPC ${ids.vpcId}):`];
  for (const s of ids.subnets) lines.push(`  subnet          ${s.subnetId}  ${s.availabilityZone}  ${s.cidr}`);
  lines.push(`  security group  ${ids.securityGroupId}  default`);
  for (const [arch, id] of Object.entries(ids.images)) lines.push(`  image           ${id}  ${arch}`);
  const sed = substitutions(ids)
    .map(([from, to]) => `-e s/${from}/${to}/g`)
    .join(" ");
  lines.push(`fill an example: sed ${sed} examples/FILE.yaml > FILE.yaml`);
  return `${lines.join("\n")}\n`;
}
