/**
 * Durable workflows. A runbook is a plain async function that calls `ctx.step(name, fn, policy)`;
 * each step gets the next sequence number and its outcome is recorded under (workflow id, seq).
 * When a workflow is re-run after a restart, recorded steps return their stored result without
 * running again, so a runbook resumes exactly after the last finished step. Retry state (attempts,
 * next attempt time) lives in the step row, so a restart continues the backoff instead of starting
 * it over. A failed step is recorded with its failure kind, and a replay rethrows a `Failure` of
 * that kind.
 *
 * Rules for runbook authors (the engine checks the first one):
 *  1. the sequence of step names must be the same on every run of the same workflow: branch only
 *     on step results, failure kinds and the input — never on wall-clock time, in-memory state, or
 *     store reads made outside a step;
 *  2. a step's fn must be safe to run again (a crash between its side effect and the record of its
 *     result re-runs it): use ClientTokens and tag-then-find;
 *  3. results must be JSON values.
 */
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { nextDelay, type RetryPolicy, retryPolicy } from "../../shared/retry.js";
import { isStoreFull, isStoreUnavailable, type Store, type StoreTx, type WorkflowRecord } from "../db/store.js";
import type { ScaledClock } from "../../shared/clock.js";
import { describeError, recordFailure, replayFailure } from "./failure.js";

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

/** A step not yet run: what `ctx.all` and `ctx.parallel` take. Build one with `step(...)`. */
export interface StepDef<T> {
  name: string;
  run: StepFn<T>;
  policy?: StepPolicy;
}

export function step<T>(name: string, run: StepFn<T>, policy?: StepPolicy): StepDef<T> {
  return { name, run, policy };
}

export interface WorkflowContext {
  readonly workflowId: string;
  readonly kind: string;
  readonly instance: string;
  readonly signal: AbortSignal;
  readonly clock: ScaledClock;
  step<T>(name: string, fn: StepFn<T>, policy?: StepPolicy): Promise<T>;
  /** A dynamic list of independent steps, run concurrently; sequence numbers follow the list order. */
  all<T>(steps: ReadonlyArray<StepDef<T>>): Promise<T[]>;
  /** A fixed set of independent steps of different result types, run concurrently. */
  parallel<T extends unknown[]>(...steps: { [K in keyof T]: StepDef<T[K]> }): Promise<T>;
  /** Timeline entry (not a step). */
  event(kind: string, message: string): Promise<void>;
  /**
   * Whether this run takes a path that begins with the step `firstStep`: true when nothing is
   * recorded at the next position (a first run, or a run resumed past its last recorded step) or
   * when the step recorded there is `firstStep`; false when a run of an earlier version recorded
   * another step there, so that workflow goes on as it began. Synchronous: it allocates nothing.
   */
  takesPath(firstStep: string): boolean;
}

export type Runbook<I> = (ctx: WorkflowContext, input: I) => Promise<unknown>;

/**
 * The registry the engine runs from: one runbook per workflow kind, typed by `K`, the map from each
 * kind to its runbook's input type (coordinator/workflow/kinds.ts is the coordinator's).
 */
export type Runbooks<K extends object> = { readonly [Kind in keyof K]: Runbook<K[Kind]> };

/** The kinds of a map from workflow kind to input type. */
export type KindOf<K extends object> = keyof K & string;

/** The runbook asked for a different step than the one recorded at this position. */
export class NonDeterminismError extends Error {
  override name = "NonDeterminismError";
}

/** A step failed for good (attempts exhausted or a non-retryable error); `cause` keeps the failure's kind. */
export class StepFailedError extends Error {
  override name = "StepFailedError";
  /** failureKind() looks through this wrapper to the cause. */
  readonly failureWrapper = true;
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

export type WorkflowOutcome = { ok: true; result: unknown } | { ok: false; error: string; cause: unknown };

export interface EngineOptions<K extends object> {
  store: Store;
  clock: ScaledClock;
  runbooks: Runbooks<K>;
  /** How many workflows run at once; the rest wait in order. */
  maxConcurrent?: number;
  /** Default retry policy for steps (model ms). */
  defaultPolicy?: Partial<RetryPolicy>;
  /**
   * Step names an earlier version recorded, each mapped to the name the runbooks use now for the
   * same step: a workflow recorded before an upgrade replays its recorded steps under them.
   */
  renamedSteps?: Readonly<Record<string, string>>;
  /**
   * Called after a step's result is recorded (the crash test hook), with the workflow's other steps
   * whose results are being recorded at that moment (sent to the store, hook not run yet).
   */
  afterStep?: (wf: WorkflowRecord, seq: number, name: string, alsoRecording: readonly number[]) => void;
  onFinished?: (wf: WorkflowRecord, outcome: WorkflowOutcome) => Promise<void> | void;
  random?: () => number;
}

/** Runs the workflows of the kinds in `K` (each kind mapped to its runbook's input type). */
export class WorkflowEngine<K extends object> {
  private readonly store: Store;
  private readonly clock: ScaledClock;
  private readonly maxConcurrent: number;
  private active = 0;
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly done = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  private readonly abort = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  /** Per workflow, the steps whose results are being recorded (for the afterStep hook). */
  private readonly recording = new Map<string, Set<number>>();
  private stopped = false;

  constructor(private readonly opts: EngineOptions<K>) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.maxConcurrent = Math.max(1, opts.maxConcurrent ?? 32);
    // Every waiting step listens on this one signal; hundreds of workflows are normal.
    setMaxListeners(0, this.abort.signal);
  }

  newId(kind: string): string {
    return `wf-${kind}-${this.clock.now().toString(36)}-${randomBytes(4).toString("hex")}`;
  }

  /**
   * Record a new workflow and schedule it; the row is written before this resolves. Inside a
   * transaction pass it as `t`: the workflow then runs only if the transaction commits (a rolled
   * back one leaves no row, and the scheduled run finds nothing to do).
   */
  async start<Kind extends KindOf<K>>(
    kind: Kind,
    instance: string,
    input: K[Kind],
    trigger: string | null = null,
    t?: StoreTx,
  ): Promise<string> {
    if (!this.runbook(kind)) throw new Error(`starting workflow: no runbook named ${JSON.stringify(kind)}`);
    const id = this.newId(kind);
    await (t ?? this.store).workflows.insert({ id, kind, instance, input, trigger });
    this.schedule(id);
    return id;
  }

  /** Schedule every workflow a previous process left unfinished. */
  async resumeAll(): Promise<string[]> {
    const ids = (await this.store.workflows.unfinished()).map((w) => w.id);
    for (const id of ids) this.schedule(id);
    return ids;
  }

  /** Resolves when the workflow has finished (in this process) or at once if it already has. */
  async wait(id: string): Promise<WorkflowRecord> {
    const row = await this.store.workflows.get(id);
    if (!row) throw new Error(`waiting for workflow ${id}: no such workflow`);
    if (row.status !== "running") return row;
    await this.waiter(id).promise;
    const done = await this.store.workflows.get(id);
    if (!done) throw new Error(`waiting for workflow ${id}: it disappeared`);
    return done;
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

  /** The runbook of a kind as recorded (a row may name a kind this version has no runbook for). */
  private runbook(kind: string): Runbook<unknown> | undefined {
    const byKind: Readonly<Record<string, Runbook<never> | undefined>> = this.opts.runbooks;
    return byKind[kind] as Runbook<unknown> | undefined;
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

  private finishWaiter(id: string): void {
    this.waiter(id).resolve();
    this.done.delete(id);
  }

  private schedule(id: string): void {
    if (this.stopped || this.queued.has(id)) return;
    this.queued.add(id);
    this.queue.push(id);
    this.pump();
  }

  private pump(): void {
    while (!this.stopped && this.active < this.maxConcurrent && this.queue.length > 0) {
      const id = this.queue.shift() as string;
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

  /**
   * The engine's own store calls wait out a store whose database cannot be used (a PostgreSQL
   * failover) or whose disk is full: the call is made again with backoff until it works or the
   * engine stops, so an outage neither fails a workflow nor makes a runbook branch on it, and the
   * workflow goes on from where it was once space returns. Other errors are thrown.
   */
  private async record<T>(call: () => Promise<T>): Promise<T> {
    for (let delay = 250; ; delay = Math.min(delay * 2, 10_000)) {
      try {
        return await call();
      } catch (err) {
        if (this.stopped || !(isStoreUnavailable(err) || isStoreFull(err))) throw err;
        await this.clock.sleep(delay, this.abort.signal);
      }
    }
  }

  /** Records a step's result, then runs the afterStep hook. */
  private async recordResult(wf: WorkflowRecord, seq: number, name: string, result: unknown): Promise<void> {
    if (!this.opts.afterStep) {
      await this.record(() => this.store.steps.complete(wf.id, seq, result));
      return;
    }
    const recording = this.recording.get(wf.id) ?? new Set<number>();
    this.recording.set(wf.id, recording);
    recording.add(seq);
    try {
      await this.record(() => this.store.steps.complete(wf.id, seq, result));
    } finally {
      recording.delete(seq);
      if (recording.size === 0) this.recording.delete(wf.id);
    }
    this.opts.afterStep(wf, seq, name, [...recording]);
  }

  private async execute(id: string): Promise<void> {
    const wf = await this.record(() => this.store.workflows.get(id)).catch(() => null);
    if (wf?.status !== "running") {
      this.finishWaiter(id);
      return;
    }
    const runbook = this.runbook(wf.kind);
    let outcome: WorkflowOutcome;
    try {
      if (!runbook) throw new Error(`no runbook named ${JSON.stringify(wf.kind)}`);
      // What an earlier run recorded, by position: `takesPath` looks ahead in it.
      const recorded = new Map((await this.record(() => this.store.steps.list(id))).map((r) => [r.seq, r.name]));
      const result = await runbook(this.context(wf, recorded), wf.input);
      outcome = { ok: true, result };
    } catch (err) {
      if (this.stopped) return; // left running in the store; resumes on the next start
      outcome = { ok: false, error: describeError(err), cause: err };
    }
    try {
      if (outcome.ok) await this.record(() => this.store.workflows.finish(id, "succeeded", outcome.result, null));
      else await this.record(() => this.store.workflows.finish(id, "failed", null, outcome.error));
      const finished = await this.record(() => this.store.workflows.get(id));
      if (finished) await this.opts.onFinished?.(finished, outcome);
    } catch (err) {
      // The store refused the write (disk full, I/O error): the workflow stays `running` in the
      // store and is resumed, from its last recorded step, by the next start.
      if (!this.stopped) process.emitWarning(`workflow ${id}: recording its end failed: ${describeError(err)}`);
    } finally {
      this.finishWaiter(id);
    }
  }

  private context(wf: WorkflowRecord, recorded: ReadonlyMap<number, string>): WorkflowContext {
    let seq = 0;
    const signal = this.abort.signal;
    const run = <T>(name: string, fn: StepFn<T>, policy?: StepPolicy): Promise<T> => {
      const mySeq = ++seq; // allocated synchronously: call order defines numbering
      return this.runStep(wf, mySeq, name, fn, policy);
    };
    return {
      workflowId: wf.id,
      kind: wf.kind,
      instance: wf.instance,
      signal,
      clock: this.clock,
      step: run,
      all: <T>(steps: ReadonlyArray<StepDef<T>>) => settleAll(steps.map((s) => run(s.name, s.run, s.policy))),
      parallel: <T extends unknown[]>(...steps: { [K in keyof T]: StepDef<T[K]> }): Promise<T> => {
        const defs: ReadonlyArray<StepDef<unknown>> = steps;
        return settleAll(defs.map((s) => run(s.name, s.run, s.policy))) as Promise<T>;
      },
      event: (kind, message) => this.store.events.add(wf.instance, kind, message, wf.id),
      takesPath: (firstStep) => {
        const next = recorded.get(seq + 1);
        return next === undefined || this.sameStep(next, firstStep);
      },
    };
  }

  /** A recorded step name and the name a runbook asks for name the same step (directly or through a rename). */
  private sameStep(recordedName: string, name: string): boolean {
    return recordedName === name || this.opts.renamedSteps?.[recordedName] === name;
  }

  private async runStep<T>(wf: WorkflowRecord, seq: number, name: string, fn: StepFn<T>, policy?: StepPolicy): Promise<T> {
    if (this.stopped) throw new WorkflowStopped("coordinator stopping");
    const row = await this.record(() => this.store.steps.get(wf.id, seq));
    if (row && !this.sameStep(row.name, name)) {
      throw new NonDeterminismError(
        `workflow ${wf.id} replay: step ${seq} is recorded as ${JSON.stringify(row.name)} but the runbook now asks for ` +
          `${JSON.stringify(name)} (the runbook changed or branches on something other than step results)`,
      );
    }
    if (row?.status === "done") return row.result as T;
    if (row?.status === "failed")
      throw new StepFailedError(name, row.attempts, replayFailure(row.failure ?? { kind: "error", code: null, message: "failed" }));
    const full = retryPolicy({ ...this.opts.defaultPolicy, ...stripRetryable(policy) });
    let attempts = row?.attempts ?? 0;
    if (row?.nextAttemptAt != null) {
      const wait = this.clock.modelMsUntil(row.nextAttemptAt);
      if (wait > 0) await this.clock.sleep(wait, this.abort.signal);
    }
    await this.record(() => this.store.steps.start(wf.id, seq, name));
    for (;;) {
      try {
        const result = await fn({ attempt: attempts + 1, signal: this.abort.signal });
        await this.recordResult(wf, seq, name, result);
        return (result === undefined ? null : result) as T;
      } catch (err) {
        if (this.stopped || err instanceof WorkflowStopped || err instanceof NonDeterminismError) throw err;
        attempts++;
        const retryable = policy?.retryable ? policy.retryable(err) : true;
        const delay = retryable ? nextDelay(full, attempts, this.opts.random) : null;
        if (delay === null) {
          await this.record(() => this.store.steps.fail(wf.id, seq, recordFailure(err)));
          throw new StepFailedError(name, attempts, err);
        }
        await this.record(() => this.store.steps.scheduleRetry(wf.id, seq, recordFailure(err), this.clock.wallAfter(delay)));
        await this.clock.sleep(delay, this.abort.signal);
        await this.record(() => this.store.steps.start(wf.id, seq, name));
      }
    }
  }
}

function stripRetryable(p?: StepPolicy): Partial<RetryPolicy> {
  if (!p) return {};
  const { retryable: _r, ...rest } = p;
  return rest;
}

/**
 * Await branches of a runbook that run at the same time (e.g. a `ctx.all` beside a `ctx.step`),
 * typed per branch. Like Promise.all, but waits for every branch before rejecting, so no step is
 * left running unobserved.
 */
export async function together<T extends unknown[]>(...branches: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const all: ReadonlyArray<Promise<unknown>> = branches;
  return settleAll([...all]) as Promise<T>;
}

/** Like Promise.all, but waits for every branch before rejecting, so no step is left running unobserved. */
async function settleAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const settled = await Promise.allSettled(promises);
  const out: T[] = [];
  for (const s of settled) {
    if (s.status === "rejected") throw s.reason;
    out.push(s.value);
  }
  return out;
}
