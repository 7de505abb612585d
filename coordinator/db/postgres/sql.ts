/**
 * What every PostgreSQL query module runs its SQL through: one connection (a transaction's client)
 * or the pool (reads outside a transaction). BIGINT columns (epoch-ms times, counts, event ids) come
 * back as numbers: every value the store keeps there is far below 2^53.
 */
import pg from "pg";
import { STORE_UNAVAILABLE } from "../store.js";

export interface Sql {
  /** Every row of a query. */
  rows<T>(text: string, params?: unknown[]): Promise<T[]>;
  /** The first row, or undefined. */
  row<T>(text: string, params?: unknown[]): Promise<T | undefined>;
  /** Run a statement; how many rows it changed. */
  run(text: string, params?: unknown[]): Promise<number>;
}

type Queryable = Pick<pg.Pool | pg.PoolClient, "query">;

/** PostgreSQL text cannot hold NUL: one in free text (an agent's message, an error) is kept as U+FFFD rather than failing the write. */
const textParam = (p: unknown): unknown => (typeof p === "string" && p.includes("\0") ? p.replaceAll("\0", "\uFFFD") : p);

export function sqlOn(db: Queryable): Sql {
  const query = async (text: string, params: unknown[]) => {
    try {
      return await db.query(text, params.map(textParam));
    } catch (err) {
      throw unavailable(err);
    }
  };
  return {
    async rows<T>(text: string, params: unknown[] = []) {
      return (await query(text, params)).rows as T[];
    },
    async row<T>(text: string, params: unknown[] = []) {
      return (await query(text, params)).rows[0] as T | undefined;
    },
    async run(text: string, params: unknown[] = []) {
      return (await query(text, params)).rowCount ?? 0;
    },
  };
}

/**
 * The database could not be used (not reachable, connection lost, server shutting down, session
 * ended): the call did not happen, or its transaction did not commit. Its `code` (STORE_UNAVAILABLE)
 * lets the API answer 503 and the workflow engine wait for the database; the driver's error is the cause.
 */
export class PostgresUnavailableError extends Error {
  override name = "PostgresUnavailableError";
  readonly code = STORE_UNAVAILABLE;
}

const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
]);

/** Errors after which the connection is not worth keeping: network errors, SQLSTATE classes 08 and 57P, a session ended by the server. */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof PostgresUnavailableError) return true;
  const code = (err as { code?: unknown })?.code;
  if (typeof code === "string" && (NETWORK_CODES.has(code) || code.startsWith("08") || code.startsWith("57P") || code === "25P03"))
    return true;
  return /Connection terminated|connection (is )?closed|not queryable|timeout exceeded when trying to connect/i.test(
    (err as Error)?.message ?? "",
  );
}

/** A connection error as a PostgresUnavailableError (other errors unchanged). */
export function unavailable(err: unknown): unknown {
  if (err instanceof PostgresUnavailableError || !isConnectionError(err)) return err;
  const e = err as { message?: string; code?: string };
  const why = e.code && !(e.message ?? "").includes(e.code) ? `${e.code}: ${e.message}` : (e.message ?? String(err));
  return new PostgresUnavailableError(`the PostgreSQL store is unavailable: ${why}`, { cause: err });
}

const INT8 = 20;

/** The pool's type parsers: int8 as a number (the driver's default is a string), the rest as pg parses them. */
export const storeTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") => {
    if (oid === INT8 && format !== "binary") return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as "text");
  }) as pg.CustomTypesConfig["getTypeParser"],
};
