import type { Async, InstanceQueries } from "../store.js";
import type { Sql } from "./sql.js";
import { type InstanceRow, toInstance } from "../rows.js";

export function instanceQueries(sql: Sql, now: () => number): Async<InstanceQueries> {
  return {
    async insert(name, spec, state) {
      const t = now();
      await sql.run("INSERT INTO instances (name, spec, state, generation, created_at, updated_at) VALUES ($1, $2, $3, 0, $4, $5)", [
        name,
        JSON.stringify(spec),
        state,
        t,
        t,
      ]);
    },
    async get(name) {
      const r = await sql.row<InstanceRow>("SELECT * FROM instances WHERE name = $1", [name]);
      return r ? toInstance(r) : null;
    },
    async list() {
      return (await sql.rows<InstanceRow>("SELECT * FROM instances WHERE state <> 'deleted' ORDER BY name COLLATE \"C\"")).map(toInstance);
    },
    async setState(name, state, reason = null) {
      await sql.run("UPDATE instances SET state = $1, state_reason = $2, updated_at = $3 WHERE name = $4", [state, reason, now(), name]);
    },
    async setSpec(name, spec) {
      await sql.run("UPDATE instances SET spec = $1, updated_at = $2 WHERE name = $3", [JSON.stringify(spec), now(), name]);
    },
    async setCurrentGeneration(name, generation) {
      await sql.run("UPDATE instances SET generation = $1, updated_at = $2 WHERE name = $3", [generation, now(), name]);
    },
  };
}
