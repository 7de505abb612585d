/**
 * Durable workflows (DBOS-style). A runbook is a plain async function that calls
 * `ctx.step(name, fn, policy)`; each step gets the next sequence number and its outcome is
 * recorded under (workflow id, seq). When a workflow is re-run after a restart, recorded steps
 * return their stored result without running again, so a runbook resumes exactly after the last
 * finished step. Retry state (attempts, next attempt time) lives in the step row, so a restart
 * continues the backoff instead of starting it over.
 *
 * Rules for runbook authors (the engine checks the first one):
 *  - the sequence of step names must be the same on every run of the same workflow: branch only
 *    on step results and the input, never on wall-clock time or in-memory state;
 *  - a step's fn must be safe to run again (a crash between its side effect and the record of
 *    its result re-runs it): use ClientTokens and tag-then-find;
 *  - results must be JSON values.
 */
import { nextDelay, type RetryPolicy, retryPolicy } from "../../shared/retry.js";
import type { Clock } from "../../shared/clock.js";
import type { Store, WorkflowRow } from "../db/queries.js";
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";

export interface StepPolicy extends Partial<RetryPolicy> {
  /** Whether this error is worth another attempt; default: every error is. */
  retryable?: (err: unknown) => boolean;
}

/** A step that runs at most once: no retries. */
export const ONCE: StepPolicy = { attempts: 1 };

export interface StepInfo {
  attempt: number;
  signal: AbortSignal;
}

export type StepFn<T> = (info: StepInfo) => Promise<T>;
export type StepSpec<T = unknown> = [name: string, fn: StepFn<T>, policy?: StepPolicy];

export interface WorkflowContext {
  readonly workflowId: string;
  readonly kind: string;
  readonly instance: string;
  readonly signal: AbortSignal;
  readonly clock: Clock;
  step<T>(name: string, fn: StepFn<T>, policy?: StepPolicy): Promise<T>;
  /** Independent steps run concurrently; sequence numbers follow the array order. */
  parallel<T extends unknown[]>(steps: { [K in keyof T]: StepSpec<T[K]> }): Promise<T>;
  /** Timeline entry (not a step). */
  event(kind: string, message: string): void;
}

// biome-ignore lint/suspicious/noExplicitAny: the registry holds runbooks of every input type
export type Runbook<I = any, O = unknown> = (ctx: WorkflowContext, input: I) => Promise<O>;

/** The runbook asked for a different step than the one recorded at this position. */
export class NonDeterminismError extends Error {
  override name = "NonDeterminismError";
}

/** A step failed for good (attempts exhausted or a non-retryable error). */
export class StepFailedError extends Error {
  override name = "StepFailedError";
  constructor(
    readonly step: string,
    readonly attempts: number,
    cause: unknown,
  ) {
    super(`step ${step} failed after ${attempts} attempt${attempts === 1 ? "" : "s"}: ${describeError(cause)}`, { cause });
  }
}

export class WorkflowStopped extends Error {
  override name = "WorkflowStopped";
}

export function describeError(err: unknown): string {
  if (err instanceof Error)
    return err.name && err.name !== "Error" && !err.message.startsWith(err.name) ? `${err.name}: ${err.message}` : err.message;
  return String(err);
}

export interface EngineOptions {
  store: Store;
  clock: Clock;
  runbooks: Record<string, Runbook>;
  /** How many workflows run at once; the rest wait in order. */
  maxConcurrent?: number;
  /** Default retry policy for steps. */
  defaultPolicy?: Partial<RetryPolicy>;
  /** Called after a step's result is recorded (the crash test hook). */
  afterStep?: (wf: WorkflowRow, seq: number, name: string) => void;
  onFinished?: (wf: WorkflowRow, outcome: { ok: true; result: unknown } | { ok: false; error: string }) => void;
  random?: () => number;
}

export class WorkflowEngine {
  private readonly store: Store;
  private readonly clock: Clock;
  private readonly maxConcurrent: number;
  private active = 0;
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly done = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  private readonly abort = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;

  constructor(private readonly opts: EngineOptions) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.maxConcurrent = Math.max(1, opts.maxConcurrent ?? 32);
    // Every waiting step listens on this one signal; hundreds of workflows are normal.
    setMaxListeners(0, this.abort.signal);
  }

  /** Record a new workflow and schedule it. The row is written before this returns. */
  start(kind: string, instance: string, input: unknown, trigger: string | null = null, id?: string): string {
    if (!this.opts.runbooks[kind]) throw new Error(`starting workflow: no runbook named ${JSON.stringify(kind)}`);
    const wfId = id ?? `wf-${kind}-${this.clock.now().toString(36)}-${randomBytes(4).toString("hex")}`;
    this.store.insertWorkflow({ id: wfId, kind, instance, input, trigger });
    this.schedule(wfId);
    return wfId;
  }

  /** Schedule every workflow a previous process left unfinished. */
  resumeAll(): string[] {
    const ids = this.store.unfinishedWorkflows().map((w) => w.id);
    for (const id of ids) this.schedule(id);
    return ids;
  }

  /** Resolves when the workflow has finished (in this process) or immediately if it already has. */
  async wait(id: string): Promise<WorkflowRow> {
    const row = this.store.getWorkflow(id);
    if (!row) throw new Error(`waiting for workflow ${id}: no such workflow`);
    if (row.status !== "running") return row;
    await this.waiter(id).promise;
    return this.store.getWorkflow(id)!;
  }

  get running(): number {
    return this.active;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Stop running workflows at their next wait; they stay `running` in the store and resume on the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort(new WorkflowStopped("coordinator stopping"));
    this.queue.length = 0;
    await Promise.allSettled([...this.inFlight]);
  }

  private waiter(id: string) {
    let w = this.done.get(id);
    if (!w) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      w = { promise, resolve };
      this.done.set(id, w);
    }
    return w;
  }

  private schedule(id: string): void {
    if (this.stopped || this.queued.has(id)) return;
    this.queued.add(id);
    this.queue.push(id);
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.active < this.maxConcurrent && this.queue.length > 0) {
      const id = this.queue.shift()!;
      this.active++;
      const p = this.execute(id).finally(() => {
        this.active--;
        this.queued.delete(id);
        this.inFlight.delete(p);
        this.pump();
      });
      this.inFlight.add(p);
    }
  }

  private async execute(id: string): Promise<void> {
    const wf = this.store.getWorkflow(id);
    if (wf?.status !== "running") {
      this.waiter(id).resolve();
      return;
    }
    const runbook = this.opts.runbooks[wf.kind];
    let outcome: { ok: true; result: unknown } | { ok: false; error: string };
    try {
      if (!runbook) throw new Error(`no runbook named ${JSON.stringify(wf.kind)}`);
      const ctx = this.context(wf);
      const result = await runbook(ctx, JSON.parse(wf.input));
      outcome = { ok: true, result };
    } catch (err) {
      if (this.stopped) return; // left running in the store; resumes on the next start
      outcome = { ok: false, error: describeError(err) };
    }
    if (outcome.ok) this.store.finishWorkflow(id, "succeeded", outcome.result, null);
    else this.store.finishWorkflow(id, "failed", null, outcome.error);
    try {
      this.opts.onFinished?.(this.store.getWorkflow(id)!, outcome);
    } finally {
      this.waiter(id).resolve();
    }
  }

  private context(wf: WorkflowRow): WorkflowContext {
    let seq = 0;
    const engine = this;
    const signal = this.abort.signal;
    const ctx: WorkflowContext = {
      workflowId: wf.id,
      kind: wf.kind,
      instance: wf.instance,
      signal,
      clock: this.clock,
      step<T>(name: string, fn: StepFn<T>, policy?: StepPolicy): Promise<T> {
        const mySeq = ++seq; // allocated synchronously: call order defines numbering
        return engine.runStep(wf, mySeq, name, fn, policy);
      },
      parallel<T extends unknown[]>(steps: { [K in keyof T]: StepSpec<T[K]> }): Promise<T> {
        const promises = (steps as StepSpec[]).map(([name, fn, policy]) => ctx.step(name, fn, policy));
        return settleAll(promises) as Promise<T>;
      },
      event(kind: string, message: string): void {
        engine.store.addEvent(wf.instance, kind, message, wf.id);
      },
    };
    return ctx;
  }

  private async runStep<T>(wf: WorkflowRow, seq: number, name: string, fn: StepFn<T>, policy?: StepPolicy): Promise<T> {
    if (this.stopped) throw new WorkflowStopped("coordinator stopping");
    const row = this.store.getStep(wf.id, seq);
    if (row && row.name !== name) {
      throw new NonDeterminismError(
        `workflow ${wf.id} replay: step ${seq} is recorded as ${JSON.stringify(row.name)} but the runbook now asks for ${JSON.stringify(name)} (the runbook changed or branches on something other than step results)`,
      );
    }
    if (row?.status === "done") return JSON.parse(row.result ?? "null") as T;
    if (row?.status === "failed") throw new StepFailedError(name, row.attempts, new Error(row.error ?? "failed"));
    const full = retryPolicy({ ...this.opts.defaultPolicy, ...stripRetryable(policy) });
    let attempts = row?.attempts ?? 0;
    if (row?.next_attempt_at != null) {
      const wait = row.next_attempt_at - this.clock.now();
      if (wait > 0) await this.clock.sleep(wait, this.abort.signal);
    }
    this.store.startStep(wf.id, seq, name);
    for (;;) {
      try {
        const result = await fn({ attempt: attempts + 1, signal: this.abort.signal });
        this.store.completeStep(wf.id, seq, result);
        this.opts.afterStep?.(wf, seq, name);
        return (result === undefined ? null : result) as T;
      } catch (err) {
        if (this.stopped || err instanceof WorkflowStopped || err instanceof NonDeterminismError) throw err;
        attempts++;
        const retryable = policy?.retryable ? policy.retryable(err) : true;
        const delay = retryable ? nextDelay(full, attempts, this.opts.random) : null;
        if (delay === null) {
          this.store.failStep(wf.id, seq, describeError(err));
          throw new StepFailedError(name, attempts, err);
        }
        this.store.scheduleRetry(wf.id, seq, describeError(err), this.clock.now() + delay);
        await this.clock.sleep(delay, this.abort.signal);
        this.store.startStep(wf.id, seq, name);
      }
    }
  }
}

function stripRetryable(p?: StepPolicy): Partial<RetryPolicy> {
  if (!p) return {};
  const { retryable: _r, ...rest } = p;
  return rest;
}

/** Like Promise.all, but waits for every branch before rejecting, so no step is left running unobserved. */
async function settleAll(promises: Promise<unknown>[]): Promise<unknown[]> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value);
}
