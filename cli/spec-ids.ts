/**
 * The ids a spec needs on a localcloud (its default subnets per AZ, security group, and base and
 * stock (no-node) image per architecture), how they are printed, and the placeholders the specs in examples/ use for
 * them, so a printed `sed` line turns an example into a spec for that localcloud.
 */
import { z } from "zod";

export const SpecIds = z.object({
  region: z.string(),
  vpcId: z.string(),
  subnets: z.array(z.object({ availabilityZone: z.string(), subnetId: z.string(), cidr: z.string() })),
  securityGroupId: z.string(),
  /** Base images (node on their instances) by architecture. */
  images: z.record(z.string(), z.string()),
  /** Stock images (no node on their instances) by architecture; absent from a localcloud older than them. */
  stockImages: z.record(z.string(), z.string()).optional(),
});
export type SpecIds = z.infer<typeof SpecIds>;

/** The placeholder ids examples/ uses: a subnet per AZ (a, b, c), the security group, the base and stock images per architecture. */
export const EXAMPLE_PLACEHOLDERS = {
  subnets: { "us-east-1a": "subnet-0aaaaaaaaaaaaaaaa", "us-east-1b": "subnet-0bbbbbbbbbbbbbbbb", "us-east-1c": "subnet-0cccccccccccccccc" },
  securityGroup: "sg-0dddddddddddddddd",
  images: { x86_64: "ami-0eeeeeeeeeeeeeeee", arm64: "ami-0e64e64e64e64e64e" },
  stockImages: { x86_64: "ami-05705705705705705", arm64: "ami-05a64a64a64a64a64" },
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
  for (const [arch, id] of Object.entries(ids.stockImages ?? {})) {
    const p = (EXAMPLE_PLACEHOLDERS.stockImages as Record<string, string>)[arch];
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
  for (const [arch, id] of Object.entries(ids.stockImages ?? {})) lines.push(`  stock image     ${id}  ${arch}  (no node)`);
  const sed = substitutions(ids)
    .map(([from, to]) => `-e s/${from}/${to}/g`)
    .join(" ");
  lines.push(`fill an example: sed ${sed} examples/FILE.yaml > FILE.yaml`);
  return `${lines.join("\n")}\n`;
}
