/**
 * Client-side pacing: one token bucket per EC2 throttling bucket, so a burst of workflows queues
 * here instead of turning into a RequestLimitExceeded storm. EC2 throttles per account and Region
 * with a request bucket per action, sized by the action's category (a request costs 1 token;
 * non-mutating Describe* 100 refilling 20/s, or 50/10 for an unfiltered and unpaginated Describe of
 * instances, volumes, snapshots, ENIs…; mutating 50/5) or by the action's own limits (RunInstances
 * 5 refilling 2/s, TerminateInstances 100/5, …). Throttling one action does not slow another, so
 * neither does this pacer: DescribeImages waiting here never delays DescribeInstances. The instance
 * actions also have a resource bucket charged per instance (RunInstances 1000 refilling 2/s,
 * TerminateInstances 1000 refilling 20/s). The buckets below mirror those sizes and refill rates; a
 * call waits until its buckets have tokens. Time comes from the injected Clock, so under a scaled
 * clock the pacing matches a time-scaled localcloud.
 */
import type { Clock } from "../../shared/clock.js";

interface BucketSpec {
  max: number;
  refillPerSec: number;
}

const NON_MUTATING: BucketSpec = { max: 100, refillPerSec: 20 };
const UNFILTERED: BucketSpec = { max: 50, refillPerSec: 10 };
const MUTATING: BucketSpec = { max: 50, refillPerSec: 5 };

/** Actions EC2 gives buckets of their own ("uncategorized"); every other action's bucket is sized by its category. */
const OWN_BUCKETS: Record<string, BucketSpec> = {
  RunInstances: { max: 5, refillPerSec: 2 },
  StartInstances: { max: 5, refillPerSec: 2 },
  TerminateInstances: { max: 100, refillPerSec: 5 },
  CreateVolume: { max: 100, refillPerSec: 5 },
  DeleteVolume: { max: 100, refillPerSec: 5 },
  CreateSnapshot: { max: 100, refillPerSec: 5 },
  CreateSnapshots: { max: 100, refillPerSec: 5 },
  DeleteSnapshot: { max: 100, refillPerSec: 5 },
  CreateNetworkInterface: { max: 100, refillPerSec: 5 },
  DeleteNetworkInterface: { max: 100, refillPerSec: 5 },
  ModifyNetworkInterfaceAttribute: { max: 100, refillPerSec: 5 },
  CreateTags: { max: 100, refillPerSec: 10 },
  DeleteTags: { max: 100, refillPerSec: 10 },
  DeregisterImage: { max: 100, refillPerSec: 5 },
  CopyImage: { max: 100, refillPerSec: 1 },
};

/** Describes that use the smaller bucket when called with no filter, no ids and no pagination. */
const UNFILTERED_CANDIDATES = new Set([
  "DescribeInstances",
  "DescribeInstanceStatus",
  "DescribeNetworkInterfaces",
  "DescribeSecurityGroups",
  "DescribeSnapshots",
  "DescribeSpotInstanceRequests",
  "DescribeVolumes",
]);

/** Instance resource buckets, charged per instance. */
const RESOURCE_BUCKETS: Record<string, BucketSpec> = {
  RunInstances: { max: 1000, refillPerSec: 2 },
  TerminateInstances: { max: 1000, refillPerSec: 20 },
  StartInstances: { max: 1000, refillPerSec: 2 },
  StopInstances: { max: 1000, refillPerSec: 20 },
};

/** The request bucket EC2 charges a call of `action` to: its key here and its size. */
export function requestBucket(action: string, unfiltered = false): { key: string; spec: BucketSpec } {
  const own = OWN_BUCKETS[action];
  if (own) return { key: action, spec: own };
  if (/^(Describe|List|Search|Get)/.test(action)) {
    if (unfiltered && UNFILTERED_CANDIDATES.has(action)) return { key: `${action}#unfiltered`, spec: UNFILTERED };
    return { key: action, spec: NON_MUTATING };
  }
  return { key: action, spec: MUTATING };
}

/** Answers remembered per bucket for its latency reserve. */
const LATENCY_SAMPLES = 16;
/** The jitter assumed before a bucket has seen an answer (model ms). */
const FIRST_JITTER_MS = 1000;

class TokenBucket {
  tokens: number;
  private last: number;
  private tail: Promise<void> = Promise.resolve();
  /** Model ms from release to answer of the bucket's latest calls. */
  private readonly latencies: number[] = [];

  constructor(
    private readonly spec: BucketSpec,
    private readonly clock: Clock,
    private readonly headroom: number,
  ) {
    this.tokens = this.full(1);
    this.last = clock.now();
  }

  /**
   * Tokens this bucket keeps in hand beyond the one a call spends. A request reaches EC2 somewhere
   * between its release here and its answer, so requests released a refill interval apart can
   * arrive closer together than that; EC2's bucket absorbs it only if this one never runs below
   * `refill × jitter` tokens. The jitter is the spread of the latest answer times (the server's
   * own time to answer is the same for each and cancels out); before any answer a second is
   * assumed. Tokens still accrue up to the full bucket, so a call released late (a busy event
   * loop) is followed by the next at once, and the steady rate is the refill rate.
   */
  private margin(n: number): number {
    const jitterMs = this.latencies.length ? Math.max(...this.latencies) - Math.min(...this.latencies) : FIRST_JITTER_MS;
    return Math.max(0, Math.min(this.spec.refillPerSec * this.headroom * (jitterMs / 1000), this.full(n) - n));
  }

  /** The bucket's size here: the headroom's share of EC2's, and at least one take. */
  private full(n: number): number {
    return Math.max(n, this.spec.max * this.headroom);
  }

  private refill(n = 1): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.full(n), this.tokens + ((now - this.last) / 1000) * this.spec.refillPerSec * this.headroom);
    this.last = now;
  }

  /** A call released by this bucket was answered `ms` (model) after its release. */
  observe(ms: number): void {
    this.latencies.push(Math.max(0, ms));
    if (this.latencies.length > LATENCY_SAMPLES) this.latencies.shift();
  }

  /** Spend every token (refill continues from now). */
  empty(): void {
    this.refill();
    this.tokens = Math.min(this.tokens, 0);
  }

  /** Wait (FIFO) until `n` tokens are available, then take them. */
  take(n = 1): Promise<void> {
    const run = async () => {
      for (;;) {
        this.refill(n);
        const need = n + this.margin(n);
        if (this.tokens >= need) {
          this.tokens -= n;
          return;
        }
        const waitMs = ((need - this.tokens) / (this.spec.refillPerSec * this.headroom)) * 1000;
        await this.clock.sleep(Math.max(1, Math.ceil(waitMs)));
      }
    };
    const p = this.tail.then(run);
    this.tail = p.catch(() => undefined);
    return p;
  }
}

/**
 * How EC2 charges a request, read from its input as EC2 does: unfiltered when it has no filter, no
 * explicit ids, no MaxResults and no NextToken; the instance actions' resource count is the
 * instances it names (RunInstances: MaxCount).
 */
export function paceOf(action: string, input: Record<string, unknown>): { unfiltered: boolean; resources: number } {
  const listed = Object.entries(input).some(([k, v]) => (k === "Filters" || k.endsWith("Ids")) && Array.isArray(v) && v.length > 0);
  const unfiltered = !listed && input.MaxResults === undefined && input.NextToken === undefined;
  let resources = 0;
  if (action === "RunInstances") resources = typeof input.MaxCount === "number" ? input.MaxCount : 1;
  else if (RESOURCE_BUCKETS[action]) resources = Array.isArray(input.InstanceIds) ? input.InstanceIds.length : 0;
  return { unfiltered, resources };
}

export class Pacer {
  private readonly buckets = new Map<string, TokenBucket>();

  /**
   * @param headroom fraction of AWS's bucket spotkeep allows itself (other tools share the
   * account's buckets); 1 = all of it.
   */
  constructor(
    private readonly clock: Clock,
    private readonly headroom = 0.8,
  ) {}

  private bucket(key: string, spec: BucketSpec): TokenBucket {
    let b = this.buckets.get(key);
    if (!b) {
      b = new TokenBucket(spec, this.clock, this.headroom);
      this.buckets.set(key, b);
    }
    return b;
  }

  /**
   * EC2 answered RequestLimitExceeded: its bucket is empty whatever this one counted (other
   * clients share the account's buckets, or requests bunched up on the way), so empty this one
   * too and let the refill rate pace what follows, retries included.
   */
  throttled(action: string, opts: { unfiltered?: boolean } = {}): void {
    const { key, spec } = requestBucket(action, opts.unfiltered);
    this.bucket(key, spec).empty();
  }

  /**
   * Wait for permission to call `action` affecting `resources` instances. Call the function it
   * resolves with when EC2 has answered: the time to the answer sizes the bucket's reserve.
   */
  async acquire(action: string, opts: { unfiltered?: boolean; resources?: number } = {}): Promise<() => void> {
    const { key, spec } = requestBucket(action, opts.unfiltered);
    const request = this.bucket(key, spec);
    await request.take(1);
    const res = RESOURCE_BUCKETS[action];
    const resource = res && opts.resources ? this.bucket(`${action}#instances`, res) : null;
    if (resource) await resource.take(opts.resources);
    const released = this.clock.now();
    return () => {
      const ms = this.clock.now() - released;
      request.observe(ms);
      resource?.observe(ms);
    };
  }
}
