import type { InstanceQueries } from "../store.js";
import type { Sql } from "./statements.js";
import { type InstanceRow, toInstance } from "../rows.js";

export function instanceQueries(sql: Sql, now: () => number): InstanceQueries {
  return {
    insert(name, spec, state) {
      const t = now();
      sql("INSERT INTO instances (name, spec, state, generation, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)").run(
        name,
        JSON.stringify(spec),
        state,
        t,
        t,
      );
    },
    get(name) {
      const r = sql("SELECT * FROM instances WHERE name = ?").get(name) as InstanceRow | undefined;
      return r ? toInstance(r) : null;
    },
    list() {
      return (sql("SELECT * FROM instances WHERE state <> 'deleted' ORDER BY name").all() as InstanceRow[]).map(toInstance);
    },
    setState(name, state, reason = null) {
      sql("UPDATE instances SET state = ?, state_reason = ?, updated_at = ? WHERE name = ?").run(state, reason, now(), name);
    },
    setSpec(name, spec) {
      sql("UPDATE instances SET spec = ?, updated_at = ? WHERE name = ?").run(JSON.stringify(spec), now(), name);
    },
    setCurrentGeneration(name, generation) {
      sql("UPDATE instances SET generation = ?, updated_at = ? WHERE name = ?").run(generation, now(), name);
    },
  };
}
