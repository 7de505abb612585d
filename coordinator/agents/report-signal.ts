/**
 * In-process wake-ups for workflow steps that wait on an agent's report (`quiesced`, `restored`,
 * `ready`, a restore-mode hello). The report itself is always read from the store: a wake-up only
 * says "look again now" instead of at the waiter's next poll, which would otherwise sit on the
 * downtime's critical path. A report recorded by another process (or before a waiter subscribed)
 * is still found by the waiter's own poll, so a lost wake-up costs time, never correctness.
 */
export class ReportSignal {
  private readonly waiters = new Map<string, Set<() => void>>();

  /** Call `fn` whenever a report from `instanceId` has been recorded; returns the unsubscribe function. */
  subscribe(instanceId: string, fn: () => void): () => void {
    let set = this.waiters.get(instanceId);
    if (!set) {
      set = new Set();
      this.waiters.set(instanceId, set);
    }
    set.add(fn);
    return () => {
      const s = this.waiters.get(instanceId);
      if (!s) return;
      s.delete(fn);
      if (s.size === 0) this.waiters.delete(instanceId);
    };
  }

  /** A report from `instanceId` was recorded: wake everyone waiting on it. */
  notify(instanceId: string): void {
    const set = this.waiters.get(instanceId);
    if (!set) return;
    for (const fn of [...set]) fn();
  }

  /** Instances with at least one waiter (for tests and leak checks). */
  get size(): number {
    return this.waiters.size;
  }
}
