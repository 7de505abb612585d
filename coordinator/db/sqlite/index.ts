/**
 * The SQLite store: better-sqlite3 is synchronous, so each query runs to completion on the event
 * loop; the asynchronous Store surface around it only has to keep other callers out while a
 * transaction is open (a transaction's callback may await between its queries). Single calls
 * outside a transaction are group-committed (group-commit.ts): those of one event-loop turn share
 * one commit, and each resolves once that commit is on disk.
 */
import type Database from "better-sqlite3";
import { openSqlite } from "./driver.js";
import { migrate } from "../migrations.js";
import type { Async, Queries, Store, StoreTx } from "../store.js";
import { agentReportQueries, eventQueries } from "./events.js";
import { generationQueries } from "./generations.js";
import { instanceQueries } from "./instances.js";
import { noticeArrivalQueries, queueEventQueries } from "./queue-events.js";
import { deletionQueries } from "./deletions.js";
import { artifactQueries, networkQueries, rootQueries, volumeQueries } from "./resources.js";
import { GroupCommit } from "./group-commit.js";
import { statements } from "./statements.js";
import { groupQueries } from "./groups.js";
import { taskRunQueries } from "./task-runs.js";
import { stepQueries, workflowQueries } from "./workflows.js";
import { TABLES } from "../rows.js";

export function sqliteQueries(db: Database.Database, now: () => number): Queries {
  const sql = statements(db);
  return {
    instances: instanceQueries(sql, now),
    generations: generationQueries(sql, now),
    volumes: volumeQueries(sql),
    network: networkQueries(sql),
    root: rootQueries(sql),
    artifacts: artifactQueries(sql, now),
    workflows: workflowQueries(sql, now),
    steps: stepQueries(sql, now),
    events: eventQueries(sql, now),
    agentReports: agentReportQueries(sql, now),
    queueEvents: queueEventQueries(sql, now),
    noticeArrivals: noticeArrivalQueries(sql, now),
    deletions: deletionQueries(sql, now),
    taskRuns: taskRunQueries(sql, now),
    groups: groupQueries(sql, now),
  };
}

/** Opens (and migrates) a database file with the coordinator's pragmas; for tools and tests that need no data-dir checks. */
export function openPlainDatabase(file: string, now: () => number = Date.now): Database.Database {
  const db = openSqlite(file);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  db.pragma("foreign_keys = ON");
  migrate(db, now);
  return db;
}

export interface StoreOptions {
  /**
   * When a group of single calls commits; default setImmediate (the next turn of the event loop,
   * so the timers and socket reads of one turn share a commit). Tests on a fake clock that settle
   * with microtasks pass queueMicrotask.
   */
  commitOn?: (commit: () => void) => void;
}

export class SqliteStore implements Store {
  readonly instances: StoreTx["instances"];
  readonly generations: StoreTx["generations"];
  readonly volumes: StoreTx["volumes"];
  readonly network: StoreTx["network"];
  readonly root: StoreTx["root"];
  readonly artifacts: StoreTx["artifacts"];
  readonly workflows: StoreTx["workflows"];
  readonly steps: StoreTx["steps"];
  readonly events: StoreTx["events"];
  readonly agentReports: StoreTx["agentReports"];
  readonly queueEvents: StoreTx["queueEvents"];
  readonly noticeArrivals: StoreTx["noticeArrivals"];
  readonly deletions: StoreTx["deletions"];
  readonly taskRuns: StoreTx["taskRuns"];
  readonly groups: StoreTx["groups"];
  /** The same queries without the gate, handed to a transaction's callback. */
  private readonly inTx: StoreTx;
  /** Set while a transaction is open; every other call waits for it. */
  private gate: Promise<void> | null = null;
  /** The open group of single calls; a transaction waits until it has committed. */
  readonly group: GroupCommit;

  /** `db` must be open and migrated (see openPlainDatabase, or the data-dir opener). */
  constructor(
    readonly db: Database.Database,
    now: () => number = Date.now,
    opts: StoreOptions = {},
  ) {
    const q = sqliteQueries(db, now);
    this.group = new GroupCommit(db, opts.commitOn);
    const gated = <T extends object>(o: T): Async<T> => this.wrap(o, true);
    const direct = <T extends object>(o: T): Async<T> => this.wrap(o, false);
    this.instances = gated(q.instances);
    this.generations = gated(q.generations);
    this.volumes = gated(q.volumes);
    this.network = gated(q.network);
    this.root = gated(q.root);
    this.artifacts = gated(q.artifacts);
    this.workflows = gated(q.workflows);
    this.steps = gated(q.steps);
    this.events = gated(q.events);
    this.agentReports = gated(q.agentReports);
    this.queueEvents = gated(q.queueEvents);
    this.noticeArrivals = gated(q.noticeArrivals);
    this.deletions = gated(q.deletions);
    this.taskRuns = gated(q.taskRuns);
    this.groups = gated(q.groups);
    this.inTx = {
      instances: direct(q.instances),
      generations: direct(q.generations),
      volumes: direct(q.volumes),
      network: direct(q.network),
      root: direct(q.root),
      artifacts: direct(q.artifacts),
      workflows: direct(q.workflows),
      steps: direct(q.steps),
      events: direct(q.events),
      agentReports: direct(q.agentReports),
      queueEvents: direct(q.queueEvents),
      noticeArrivals: direct(q.noticeArrivals),
      deletions: direct(q.deletions),
      taskRuns: direct(q.taskRuns),
      groups: direct(q.groups),
    };
  }

  static open(file: string, now: () => number = Date.now, opts: StoreOptions = {}): SqliteStore {
    return new SqliteStore(openPlainDatabase(file, now), now, opts);
  }

  private wrap<T extends object>(o: T, gated: boolean): Async<T> {
    const out: Record<string, unknown> = {};
    for (const [k, fn] of Object.entries(o) as Array<[string, (...a: unknown[]) => unknown]>) {
      out[k] = gated
        ? async (...a: unknown[]) => {
            while (this.gate) await this.gate;
            return this.group.run(() => fn(...a));
          }
        : async (...a: unknown[]) => fn(...a);
    }
    return out as Async<T>;
  }

  async tx<T>(fn: (t: StoreTx) => Promise<T>): Promise<T> {
    // Checked again after every wait, with nothing in between: BEGIN below must find no transaction open.
    while (this.gate || this.group.open) await (this.gate ?? this.group.settled());
    let release!: () => void;
    this.gate = new Promise<void>((r) => (release = r));
    try {
      this.db.exec("BEGIN IMMEDIATE");
      try {
        const out = await fn(this.inTx);
        this.db.exec("COMMIT");
        return out;
      } catch (err) {
        if (this.db.inTransaction) this.db.exec("ROLLBACK");
        throw err;
      }
    } finally {
      this.gate = null;
      release();
    }
  }

  async counts(): Promise<Record<string, number>> {
    while (this.gate) await this.gate;
    const out: Record<string, number> = {};
    for (const t of TABLES) out[t] = (this.db.prepare(`SELECT COUNT(*) AS n FROM ${t}`).get() as { n: number }).n;
    return out;
  }

  async close(): Promise<void> {
    while (this.gate || this.group.open) await (this.gate ?? this.group.settled());
    if (this.db.open) this.db.close();
  }
}
