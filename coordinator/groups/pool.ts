/**
 * The group's private-IP pool and the spread of members over AZs. An address is a member's for its
 * whole life (the membership row); a new member takes the first address that no member claims and
 * that no ENI holds in EC2 (DescribeNetworkInterfaces by private address), in the AZ with the fewest
 * members, so members spread over the template's subnets as evenly as the pool allows.
 */
import type { Ec2Gateway } from "../cloud/gateway.js";
import type { GroupMember } from "../db/store.js";
import { Failure } from "../workflow/failure.js";
import { ipInCidr } from "../workflow/runbooks/launch.js";

export interface PoolSubnet {
  subnetId: string;
  availabilityZone: string;
  cidr: string;
}

export interface AddressChoice {
  privateIp: string;
  subnetId: string;
  availabilityZone: string;
}

/**
 * Unclaimed pool addresses in preference order: AZs with the fewest members first (ties in the
 * template's subnet order), then the subnets of that AZ in template order, then pool order.
 */
export function addressCandidates(
  pool: readonly string[],
  subnets: readonly PoolSubnet[],
  members: readonly GroupMember[],
): AddressChoice[] {
  const claimed = new Set(members.map((m) => m.privateIp));
  const perAz = new Map<string, number>();
  for (const s of subnets) perAz.set(s.availabilityZone, 0);
  for (const m of members) perAz.set(m.availabilityZone, (perAz.get(m.availabilityZone) ?? 0) + 1);
  const azOrder = [...new Set(subnets.map((s) => s.availabilityZone))];
  azOrder.sort((a, b) => (perAz.get(a) ?? 0) - (perAz.get(b) ?? 0) || azOrder.indexOf(a) - azOrder.indexOf(b));
  const out: AddressChoice[] = [];
  const seen = new Set<string>();
  for (const az of azOrder)
    for (const s of subnets.filter((x) => x.availabilityZone === az))
      for (const ip of pool) {
        if (claimed.has(ip) || seen.has(ip) || !ipInCidr(ip, s.cidr)) continue;
        seen.add(ip);
        out.push({ privateIp: ip, subnetId: s.subnetId, availabilityZone: s.availabilityZone });
      }
  return out;
}

/** Members per AZ, every template AZ listed (0 when empty). */
export function spread(
  subnets: readonly { availabilityZone: string }[],
  members: readonly { availabilityZone: string }[],
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of subnets) out[s.availabilityZone] = 0;
  for (const m of members) out[m.availabilityZone] = (out[m.availabilityZone] ?? 0) + 1;
  return out;
}

/**
 * The first candidate no ENI holds in EC2. Throws a `pool-exhausted` Failure naming the pool and
 * why each address was passed over when none is free; `skipped` lists addresses EC2 showed in use.
 */
export async function firstFreeAddress(
  ec2: Pick<Ec2Gateway, "networkInterfacesAt">,
  group: string,
  pool: readonly string[],
  candidates: readonly AddressChoice[],
  members: readonly GroupMember[],
): Promise<{ choice: AddressChoice; skipped: string[] }> {
  const skipped: string[] = [];
  const bySubnet = new Map<string, AddressChoice[]>();
  for (const c of candidates) bySubnet.set(c.subnetId, [...(bySubnet.get(c.subnetId) ?? []), c]);
  const inUse = new Map<string, string>();
  for (const [subnetId, list] of bySubnet)
    for (const e of await ec2.networkInterfacesAt(
      subnetId,
      list.map((c) => c.privateIp),
    ))
      inUse.set(e.privateIp, e.eniId);
  for (const c of candidates) {
    const eni = inUse.get(c.privateIp);
    if (!eni) return { choice: c, skipped };
    skipped.push(`${c.privateIp} (in use by ${eni})`);
  }
  const claimed = members.map((m) => `${m.privateIp} (${m.instance})`);
  const outside = pool.filter((ip) => !candidates.some((c) => c.privateIp === ip) && !members.some((m) => m.privateIp === ip));
  const why = [
    ...(claimed.length ? [`owned by members: ${claimed.join(", ")}`] : []),
    ...(skipped.length ? [`in use in EC2: ${skipped.join(", ")}`] : []),
    ...(outside.length ? [`in none of the template's subnets: ${outside.join(", ")}`] : []),
  ];
  throw new Failure("pool-exhausted", `the ipPool of group ${group} has no free address (${why.join("; ")})`);
}
