/**
 * The coordinator's one notion of time. `now()` is wall-clock epoch ms: it is what the store
 * records and what notice deadlines are written in, so a restarted coordinator reads old rows
 * correctly. Durations handed to `sleep`/`setTimer` are MODEL time: with localcloud running at a
 * time scale (0.1 = ten times faster), every poll, waiter, retry delay and heartbeat shrinks by
 * the same factor, so spotkeep's own overheads are not magnified against the cloud's latencies.
 * Only the place that builds the clock knows the scale; code that needs to cross between the two
 * (a wall-clock deadline from a notice → a model-time budget) asks the clock.
 */
import { realClock, type Clock } from "../shared/clock.js";

export interface ScaledClock extends Clock {
  /** real ms = model ms × timeScale. */
  readonly timeScale: number;
  /** Model ms left until the wall-clock instant `atWallMs` (0 when it has passed). */
  modelMsUntil(atWallMs: number): number;
  /** The wall-clock instant `modelMs` of model time from now. */
  wallAfter(modelMs: number): number;
  /** Model ms elapsed since the wall-clock instant `sinceWallMs`. */
  modelMsSince(sinceWallMs: number): number;
}

export function scaledClock(timeScale: number, base: Clock = realClock): ScaledClock {
  if (!(timeScale > 0) || !Number.isFinite(timeScale)) throw new RangeError(`time scale must be a positive number, got ${timeScale}`);
  return {
    timeScale,
    now: () => base.now(),
    sleep: (ms, signal) => base.sleep(ms * timeScale, signal),
    setTimer: (ms, fn) => base.setTimer(ms * timeScale, fn),
    modelMsUntil: (at) => Math.max(0, at - base.now()) / timeScale,
    wallAfter: (ms) => base.now() + ms * timeScale,
    modelMsSince: (since) => (base.now() - since) / timeScale,
  };
}
