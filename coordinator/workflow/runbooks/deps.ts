/**
 * What runbooks need, handed in by the service. Runbooks never touch SQL or the SDK directly.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import type { CommandBody } from "../../agents/hub.js";
import type { ReportBell, Wake } from "../../agents/report-bell.js";
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
  /** Rings when an agent's report is stored: waits for agent reports wake on it instead of polling fast. */
  reports?: ReportBell;
  /** Model ms before a notice deadline by which quiesce must have finished. */
  quiesceMarginMs: number;
  log?: (line: string) => void;
}

/**
 * Poll `check` every `intervalMs` (model time) until it returns a value; a `timeout` Failure after
 * `timeoutMs`. With `wake`, a check also runs as soon as the wake resolves (an agent's report was
 * stored), so the interval is only the fallback.
 */
export async function waitUntil<T>(
  clock: ScaledClock,
  what: string,
  check: () => Promise<T | null | undefined> | T | null | undefined,
  opts: { intervalMs: number; timeoutMs: number; signal?: AbortSignal; wake?: () => Wake | undefined },
): Promise<T> {
  const start = clock.now();
  let interval = opts.intervalMs;
  for (;;) {
    const v = await check();
    if (v !== null && v !== undefined) return v;
    if (clock.modelMsSince(start) >= opts.timeoutMs)
      throw new Failure("timeout", `timed out after ${Math.round(opts.timeoutMs / 1000)} s waiting for ${what}`);
    await sleepOrWake(clock, interval, opts.signal, opts.wake?.());
    // Grow gently: these waits sit on the downtime's critical path.
    interval = Math.min(interval * 1.25, opts.intervalMs * 2);
  }
}

/** Sleep `ms` (model) or until `wake` resolves, whichever is first; rejects only when `signal` aborts. */
async function sleepOrWake(clock: ScaledClock, ms: number, signal: AbortSignal | undefined, wake: Wake | undefined): Promise<void> {
  if (!wake) return clock.sleep(ms, signal);
  const timer = new AbortController();
  const stop = () => timer.abort(signal?.reason);
  signal?.addEventListener("abort", stop, { once: true });
  try {
    await Promise.race([clock.sleep(ms, timer.signal), wake.promise]);
  } catch (err) {
    if (signal?.aborted) throw err;
  } finally {
    wake.cancel();
    signal?.removeEventListener("abort", stop);
    timer.abort();
  }
  if (signal?.aborted) throw signal.reason;
}
