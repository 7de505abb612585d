/**
 * EC2's token-bucket throttling, per account and Region: one request bucket per action (sized by
 * its category or by its own limits), plus a per-instance resource bucket for Run/Terminate/Start/Stop.
 * Buckets refill continuously by the world clock (model time), so a time-scaled localcloud
 * throttles in proportion. A request needs tokens in both buckets; it is charged only when it has.
 */
import type { Clock } from "../shared/clock.js";

export interface BucketSpec {
  max: number;
  /** Tokens per model second. */
  refill: number;
}

const NON_MUTATING: BucketSpec = { max: 100, refill: 20 };
const UNFILTERED: BucketSpec = { max: 50, refill: 10 };
const MUTATING: BucketSpec = { max: 50, refill: 5 };

/** Actions with their own bucket (the ones EC2 lists as uncategorized). */
const OWN: Record<string, BucketSpec> = {
  RunInstances: { max: 5, refill: 2 },
  StartInstances: { max: 5, refill: 2 },
  TerminateInstances: { max: 100, refill: 5 },
  CreateVolume: { max: 100, refill: 5 },
  DeleteVolume: { max: 100, refill: 5 },
  CreateSnapshot: { max: 100, refill: 5 },
  CreateSnapshots: { max: 100, refill: 5 },
  DeleteSnapshot: { max: 100, refill: 5 },
  CreateNetworkInterface: { max: 100, refill: 5 },
  DeleteNetworkInterface: { max: 100, refill: 5 },
  ModifyNetworkInterfaceAttribute: { max: 100, refill: 5 },
  CreateTags: { max: 100, refill: 10 },
  DeleteTags: { max: 100, refill: 10 },
  DeregisterImage: { max: 100, refill: 5 },
};

/** Per-instance resource buckets. */
export const RESOURCE_BUCKETS: Record<string, BucketSpec> = {
  RunInstances: { max: 1000, refill: 2 },
  TerminateInstances: { max: 1000, refill: 20 },
  StartInstances: { max: 1000, refill: 2 },
  StopInstances: { max: 1000, refill: 20 },
};

/** Describes that use the smaller bucket when called with no filter, no IDs and no pagination. */
const UNFILTERED_CANDIDATES = new Set([
  "DescribeInstances",
  "DescribeInstanceStatus",
  "DescribeNetworkInterfaces",
  "DescribeSecurityGroups",
  "DescribeSnapshots",
  "DescribeSpotInstanceRequests",
  "DescribeVolumes",
]);

export interface RequestShape {
  action: string;
  /** True when the request has Filter.*, explicit IDs, MaxResults or NextToken. */
  filtered: boolean;
}

/** Which request bucket an action uses, and its size. */
export function requestBucketFor(req: RequestShape): { key: string; spec: BucketSpec } {
  const own = OWN[req.action];
  if (own) return { key: req.action, spec: own };
  if (/^(Describe|List|Search|Get)/.test(req.action)) {
    if (!req.filtered && UNFILTERED_CANDIDATES.has(req.action)) return { key: `${req.action}#unfiltered`, spec: UNFILTERED };
    return { key: req.action, spec: NON_MUTATING };
  }
  return { key: req.action, spec: MUTATING };
}

class Bucket {
  tokens: number;
  at: number;
  constructor(
    readonly spec: BucketSpec,
    now: number,
  ) {
    this.tokens = spec.max;
    this.at = now;
  }
  level(now: number): number {
    const dt = Math.max(0, now - this.at) / 1000;
    this.tokens = Math.min(this.spec.max, this.tokens + dt * this.spec.refill);
    this.at = now;
    return this.tokens;
  }
}

export class Throttle {
  enabled: boolean;
  /** Each region's buckets: `${region}|${bucket key}`. */
  private buckets = new Map<string, Bucket>();
  /** Requests refused since start, by bucket key (`RunInstances`, `RunInstances#instances`, …) over every region. */
  readonly refused = new Map<string, number>();

  constructor(
    private readonly clock: Clock,
    enabled: boolean,
  ) {
    this.enabled = enabled;
  }

  private bucket(region: string, key: string, spec: BucketSpec): Bucket {
    let b = this.buckets.get(`${region}|${key}`);
    if (!b) {
      b = new Bucket(spec, this.clock.now());
      this.buckets.set(`${region}|${key}`, b);
    }
    return b;
  }

  /** Charge one request token of `region`'s bucket; false (nothing charged) when the bucket is empty. */
  takeRequest(req: RequestShape, region = ""): boolean {
    if (!this.enabled) return true;
    const { key, spec } = requestBucketFor(req);
    const b = this.bucket(region, key, spec);
    if (b.level(this.clock.now()) < 1) return this.refuse(key);
    b.tokens -= 1;
    return true;
  }

  /** Charge `count` instance tokens for an instance action; false (nothing charged) when short. */
  takeResources(action: string, count: number, region = ""): boolean {
    if (!this.enabled) return true;
    const spec = RESOURCE_BUCKETS[action];
    if (!spec || count <= 0) return true;
    const b = this.bucket(region, `${action}#instances`, spec);
    if (b.level(this.clock.now()) < count) return this.refuse(`${action}#instances`);
    b.tokens -= count;
    return true;
  }

  private refuse(key: string): false {
    this.refused.set(key, (this.refused.get(key) ?? 0) + 1);
    return false;
  }

  /** Current tokens of a request bucket (for tests and the state dump). */
  level(req: RequestShape, region = ""): number {
    const { key, spec } = requestBucketFor(req);
    return this.bucket(region, key, spec).level(this.clock.now());
  }

  /** Refill every bucket (used by reset and when throttling is switched on). */
  reset(): void {
    this.buckets.clear();
  }
}
