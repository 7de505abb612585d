/** Time, injected everywhere so tests can use a fake clock instead of sleeping. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * Resolve after `ms` (clock time); rejects with the signal's reason when aborted. Any delay is
   * safe: NaN/negative mean now, Infinity means never, long delays do not overflow.
   */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Call `fn` after `ms` (same rules as sleep); returns a cancel function. */
  setTimer(ms: number, fn: () => void): () => void;
}

/**
 * The longest delay Node's setTimeout honours (2^31-1 ms, about 24.8 days); a longer one fires
 * after 1 ms. Timers here never hand it more: longer delays are chained.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A delay any timer here accepts: NaN and negative delays are 0; Infinity stays Infinity (never fires). */
export function clampDelay(ms: number): number {
  if (Number.isNaN(ms) || ms <= 0) return 0;
  return ms;
}

/**
 * setTimeout for ANY delay: NaN/negative fire on the next turn, delays over MAX_TIMER_MS are
 * chained (each link measured against a monotonic deadline), Infinity never fires. Returns a cancel
 * function. `unref` lets the process exit while the timer waits.
 */
export function safeTimeout(ms: number, fn: () => void, opts: { unref?: boolean } = {}): () => void {
  const delay = clampDelay(ms);
  if (delay === Number.POSITIVE_INFINITY) return () => {};
  const due = performance.now() + delay;
  let t: NodeJS.Timeout | undefined;
  const arm = (left: number) => {
    const chunk = Math.min(left, MAX_TIMER_MS);
    t = setTimeout(() => {
      const remaining = due - performance.now();
      // Only an intermediate link re-arms: the last one fires even if the kernel woke it a hair early.
      if (chunk < left && remaining > 0) arm(remaining);
      else {
        t = undefined;
        fn();
      }
    }, chunk);
    if (opts.unref) t.unref();
  };
  arm(delay);
  return () => {
    if (t) clearTimeout(t);
    t = undefined;
  };
}

/** A promise that resolves after `ms` (any delay, see safeTimeout); rejects with the signal's reason when aborted. */
export function sleepFor(setTimer: (ms: number, fn: () => void) => () => void, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      cancel();
      reject(signal!.reason);
    };
    const cancel = setTimer(ms, () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) => sleepFor(safeTimeout, ms, signal),
  setTimer: (ms, fn) => safeTimeout(ms, fn),
};

/**
 * Time at a scale: real ms = model ms × timeScale (0.1 runs ten times faster), so a time-scaled
 * localcloud and spotkeep stay in proportion. Durations handed to `sleep`/`setTimer` are model time.
 * `now()` is wall-clock epoch ms: what the coordinator's store records and what notice deadlines
 * are written in, so a restarted coordinator reads old rows correctly. `modelNow()` is model time
 * counted from the clock's creation (its wall time then), for code whose whole world runs in model
 * time (localcloud, the EC2 gateway's pacing); `modelClock` hands that out as a plain `Clock`.
 * Only the place that builds the clock knows the scale; code that crosses between the two (a
 * wall-clock deadline from a notice → a model-time budget) asks the clock.
 */
export interface ScaledClock extends Clock {
  /** real ms = model ms × timeScale. */
  readonly timeScale: number;
  /** Model ms since the clock was created, counted from the wall-clock instant of its creation. */
  modelNow(): number;
  /** Model ms left until the wall-clock instant `atWallMs` (0 when it has passed). */
  modelMsUntil(atWallMs: number): number;
  /** The wall-clock instant `modelMs` of model time from now. */
  wallAfter(modelMs: number): number;
  /** Model ms elapsed since the wall-clock instant `sinceWallMs`. */
  modelMsSince(sinceWallMs: number): number;
}

export function scaledClock(timeScale: number, base: Clock = realClock): ScaledClock {
  if (!(timeScale > 0) || !Number.isFinite(timeScale)) throw new RangeError(`time scale must be a positive number, got ${timeScale}`);
  const origin = base.now();
  return {
    timeScale,
    now: () => base.now(),
    modelNow: () => origin + (base.now() - origin) / timeScale,
    sleep: (ms, signal) => base.sleep(ms * timeScale, signal),
    setTimer: (ms, fn) => base.setTimer(ms * timeScale, fn),
    modelMsUntil: (at) => Math.max(0, at - base.now()) / timeScale,
    wallAfter: (ms) => base.now() + ms * timeScale,
    modelMsSince: (since) => (base.now() - since) / timeScale,
  };
}

/** A clock whose `now()` is model time (`ScaledClock.modelNow`): durations and timestamps in one unit. */
export function modelClock(timeScale: number, base: Clock = realClock): Clock {
  const c = scaledClock(timeScale, base);
  return { now: c.modelNow, sleep: c.sleep, setTimer: c.setTimer };
}

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

/** A manual clock for tests: nothing happens until `advance`/`tick` moves time forward. */
export class FakeClock implements Clock {
  private current: number;
  private timers: Timer[] = [];
  private seq = 0;

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimer(ms: number, fn: () => void): () => void {
    const delay = clampDelay(ms);
    // Infinity never fires, so it is not queued (and not counted in `pending`).
    if (delay === Number.POSITIVE_INFINITY) return () => {};
    const timer: Timer = { at: this.current + delay, seq: this.seq++, fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepFor((d, fn) => this.setTimer(d, fn), ms, signal);
  }

  /** Number of timers waiting. */
  get pending(): number {
    return this.timers.length;
  }

  /**
   * Move time forward by `ms`, firing due timers in order; awaits microtasks between timers so
   * code resumed by a timer can schedule the next one within the same advance.
   */
  async advance(ms: number): Promise<void> {
    const target = this.current + ms;
    for (;;) {
      await flushMicrotasks();
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.timers[0];
      if (!next || next.at > target) break;
      this.timers.shift();
      this.current = Math.max(this.current, next.at);
      next.fn();
    }
    this.current = target;
    await flushMicrotasks();
  }
}

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
  await new Promise<void>((r) => setImmediate(r));
}
