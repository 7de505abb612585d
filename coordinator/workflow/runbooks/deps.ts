/**
 * What runbooks need, handed in by the service. Runbooks never touch SQL or the SDK directly.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import type { CommandBody } from "../../agents/hub.js";
import type { Ec2Gateway } from "../../cloud/gateway.js";
import type { Store } from "../../db/store.js";
import type { ElbGateway } from "../../elb/elbv2.js";
import type { ScaledClock } from "../../../shared/clock.js";
import { Failure } from "../failure.js";
import type { Regions } from "../../cloud/regions.js";

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
  /**
   * Call `fn` when this process records a report from the agent on `instanceId`; returns the
   * unsubscribe function. Waiters on agent reports look again at once instead of at their next poll.
   */
  onAgentReport?: (instanceId: string, fn: () => void) => () => void;
  log?: (line: string) => void;
  /** Every managed region's clients: a delete removes the disaster-recovery copies in other regions too. */
  regions?: Regions;
}

/** waitUntil's `wake` for a wait on a report from the agent on `instanceId` (none when the deps have no signal). */
export function agentReportWake(deps: RunbookDeps, instanceId: string): ((fn: () => void) => () => void) | undefined {
  const on = deps.onAgentReport;
  return on ? (fn) => on(instanceId, fn) : undefined;
}

/**
 * Poll `check` every `intervalMs` (model time, growing gently to twice that) until it returns a
 * value; a `timeout` Failure after `timeoutMs`. With `wake`, a wake-up between polls makes the
 * next check run at once (the poll stays as the fallback for a wake-up that never comes).
 *
 * With `grid`, the first check runs at once and the later ones on a shared grid of `intervalMs`
 * (model time counted from the epoch) instead of a growing interval: every workflow waiting on
 * the same kind of EC2 state polls at the same instants, so the gateway's batcher turns them into
 * one Describe call per tick however many wait, and a change is seen at most one interval late.
 */
export async function waitUntil<T>(
  clock: ScaledClock,
  what: string,
  check: () => Promise<T | null | undefined> | T | null | undefined,
  opts: { intervalMs: number; timeoutMs: number; signal?: AbortSignal; wake?: (fn: () => void) => () => void; grid?: boolean },
): Promise<T> {
  const start = clock.now();
  let interval = opts.intervalMs;
  // Set by a wake-up that came while `check` ran, so it is not lost before the sleep starts.
  let woken = false;
  let interrupt: (() => void) | null = null;
  const unsubscribe = opts.wake?.(() => {
    woken = true;
    interrupt?.();
  });
  try {
    for (;;) {
      woken = false;
      const v = await check();
      if (v !== null && v !== undefined) return v;
      if (clock.modelMsSince(start) >= opts.timeoutMs)
        throw new Failure("timeout", `timed out after ${Math.round(opts.timeoutMs / 1000)} s waiting for ${what}`);
      const delay = opts.grid ? untilNextTick(clock, opts.intervalMs) : interval;
      if (!woken) await sleepOrWake(clock, delay, opts.signal, (f) => (interrupt = f));
      interrupt = null;
      // Grow gently: these waits sit on the downtime's critical path.
      interval = Math.min(interval * 1.25, opts.intervalMs * 2);
    }
  } finally {
    unsubscribe?.();
  }
}

/** Model ms from now to the next multiple of `intervalMs` of model time since the epoch (never 0). */
export function untilNextTick(clock: ScaledClock, intervalMs: number): number {
  const modelNow = clock.now() / clock.timeScale;
  const left = intervalMs - (modelNow % intervalMs);
  // A clock without a usable scale must not turn the wait into a busy loop.
  return left > 0 && left <= intervalMs ? left : intervalMs;
}

/** clock.sleep(ms, signal) that `setInterrupt`'s function ends early. */
function sleepOrWake(
  clock: ScaledClock,
  ms: number,
  signal: AbortSignal | undefined,
  setInterrupt: (f: () => void) => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const done = () => {
      cancel();
      signal?.removeEventListener("abort", onAbort);
      resolve();
    };
    const onAbort = () => {
      cancel();
      reject(signal!.reason);
    };
    const cancel = clock.setTimer(ms, done);
    signal?.addEventListener("abort", onAbort, { once: true });
    setInterrupt(done);
  });
}
