/**
 * The SDK's retry strategy for the gateway: AWS's standard shape (full-jitter exponential
 * backoff, 100 ms base, 500 ms base for throttling, 20 s cap) with two differences:
 *  - delays are multiplied by the time scale (real time = model time × timeScale), so a
 *    time-scaled run against localcloud is not dominated by unscaled SDK back-offs;
 *  - capacity errors (InsufficientInstanceCapacity is a 500) are NOT retried here: the runbook's
 *    fallbacks (next type, subnet, on-demand) are the better answer, and sooner;
 *  - a create without a ClientToken whose failure may have acted (marked `$spotkeepAmbiguous` by
 *    the gateway) is NOT retried here: the gateway looks for what it made before trying again.
 */
import type { RetryErrorInfo, RetryStrategyV2, RetryToken } from "@smithy/types";
import { classify } from "./errors.js";

interface Token extends RetryToken {
  count: number;
}

export class ScaledRetryStrategy implements RetryStrategyV2 {
  readonly mode = "standard";

  constructor(
    private readonly maxAttempts: number,
    private readonly timeScale: number,
    private readonly random: () => number = Math.random,
  ) {}

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return token(0, 0);
  }

  async refreshRetryTokenForRetry(previous: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const count = (previous as Token).count + 1;
    // A create without a ClientToken that may have acted: the gateway finds before it tries again.
    const ambiguous = (info.error as { $spotkeepAmbiguous?: boolean } | undefined)?.$spotkeepAmbiguous === true;
    const retryable =
      !ambiguous &&
      (info.errorType === "THROTTLING" ||
        info.errorType === "TRANSIENT" ||
        (info.errorType === "SERVER_ERROR" && classify(info.error) !== "capacity"));
    if (!retryable || count >= this.maxAttempts) throw Object.assign(new Error("No retry token available"), { $backoff: true });
    const base = info.errorType === "THROTTLING" ? 500 : 100;
    const delay = this.random() * Math.min(20_000, base * 2 ** (count - 1)) * this.timeScale;
    return token(count, delay);
  }

  recordSuccess(): void {}
}

function token(count: number, delay: number): Token {
  return { count, getRetryCount: () => count, getRetryDelay: () => delay };
}
