/**
 * A retry policy is a plain value (so it can be stored in a row and resumed after a restart).
 * Delay for attempt n (1-based, the wait after the n-th failure) is
 * min(max, initial * factor^(n-1)), then jittered.
 */
export interface RetryPolicy {
  /** First delay, ms. */
  initialMs: number;
  /** Growth per attempt (>= 1). */
  factor: number;
  /** Cap on a single delay, ms. */
  maxMs: number;
  /** Total attempts including the first; Infinity retries until cancelled. */
  attempts: number;
  /** "full": uniform in [0, d] (AWS's full jitter); "equal": d/2 + uniform [0, d/2]; "none". */
  jitter: "full" | "equal" | "none";
}

export const DEFAULT_RETRY: RetryPolicy = { initialMs: 200, factor: 2, maxMs: 20_000, attempts: 8, jitter: "full" };

export function retryPolicy(p: Partial<RetryPolicy> = {}): RetryPolicy {
  const policy = { ...DEFAULT_RETRY, ...p };
  if (!(policy.initialMs >= 0)) throw new RangeError(`retry initialMs must be >= 0, got ${policy.initialMs}`);
  if (!(policy.factor >= 1)) throw new RangeError(`retry factor must be >= 1, got ${policy.factor}`);
  if (!(policy.maxMs >= policy.initialMs)) throw new RangeError(`retry maxMs (${policy.maxMs}) must be >= initialMs (${policy.initialMs})`);
  if (!(policy.attempts >= 1)) throw new RangeError(`retry attempts must be >= 1, got ${policy.attempts}`);
  return policy;
}

/**
 * The delay before retry after `attempt` failures (attempt >= 1), or null when attempts are
 * exhausted. `random` is injectable for deterministic tests.
 */
export function nextDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number | null {
  if (attempt >= policy.attempts) return null;
  const base = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, attempt - 1));
  switch (policy.jitter) {
    case "none":
      return base;
    case "equal":
      return base / 2 + random() * (base / 2);
    case "full":
      return random() * base;
  }
}

/** Run `fn` until it succeeds, `shouldRetry` says no, or attempts run out. */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  opts: {
    policy?: RetryPolicy;
    shouldRetry?: (err: unknown) => boolean;
    sleep: (ms: number) => Promise<void>;
    onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  },
): Promise<T> {
  const policy = opts.policy ?? DEFAULT_RETRY;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.shouldRetry && !opts.shouldRetry(err)) throw err;
      const delay = nextDelay(policy, attempt);
      if (delay === null) throw err;
      opts.onRetry?.(err, attempt, delay);
      await opts.sleep(delay);
    }
  }
}
