import type { GenerationQueries } from "../store.js";
import type { Sql } from "./statements.js";
import { type GenerationRow, type InventoryRow, toGeneration, toInventory } from "../rows.js";

export function generationQueries(sql: Sql, now: () => number): GenerationQueries {
  return {
    ensure(instance, generation, workflowId) {
      sql("INSERT OR IGNORE INTO generations (instance, generation, status, workflow_id) VALUES (?, ?, 'launching', ?)").run(
        instance,
        generation,
        workflowId,
      );
    },
    recordLaunch(instance, generation, g) {
      // Another EC2 instance for the same generation (a make-before-break replacement that was not
      // ready is terminated and the generation launched again) registers a session secret of its own.
      // The carried secret is set in the same statement as the instance id, so no hello can find the
      // instance without it.
      const setCarried = g.carriedSecret === undefined ? 0 : 1;
      sql(
        "UPDATE generations SET session_secret_hash = CASE WHEN instance_id IS ? THEN session_secret_hash ELSE NULL END, " +
          "carried_secret_hash = CASE WHEN ? THEN ? ELSE carried_secret_hash END, " +
          "carried_secret_generation = CASE WHEN ? THEN ? ELSE carried_secret_generation END, " +
          "instance_id = ?, instance_type = ?, availability_zone = ?, lifecycle = ?, private_ip = ?, " +
          "launched_at = COALESCE(launched_at, ?) WHERE instance = ? AND generation = ?",
      ).run(
        g.ec2InstanceId,
        setCarried,
        g.carriedSecret?.hash ?? null,
        setCarried,
        g.carriedSecret?.generation ?? null,
        g.ec2InstanceId,
        g.instanceType,
        g.availabilityZone,
        g.market,
        g.privateIp,
        now(),
        instance,
        generation,
      );
    },
    markLive(instance, generation) {
      sql("UPDATE generations SET status = 'live', ready_at = COALESCE(ready_at, ?) WHERE instance = ? AND generation = ?").run(
        now(),
        instance,
        generation,
      );
    },
    end(instance, generation, reason) {
      sql(
        "UPDATE generations SET status = 'ended', ended_at = COALESCE(ended_at, ?), end_reason = COALESCE(end_reason, ?) " +
          "WHERE instance = ? AND generation = ?",
      ).run(now(), reason, instance, generation);
    },
    get(instance, generation) {
      const r = sql("SELECT * FROM generations WHERE instance = ? AND generation = ?").get(instance, generation) as
        | GenerationRow
        | undefined;
      return r ? toGeneration(r) : null;
    },
    byEc2InstanceId(ec2InstanceId) {
      const r = sql("SELECT * FROM generations WHERE instance_id = ?").get(ec2InstanceId) as GenerationRow | undefined;
      return r ? toGeneration(r) : null;
    },
    list(instance) {
      return (sql("SELECT * FROM generations WHERE instance = ? ORDER BY generation").all(instance) as GenerationRow[]).map(toGeneration);
    },
    live() {
      return (
        sql(
          "SELECT g.* FROM generations g JOIN instances i ON i.name = g.instance AND i.generation = g.generation " +
            "WHERE g.status = 'live' AND g.instance_id IS NOT NULL AND i.state = 'running' ORDER BY g.instance, g.generation",
        ).all() as GenerationRow[]
      ).map(toGeneration);
    },
    registerSessionSecret(ec2InstanceId, hash) {
      sql("UPDATE generations SET session_secret_hash = ? WHERE instance_id = ? AND session_secret_hash IS NULL").run(hash, ec2InstanceId);
      const r = sql("SELECT session_secret_hash FROM generations WHERE instance_id = ?").get(ec2InstanceId) as
        | { session_secret_hash: string | null }
        | undefined;
      return r?.session_secret_hash === hash;
    },
    recordInventory(instance, generation, ec2InstanceId, data, raised) {
      sql(
        "INSERT INTO inventories (instance, generation, instance_id, received_at, body, raised) VALUES (?, ?, ?, ?, ?, ?) " +
          "ON CONFLICT (instance, generation) DO UPDATE SET instance_id = excluded.instance_id, received_at = excluded.received_at, " +
          "body = excluded.body, raised = excluded.raised",
      ).run(instance, generation, ec2InstanceId, now(), JSON.stringify(data), JSON.stringify(raised));
    },
    inventory(instance, generation) {
      const r = sql("SELECT * FROM inventories WHERE instance = ? AND generation = ?").get(instance, generation) as
        | InventoryRow
        | undefined;
      return r ? toInventory(r) : null;
    },
  };
}
