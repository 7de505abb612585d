/**
 * Client-side pacing: one token bucket per EC2 throttling bucket, so a burst of workflows queues
 * here instead of turning into a RequestLimitExceeded storm. EC2 throttles per account and Region
 * with a request bucket per action (a request costs 1 token; RunInstances 5 burst refilling 2/s,
 * mutating actions 50/5, non-mutating 100/20) and, for the instance actions, also a resource bucket
 * charged per instance (RunInstances 1000 refilling 2/s, TerminateInstances 1000 refilling 20/s).
 * The buckets below mirror those sizes and refill rates; a call waits until its bucket has a token.
 * Time comes from the injected Clock, so under a scaled clock the pacing matches a time-scaled
 * localcloud.
 */
import type { Clock } from "../../shared/clock.js";

interface BucketSpec {
  max: number;
  refillPerSec: number;
}

const NON_MUTATING: BucketSpec = { max: 100, refillPerSec: 20 };
const MUTATING: BucketSpec = { max: 50, refillPerSec: 5 };

/** Request buckets for the actions spotkeep calls (anything else: mutating unless Describe*). */
const REQUEST_BUCKETS: Record<string, BucketSpec> = {
  RunInstances: { max: 5, refillPerSec: 2 },
  TerminateInstances: { max: 100, refillPerSec: 5 },
  CreateVolume: { max: 100, refillPerSec: 5 },
  DeleteVolume: { max: 100, refillPerSec: 5 },
  CreateSnapshot: { max: 100, refillPerSec: 5 },
  DeleteSnapshot: { max: 100, refillPerSec: 5 },
  CreateNetworkInterface: { max: 100, refillPerSec: 5 },
  DeleteNetworkInterface: { max: 100, refillPerSec: 5 },
  CreateTags: { max: 100, refillPerSec: 10 },
  DeregisterImage: { max: 100, refillPerSec: 5 },
};

/** Instance resource buckets, charged per instance. */
const RESOURCE_BUCKETS: Record<string, BucketSpec> = {
  RunInstances: { max: 1000, refillPerSec: 2 },
  TerminateInstances: { max: 1000, refillPerSec: 20 },
};

class TokenBucket {
  private tokens: number;
  private last: number;
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly spec: BucketSpec,
    private readonly clock: Clock,
    private readonly headroom: number,
  ) {
    this.tokens = spec.max * headroom;
    this.last = clock.now();
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(
      this.spec.max * this.headroom,
      this.tokens + ((now - this.last) / 1000) * this.spec.refillPerSec * this.headroom,
    );
    this.last = now;
  }

  /** Wait (FIFO) until `n` tokens are available, then take them. */
  take(n = 1): Promise<void> {
    const run = async () => {
      for (;;) {
        this.refill();
        if (this.tokens >= n) {
          this.tokens -= n;
          return;
        }
        const waitMs = ((n - this.tokens) / (this.spec.refillPerSec * this.headroom)) * 1000;
        await this.clock.sleep(Math.max(1, Math.ceil(waitMs)));
      }
    };
    const p = this.tail.then(run);
    this.tail = p.catch(() => undefined);
    return p;
  }
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

  /** Wait for permission to call `action` affecting `resources` instances. */
  async acquire(action: string, opts: { unfiltered?: boolean; resources?: number } = {}): Promise<void> {
    const spec = REQUEST_BUCKETS[action];
    if (spec) await this.bucket(action, spec).take(1);
    else if (/^Describe/.test(action))
      await this.bucket(
        opts.unfiltered ? "unfiltered-describe" : "non-mutating",
        opts.unfiltered ? { max: 50, refillPerSec: 10 } : NON_MUTATING,
      ).take(1);
    else await this.bucket("mutating", MUTATING).take(1);
    const res = RESOURCE_BUCKETS[action];
    if (res && opts.resources) await this.bucket(`${action}:resource`, res).take(opts.resources);
  }
}
