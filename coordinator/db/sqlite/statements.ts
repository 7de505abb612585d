import type Database from "better-sqlite3";

/** Prepared statements, compiled once per connection and SQL text. */
export function statements(db: Database.Database): (sql: string) => Database.Statement {
  const cache = new Map<string, Database.Statement>();
  return (sql) => {
    let s = cache.get(sql);
    if (!s) cache.set(sql, (s = db.prepare(sql)));
    return s;
  };
}

export type Sql = ReturnType<typeof statements>;
