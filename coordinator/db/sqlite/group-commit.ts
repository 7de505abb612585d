/**
 * Group commit for the store's single-call writes. With synchronous=FULL every commit waits for
 * the disk (an fsync of the write-ahead log), and a burst of workflows records thousands of steps,
 * events and agent reports a second: one commit each kept the event loop in fsync. Calls made in
 * the same turn of the event loop instead run inside one transaction, each in a savepoint of its
 * own (a call that throws leaves nothing behind), and the transaction commits on the next turn.
 * No caller hears back before the commit that holds its write is on disk, and when that commit
 * fails every writer in it gets the error, so "the promise resolved" still means "it is stored";
 * a crash before the commit loses only writes nobody was told about. A call that changed nothing
 * (a read) is run again on its own when its group fails, and answers with what is stored.
 */
import type Database from "better-sqlite3";

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
  /** For a call that changed nothing (a read): run it again on its own once the group failed. */
  again?: () => void;
}

export class GroupCommit {
  private waiters: Waiter[] | null = null;
  private done: Promise<void> | null = null;
  /** Transactions committed and the calls they held, since open (for tests and metrics). */
  readonly stats = { commits: 0, calls: 0 };

  private readonly changes: Database.Statement;

  constructor(
    private readonly db: Database.Database,
    private readonly schedule: (fn: () => void) => void = setImmediate,
  ) {
    this.changes = db.prepare("SELECT total_changes() AS n").pluck();
  }

  /** True while a group is open (a transaction of the store's must wait for `settled()`). */
  get open(): boolean {
    return this.waiters !== null;
  }

  /** Resolves when the open group (if any) has committed or failed. */
  settled(): Promise<void> {
    return this.done ?? Promise.resolve();
  }

  /**
   * Run `fn` now inside the open group (opening one if needed); resolve with its result once the
   * group has committed. `fn` must be synchronous (better-sqlite3 is).
   */
  run<T>(fn: () => T): Promise<T> {
    if (!this.waiters) this.begin();
    this.db.exec("SAVEPOINT group_call");
    let out: T;
    let changedNothing: boolean;
    try {
      const before = this.changes.get() as number;
      out = fn();
      changedNothing = this.changes.get() === before;
      this.db.exec("RELEASE group_call");
    } catch (err) {
      if (this.db.inTransaction) {
        this.db.exec("ROLLBACK TO group_call");
        this.db.exec("RELEASE group_call");
      } else {
        // SQLite rolled the whole transaction back (disk full, I/O error): the group's writes so
        // far are gone, so are its callers'.
        this.fail(err);
      }
      return Promise.reject(err);
    }
    return new Promise<T>((resolve, reject) =>
      this.waiters!.push({
        resolve: () => resolve(out),
        reject,
        // What it read may include the group's writes, now gone: it reads again what is stored.
        ...(changedNothing
          ? {
              again: () => {
                try {
                  resolve(fn());
                } catch (err) {
                  reject(err);
                }
              },
            }
          : {}),
      }),
    );
  }

  private begin(): void {
    this.db.exec("BEGIN IMMEDIATE");
    this.waiters = [];
    let settle!: () => void;
    this.done = new Promise<void>((r) => (settle = r));
    this.schedule(() => {
      this.commit();
      settle();
    });
  }

  private commit(): void {
    const waiters = this.waiters;
    if (!waiters) return;
    this.waiters = null;
    this.done = null;
    try {
      this.db.exec("COMMIT");
    } catch (err) {
      if (this.db.inTransaction) this.db.exec("ROLLBACK");
      this.failWaiters(waiters, err);
      return;
    }
    this.stats.commits++;
    this.stats.calls += waiters.length;
    for (const w of waiters) w.resolve();
  }

  /**
   * A failed group fails its writers; its readers read again outside any transaction, so a full
   * disk (SQLITE_FULL at COMMIT) does not fail the reads that happened to share a turn with writes.
   */
  private failWaiters(waiters: Waiter[], err: unknown): void {
    for (const w of waiters) {
      if (w.again && !this.db.inTransaction) w.again();
      else w.reject(err);
    }
  }

  private fail(err: unknown): void {
    const waiters = this.waiters ?? [];
    this.waiters = null;
    this.failWaiters(waiters, err);
    // The scheduled commit finds no group and only settles `done`.
  }
}
