/**
 * Coalesces single-id lookups made at about the same time into one batched call: two hundred
 * workflows each waiting for "their" instance to be running cost one DescribeInstances per
 * window instead of two hundred. The coordinator watches instance state itself, batched, so a dead
 * agent still starts recovery.
 */
export class Batcher<V> {
  private pending = new Map<string, Array<{ resolve: (v: V | null) => void; reject: (e: unknown) => void }>>();
  private scheduled = false;

  /**
   * @param fetchMany one call for up to `maxBatch` ids; ids it does not return resolve to null
   * @param windowMs how long to gather ids before the call (real ms)
   */
  constructor(
    private readonly fetchMany: (ids: string[]) => Promise<Map<string, V>>,
    private readonly windowMs = 5,
    private readonly maxBatch = 200,
  ) {}

  get(id: string): Promise<V | null> {
    return new Promise((resolve, reject) => {
      const waiters = this.pending.get(id);
      if (waiters) waiters.push({ resolve, reject });
      else this.pending.set(id, [{ resolve, reject }]);
      if (!this.scheduled) {
        this.scheduled = true;
        setTimeout(() => this.flush(), this.windowMs);
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = new Map();
    const ids = [...batch.keys()];
    for (let i = 0; i < ids.length; i += this.maxBatch) {
      const chunk = ids.slice(i, i + this.maxBatch);
      this.fetchMany(chunk).then(
        (found) => {
          for (const id of chunk) for (const w of batch.get(id)!) w.resolve(found.get(id) ?? null);
        },
        (err) => {
          for (const id of chunk) for (const w of batch.get(id)!) w.reject(err);
        },
      );
    }
  }
}
