/**
 * The PostgreSQL store: the same Store contract as the SQLite store, on a shared database that
 * several coordinators may use at once.
 *
 *  - Every write runs in a transaction that first takes one global transaction-level advisory lock
 *    (WRITE_LOCK_KEY), so writers serialise across processes the way SQLite's BEGIN IMMEDIATE
 *    serialises them on one file: a transaction's reads see every write committed before it, and
 *    nothing interleaves with it. Then `fence(client)` runs (the caller's check that it may still
 *    write; it throws to refuse), then the work. A write call outside `tx()` is such a
 *    transaction of its own. Reads run on the pool, unlocked and unfenced, and see committed rows.
 *  - Within this process, as in the SQLite store, a transaction is a gate: every other call of
 *    this store (reads too) waits until it has committed or rolled back, so code that starts work
 *    inside a transaction (a workflow scheduled by `engine.start(…, t)`) and reads its rows from
 *    outside sees them once, and only if, the transaction committed. It also keeps this process's
 *    waiting writers from holding pool connections while they queue.
 *  - Connections are bounded in time: connecting gives up after `connectTimeoutMs`, and the server
 *    ends a session idle inside a transaction (a paused or partitioned holder of the write lock)
 *    after `idleInTransactionTimeoutMs`, freeing the lock for the others.
 *  - A server that goes away makes calls fail with an error; the pool opens new connections when
 *    it is back (broken connections are discarded, never reused).
 */
import pg from "pg";
import type { Queries, Store, StoreTx } from "../store.js";
import { deletionQueries } from "./deletions.js";
import { agentReportQueries, eventQueries } from "./events.js";
import { generationQueries } from "./generations.js";
import { instanceQueries } from "./instances.js";
import { migratePostgres } from "./migrations.js";
import { noticeArrivalQueries, queueEventQueries } from "./queue-events.js";
import { artifactQueries, networkQueries, rootQueries, volumeQueries } from "./resources.js";
import { isConnectionError, type Sql, sqlOn, storeTypes, unavailable } from "./sql.js";
import { groupQueries } from "./groups.js";
import { taskRunQueries } from "./task-runs.js";
import { stepQueries, workflowQueries } from "./workflows.js";
import { TABLES } from "../rows.js";

/** pg_advisory_xact_lock key every write transaction takes first ("spkw"). */
export const WRITE_LOCK_KEY = 0x73706b77;

/** The methods that only read: they run on the pool without the write lock or the fence. Everything else writes. */
const READS: { [K in keyof Queries]: readonly (keyof Queries[K])[] } = {
  instances: ["get", "list"],
  generations: ["get", "byEc2InstanceId", "list", "live"],
  volumes: ["list"],
  network: ["get"],
  root: ["get"],
  artifacts: ["list"],
  workflows: ["get", "unfinished", "runningFor", "listFor", "countRunning"],
  steps: ["get", "list"],
  events: ["list"],
  agentReports: ["get", "latest"],
  queueEvents: ["get"],
  noticeArrivals: ["list"],
  deletions: ["listDeleted", "kept", "due"],
  taskRuns: ["list"],
  groups: ["get", "list", "members", "memberOf"],
};

export function postgresQueries(sql: Sql, now: () => number): StoreTx {
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

export interface PostgresStoreOptions {
  now?: () => number;
  /** Runs inside every write transaction, after the write lock and before the work; throw to refuse the write. */
  fence?: (client: pg.PoolClient) => Promise<void>;
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** Give up connecting after this many ms (default 10 000). */
  connectTimeoutMs?: number;
  /** The server ends a session idle inside a transaction for this long (default 10 000 ms). */
  idleInTransactionTimeoutMs?: number;
  /** Lines worth an operator's attention (a connection lost while idle). */
  log?: (line: string) => void;
}

/** Where a postgres:// URL points, for messages: host:port/database, never the password. */
export function describePostgresUrl(url: string): string {
  try {
    const u = new URL(url);
    const host = u.hostname || u.searchParams.get("host") || "localhost";
    const db = decodeURIComponent(u.pathname.replace(/^\//, "")) || "(default database)";
    return `${host}:${u.port || "5432"}/${db}`;
  } catch {
    return "(unparseable URL)";
  }
}

export class PostgresStore implements Store {
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
  private closed = false;
  /** Set while a transaction of this process is open; every other call waits for it. */
  private gate: Promise<void> | null = null;

  private constructor(
    readonly pool: pg.Pool,
    private readonly now: () => number,
    private readonly fence: PostgresStoreOptions["fence"],
  ) {
    const reads = postgresQueries(sqlOn(pool), now);
    const surface = <K extends keyof Queries>(agg: K): StoreTx[K] => {
      const out: Record<string, unknown> = {};
      const readOnly = new Set<string>(READS[agg] as readonly string[]);
      for (const method of Object.keys(reads[agg])) {
        const read = (reads[agg] as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]!;
        out[method] = readOnly.has(method)
          ? async (...args: unknown[]) => {
              await this.idle();
              return read(...args);
            }
          : (...args: unknown[]) =>
              this.tx((t) => (t[agg] as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]!(...args));
      }
      return out as StoreTx[K];
    };
    this.instances = surface("instances");
    this.generations = surface("generations");
    this.volumes = surface("volumes");
    this.network = surface("network");
    this.root = surface("root");
    this.artifacts = surface("artifacts");
    this.workflows = surface("workflows");
    this.steps = surface("steps");
    this.events = surface("events");
    this.agentReports = surface("agentReports");
    this.queueEvents = surface("queueEvents");
    this.noticeArrivals = surface("noticeArrivals");
    this.deletions = surface("deletions");
    this.taskRuns = surface("taskRuns");
    this.groups = surface("groups");
  }

  /** Connects, migrates (once across coordinators starting together) and returns the store. */
  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    if (!/^postgres(ql)?:\/\//.test(url)) throw new Error("PostgreSQL store: the URL must start with postgres:// or postgresql://");
    const where = describePostgresUrl(url);
    const log = opts.log ?? (() => undefined);
    const idleInTx = opts.idleInTransactionTimeoutMs ?? 10_000;
    const pool = new pg.Pool({
      connectionString: url,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
      keepAlive: true,
      types: storeTypes,
      application_name: "spotkeep-coordinator",
      options: `-c idle_in_transaction_session_timeout=${Math.max(1, Math.round(idleInTx))}`,
    });
    // A connection that dies while idle in the pool (server restart, network) is discarded here;
    // without a listener the error would end the process.
    pool.on("error", (err) => log(`store: PostgreSQL connection to ${where} lost while idle: ${err.message}`));
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw new Error(`PostgreSQL store: cannot connect to ${where}: ${reason(err)}`, { cause: err });
    }
    try {
      await migratePostgres(client, opts.now ?? Date.now);
      client.release();
    } catch (err) {
      client.release(err as Error);
      await pool.end().catch(() => undefined);
      throw err;
    }
    return new PostgresStore(pool, opts.now ?? Date.now, opts.fence);
  }

  async tx<T>(fn: (t: StoreTx) => Promise<T>): Promise<T> {
    await this.idle();
    if (this.closed) throw new Error("PostgreSQL store: closed");
    let open!: () => void;
    this.gate = new Promise<void>((r) => (open = r));
    try {
      return await this.locked(fn);
    } finally {
      this.gate = null;
      open();
    }
  }

  /** Waits until no transaction of this process is open. */
  private async idle(): Promise<void> {
    while (this.gate) await this.gate;
  }

  private async locked<T>(fn: (t: StoreTx) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw unavailable(err);
    }
    // A checked-out connection that breaks between queries emits 'error'; keep it and discard the connection.
    let broken: Error | undefined;
    const onError = (err: Error) => {
      broken = err;
    };
    client.on("error", onError);
    try {
      await client.query("BEGIN");
      try {
        await client.query("SELECT pg_advisory_xact_lock($1)", [WRITE_LOCK_KEY]);
        await this.fence?.(client);
        const out = await fn(postgresQueries(sqlOn(client), this.now));
        await client.query("COMMIT");
        return out;
      } catch (err) {
        await client.query("ROLLBACK").catch((e: Error) => {
          broken ??= e;
        });
        throw err;
      }
    } catch (err) {
      if (isConnectionError(err)) broken ??= err as Error;
      throw unavailable(err);
    } finally {
      client.removeListener("error", onError);
      client.release(broken ?? false);
    }
  }

  async counts(): Promise<Record<string, number>> {
    await this.idle();
    const r = await sqlOn(this.pool).row<Record<string, number>>(
      `SELECT ${TABLES.map((t) => `(SELECT COUNT(*) FROM ${t}) AS ${t}`).join(", ")}`,
    );
    return { ...r };
  }

  async close(): Promise<void> {
    await this.idle();
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/** The driver's reason, with the network error code when there is one (ECONNREFUSED, ENOTFOUND…). */
function reason(err: unknown): string {
  const e = err as { message?: string; code?: string; errors?: { message?: string }[] };
  let msg = e?.message || (e?.errors?.map((x) => x.message).join("; ") ?? String(err));
  if (!msg) msg = String(err);
  return e?.code && !msg.includes(e.code) ? `${e.code}: ${msg}` : msg;
}
