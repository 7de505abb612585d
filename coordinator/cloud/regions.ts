/**
 * The regions one coordinator manages instances in, and one set of AWS clients per region.
 *
 * EC2, ELBv2 and KMS are regional services: an instance, its volumes, snapshots, images, ENI,
 * subnets, target groups and KMS keys all live in one region, and every call about them must go
 * to that region's endpoint. The home region (config `region`) holds what the coordinator itself
 * uses (the events queue, the default for a spec without `region`); config `regions` adds the
 * others it may launch in. Each region's clients are made on first use and kept, each EC2 client
 * with its own pacer, since AWS's request buckets are per account and per region.
 */
import type { Ec2Gateway } from "./gateway.js";
import type { ElbGateway } from "../elb/elbv2.js";
import type { KmsGateway } from "../kms/kms.js";

export interface RegionalClients {
  ec2: Ec2Gateway;
  elb?: ElbGateway;
  kms?: KmsGateway;
}

export class Regions {
  readonly home: string;
  /** Every region this coordinator may manage instances in, the home region first. */
  readonly allowed: readonly string[];
  private readonly clients = new Map<string, RegionalClients>();

  constructor(
    o: { home: string; allowed?: readonly string[]; homeClients?: RegionalClients },
    private readonly make: (region: string) => RegionalClients,
  ) {
    this.home = o.home;
    this.allowed = [o.home, ...(o.allowed ?? []).filter((r) => r !== o.home)];
    if (o.homeClients) this.clients.set(o.home, o.homeClients);
  }

  allows(region: string): boolean {
    return this.allowed.includes(region);
  }

  /**
   * The region a stored spec's instance runs in: its `region` when this coordinator may use it. A spec
   * stored before specs had to name an allowed region may carry another one, which was never honoured:
   * such an instance runs in the home region.
   */
  of(spec: { region?: string } | null | undefined): string {
    const r = spec?.region;
    return r && this.allows(r) ? r : this.home;
  }

  /** The clients of `region` (home when undefined); refuses a region this coordinator may not use. */
  for(region: string | undefined): RegionalClients {
    const r = region ?? this.home;
    const known = this.clients.get(r);
    if (known) return known;
    if (!this.allows(r)) throw new Error(`region ${r} is not one this coordinator manages (config regions: ${this.allowed.join(", ")})`);
    const made = this.make(r);
    this.clients.set(r, made);
    return made;
  }

  ec2(region?: string): Ec2Gateway {
    return this.for(region).ec2;
  }

  /** The regions whose clients exist (those something was done in since start), home first. */
  active(): string[] {
    return this.allowed.filter((r) => this.clients.has(r));
  }
}

/** The region of an availability zone name (us-east-1a → us-east-1; Local Zones such as us-west-2-lax-1a too). */
export function regionOfZone(az: string): string | null {
  const m = /^([a-z]{2}(?:-gov)?-[a-z]+-\d)(?:[a-z]|-[a-z]+-\d+[a-z])$/.exec(az);
  return m ? m[1]! : null;
}

/**
 * One call per region for items spread over regions: `call` gets each region's gateway and its
 * items; the answers are concatenated. Without `regions` (unit tests) every item goes to `ec2`.
 */
export async function perRegion<T, R, G>(
  regions: Regions | undefined,
  fallback: G,
  items: readonly T[],
  regionOf: (item: T) => string | undefined,
  call: (ec2: G, items: T[]) => Promise<R[]>,
): Promise<R[]> {
  if (!regions) return call(fallback, [...items]);
  const by = new Map<string, T[]>();
  for (const item of items) {
    const r = regions.of({ region: regionOf(item) });
    const list = by.get(r);
    if (list) list.push(item);
    else by.set(r, [item]);
  }
  const out: R[] = [];
  for (const [r, xs] of by) out.push(...(await call(regions.ec2(r) as G, xs)));
  return out;
}
