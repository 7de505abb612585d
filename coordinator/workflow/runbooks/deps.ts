/**
 * What runbooks need, handed in by the service. Runbooks never touch SQL or the SDK directly.
 */
import type { Clock } from "../../../shared/clock.js";
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import type { Store } from "../../db/queries.js";
import type { Ec2Gateway } from "../../cloud/gateway.js";
import type { CommandBody } from "../../agents/hub.js";

export interface RunbookDeps {
  store: Store;
  ec2: Ec2Gateway;
  /** Durations are model time (scaled by the configured timeScale). */
  clock: Clock;
  /** Queue a command for an agent (at-least-once; same id = same command). */
  sendToAgent(instanceId: string, body: CommandBody, id: string): void;
  /** The replacement's user-data. */
  userData(spec: StatefulInstanceSpec): string;
  /** Model ms between polls of EC2 state. */
  pollMs: number;
  /** Model ms before a notice deadline by which quiesce must have finished. */
  quiesceMarginMs: number;
  /** real = model × timeScale; converts wall-clock deadlines into model budgets. */
  timeScale: number;
  log?: (line: string) => void;
}

/** Poll `check` every `intervalMs` (model time) until it returns a value; throws after `timeoutMs`. */
export async function waitUntil<T>(
  clock: Clock,
  what: string,
  check: () => Promise<T | null | undefined> | T | null | undefined,
  opts: { intervalMs: number; timeoutMs: number; signal?: AbortSignal },
): Promise<T> {
  const start = clock.now();
  let interval = opts.intervalMs;
  for (;;) {
    const v = await check();
    if (v !== null && v !== undefined) return v;
    if (clock.now() - start >= opts.timeoutMs)
      throw new Error(`timed out after ${Math.round(opts.timeoutMs / 1000)} s waiting for ${what}`);
    await clock.sleep(interval, opts.signal);
    // Grow gently: these waits sit on the downtime's critical path.
    interval = Math.min(interval * 1.25, opts.intervalMs * 2);
  }
}
