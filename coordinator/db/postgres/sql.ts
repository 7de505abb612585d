/**
 * What every PostgreSQL query module runs its SQL through: one connection (a transaction's client)
 * or the pool (reads outside a transaction). BIGINT columns (epoch-ms times, counts, event ids) come
 * back as numbers: every value the store keeps there is far below 2^53.
 */
import pg from "pg";

export interface Sql {
  /** Every row of a query. */
  rows<T>(text: string, params?: unknown[]): Promise<T[]>;
  /** The first row, or undefined. */
  row<T>(text: string, params?: unknown[]): Promise<T | undefined>;
  /** Run a statement; how many rows it changed. */
  run(text: string, params?: unknown[]): Promise<number>;
}

type Queryable = Pick<pg.Pool | pg.PoolClient, "query">;

export function sqlOn(db: Queryable): Sql {
  return {
    async rows<T>(text: string, params: unknown[] = []) {
      return (await db.query(text, params)).rows as T[];
    },
    async row<T>(text: string, params: unknown[] = []) {
      return (await db.query(text, params)).rows[0] as T | undefined;
    },
    async run(text: string, params: unknown[] = []) {
      return (await db.query(text, params)).rowCount ?? 0;
    },
  };
}

const INT8 = 20;

/** The pool's type parsers: int8 as a number (the driver's default is a string), the rest as pg parses them. */
export const storeTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") => {
    if (oid === INT8 && format !== "binary") return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as "text");
  }) as pg.CustomTypesConfig["getTypeParser"],
};

/** JSON text from the database; null stays null. */
export function parseJson(text: string | null): unknown {
  return text == null ? null : JSON.parse(text);
}
