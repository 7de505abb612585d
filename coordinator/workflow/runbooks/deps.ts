/**
 * What runbooks need, handed in by the service. Runbooks never touch SQL or the SDK directly.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import type { CommandBody } from "../../agents/hub.js";
import type { Ec2Gateway } from "../../cloud/gateway.js";
import type { Store } from "../../db/store.js";
import type { ElbGateway } from "../../elb/elbv2.js";
import type { ScaledClock } from "../../time.js";
import { Failure } from "../failure.js";

export interface RunbookDeps {
  store: Store;
  ec2: Ec2Gateway;
  /** Load-balancer targets (spec.loadBalancers); absent where no runbook needs it (tests). */
  elb?: ElbGateway;
  /** Wall-clock now; durations are model time. */
  clock: ScaledClock;
  /** Queue a command for an agent (at-least-once; same id = same command). */
  sendToAgent(instanceId: string, body: CommandBody, id: string): void;
  /** The replacement's user-data. */
  userData(spec: StatefulInstanceSpec): string;
  /** Model ms between polls of EC2 state. */
  pollMs: number;
  /** Model ms before a notice deadline by which quiesce must have finished. */
  quiesceMarginMs: number;
  log?: (line: string) => void;
}

/** Poll `check` every `intervalMs` (model time) until it returns a value; a `timeout` Failure after `timeoutMs`. */
export async function waitUntil<T>(
  clock: ScaledClock,
  what: string,
  check: () => Promise<T | null | undefined> | T | null | undefined,
  opts: { intervalMs: number; timeoutMs: number; signal?: AbortSignal },
): Promise<T> {
  const start = clock.now();
  let interval = opts.intervalMs;
  for (;;) {
    const v = await check();
    if (v !== null && v !== undefined) return v;
    if (clock.modelMsSince(start) >= opts.timeoutMs)
      throw new Failure("timeout", `timed out after ${Math.round(opts.timeoutMs / 1000)} s waiting for ${what}`);
    await clock.sleep(interval, opts.signal);
    // Grow gently: these waits sit on the downtime's critical path.
    interval = Math.min(interval * 1.25, opts.intervalMs * 2);
  }
}
