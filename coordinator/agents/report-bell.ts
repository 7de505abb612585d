/**
 * Wakes the workflows waiting for an agent's report as soon as one is stored, so a waiting step
 * does not poll the store in a tight loop: a zone's worth of workflows waiting for their agents
 * at once (quiesce, restore) polled thousands of times a second. Keyed by EC2 instance id: any
 * report from an instance rings, and its waiters check the store again (the store stays the
 * truth; a ring only says "look now"). Rung after the report's write is committed.
 */
export interface Wake {
  /** Resolves at the next ring for the instance (never rejects). */
  promise: Promise<void>;
  /** Stop waiting (the waiter was woken by its timer or gave up). */
  cancel(): void;
}

export class ReportBell {
  private readonly waiters = new Map<string, Set<() => void>>();

  /** A report from `ec2InstanceId` was stored: wake everyone waiting on it. */
  ring(ec2InstanceId: string): void {
    const set = this.waiters.get(ec2InstanceId);
    if (!set) return;
    this.waiters.delete(ec2InstanceId);
    for (const wake of set) wake();
  }

  /** Wait for the next ring for `ec2InstanceId`. */
  next(ec2InstanceId: string): Wake {
    let wake!: () => void;
    const promise = new Promise<void>((r) => (wake = r));
    let set = this.waiters.get(ec2InstanceId);
    if (!set) {
      set = new Set();
      this.waiters.set(ec2InstanceId, set);
    }
    set.add(wake);
    return {
      promise,
      cancel: () => {
        const s = this.waiters.get(ec2InstanceId);
        if (!s) return;
        s.delete(wake);
        if (s.size === 0) this.waiters.delete(ec2InstanceId);
      },
    };
  }

  /** Waiters registered now (for tests). */
  get waiting(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }
}
