/** Generations: the EC2 instances that served a stateful instance. */
import type { Async, GenerationQueries } from "../store.js";
import type { Sql } from "./sql.js";
import { type GenerationRow, type InventoryRow, toGeneration, toInventory } from "../rows.js";

export function generationQueries(sql: Sql, now: () => number): Async<GenerationQueries> {
  return {
    async ensure(instance, generation, workflowId) {
      await sql.run(
        "INSERT INTO generations (instance, generation, status, workflow_id) VALUES ($1, $2, 'launching', $3) ON CONFLICT DO NOTHING",
        [instance, generation, workflowId],
      );
    },
    async recordLaunch(instance, generation, g) {
      // Another EC2 instance for the same generation (a make-before-break replacement that was not
      // ready is terminated and the generation launched again) registers a session secret of its own.
      // The carried secret is set in the same statement as the instance id, so no hello can find the
      // instance without it.
      await sql.run(
        "UPDATE generations SET session_secret_hash = CASE WHEN instance_id IS NOT DISTINCT FROM $1 THEN session_secret_hash ELSE NULL END, " +
          "carried_secret_hash = CASE WHEN $9::boolean THEN $10::text ELSE carried_secret_hash END, " +
          "carried_secret_generation = CASE WHEN $9::boolean THEN $11::integer ELSE carried_secret_generation END, " +
          "instance_id = $1, instance_type = $2, availability_zone = $3, lifecycle = $4, private_ip = $5, " +
          "launched_at = COALESCE(launched_at, $6) WHERE instance = $7 AND generation = $8",
        [
          g.ec2InstanceId,
          g.instanceType,
          g.availabilityZone,
          g.market,
          g.privateIp,
          now(),
          instance,
          generation,
          g.carriedSecret !== undefined,
          g.carriedSecret?.hash ?? null,
          g.carriedSecret?.generation ?? null,
        ],
      );
    },
    async markLive(instance, generation) {
      await sql.run("UPDATE generations SET status = 'live', ready_at = COALESCE(ready_at, $1) WHERE instance = $2 AND generation = $3", [
        now(),
        instance,
        generation,
      ]);
    },
    async end(instance, generation, reason) {
      await sql.run(
        "UPDATE generations SET status = 'ended', ended_at = COALESCE(ended_at, $1), end_reason = COALESCE(end_reason, $2) " +
          "WHERE instance = $3 AND generation = $4",
        [now(), reason, instance, generation],
      );
    },
    async get(instance, generation) {
      const r = await sql.row<GenerationRow>("SELECT * FROM generations WHERE instance = $1 AND generation = $2", [instance, generation]);
      return r ? toGeneration(r) : null;
    },
    async byEc2InstanceId(ec2InstanceId) {
      const r = await sql.row<GenerationRow>("SELECT * FROM generations WHERE instance_id = $1", [ec2InstanceId]);
      return r ? toGeneration(r) : null;
    },
    async list(instance) {
      return (await sql.rows<GenerationRow>("SELECT * FROM generations WHERE instance = $1 ORDER BY generation", [instance])).map(
        toGeneration,
      );
    },
    async live() {
      return (
        await sql.rows<GenerationRow>(
          "SELECT g.* FROM generations g JOIN instances i ON i.name = g.instance AND i.generation = g.generation " +
            "WHERE g.status = 'live' AND g.instance_id IS NOT NULL AND i.state = 'running' ORDER BY g.instance COLLATE \"C\", g.generation",
        )
      ).map(toGeneration);
    },
    async registerSessionSecret(ec2InstanceId, hash) {
      await sql.run("UPDATE generations SET session_secret_hash = $1 WHERE instance_id = $2 AND session_secret_hash IS NULL", [
        hash,
        ec2InstanceId,
      ]);
      const r = await sql.row<{ session_secret_hash: string | null }>(
        "SELECT session_secret_hash FROM generations WHERE instance_id = $1",
        [ec2InstanceId],
      );
      return r?.session_secret_hash === hash;
    },
    async recordInventory(instance, generation, ec2InstanceId, data, raised) {
      await sql.run(
        "INSERT INTO inventories (instance, generation, instance_id, received_at, body, raised) VALUES ($1, $2, $3, $4, $5, $6) " +
          "ON CONFLICT (instance, generation) DO UPDATE SET instance_id = excluded.instance_id, received_at = excluded.received_at, " +
          "body = excluded.body, raised = excluded.raised",
        [instance, generation, ec2InstanceId, now(), JSON.stringify(data), JSON.stringify(raised)],
      );
    },
    async inventory(instance, generation) {
      const r = await sql.row<InventoryRow>("SELECT * FROM inventories WHERE instance = $1 AND generation = $2", [instance, generation]);
      return r ? toInventory(r) : null;
    },
  };
}
