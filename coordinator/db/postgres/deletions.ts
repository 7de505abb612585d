/**
 * Deleted stateful instances and what their delete kept: the PostgreSQL twin of
 * coordinator/db/sqlite/deletions.ts (archive under `NAME~<deletedAt ISO>`, every referring row
 * moved in the same transaction).
 */
import type { Async, DeletionQueries } from "../store.js";
import type { Sql } from "./sql.js";
import { type InstanceRow, type KeptRow, toInstance, toKept } from "../rows.js";

/** Tables whose `instance` column names a stateful instance (instances itself is keyed by `name`). */
const REFERRING = [
  "generations",
  "volumes",
  "network",
  "root_lineage",
  "artifacts",
  "workflows",
  "events",
  "queue_events",
  "kept_resources",
  "task_runs",
  "inventories",
];

/** Who claims a resource ($1): see DeletionQueries.claims. */
const CLAIMS = `
SELECT v.instance AS instance, 'volume ' || v.device AS what FROM volumes v JOIN instances i ON i.name = v.instance
  WHERE i.state <> 'deleted' AND v.volume_id = $1
UNION ALL SELECT v.instance, 'latest snapshot of ' || v.device FROM volumes v JOIN instances i ON i.name = v.instance
  WHERE i.state <> 'deleted' AND v.latest_snapshot_id = $1
UNION ALL SELECT n.instance, 'network interface' FROM network n JOIN instances i ON i.name = n.instance
  WHERE i.state <> 'deleted' AND n.eni_id = $1
UNION ALL SELECT r.instance, 'root image' FROM root_lineage r JOIN instances i ON i.name = r.instance
  WHERE i.state <> 'deleted' AND (r.image_id = $1 OR r.snapshot_id = $1)
UNION ALL SELECT a.instance, a.kind FROM artifacts a JOIN instances i ON i.name = a.instance
  WHERE i.state <> 'deleted' AND a.deleted_at IS NULL AND a.id = $1
UNION ALL SELECT k.instance, 'kept' FROM kept_resources k
  WHERE k.resource_id = $1 AND k.deleted_at IS NULL AND k.adopted_by IS NULL`;

export function deletionQueries(sql: Sql, now: () => number): Async<DeletionQueries> {
  return {
    async archive(name, archivedAs) {
      if (!(await sql.row("SELECT 1 FROM instances WHERE name = $1", [name]))) return false;
      if (await sql.row("SELECT 1 FROM instances WHERE name = $1", [archivedAs]))
        throw new Error(`archiving ${name}: ${archivedAs} already exists`);
      // generations, volumes, network and root_lineage refer to instances(name): the checks wait for the commit.
      await sql.run("SET CONSTRAINTS ALL DEFERRED");
      await sql.run("UPDATE instances SET name = $1, updated_at = $2 WHERE name = $3", [archivedAs, now(), name]);
      for (const table of REFERRING) await sql.run(`UPDATE ${table} SET instance = $1 WHERE instance = $2`, [archivedAs, name]);
      return true;
    },
    async forgetDeleted(name, keep) {
      if (!keep.volumes) await sql.run("UPDATE volumes SET volume_id = NULL, availability_zone = NULL WHERE instance = $1", [name]);
      if (!keep.snapshots) await sql.run("UPDATE volumes SET latest_snapshot_id = NULL WHERE instance = $1", [name]);
      if (!keep.network) await sql.run("UPDATE network SET eni_id = NULL WHERE instance = $1", [name]);
      if (!keep.images) await sql.run("UPDATE root_lineage SET image_id = NULL WHERE instance = $1", [name]);
      if (!keep.images && !keep.snapshots) await sql.run("UPDATE root_lineage SET snapshot_id = NULL WHERE instance = $1", [name]);
    },
    async listDeleted() {
      return (await sql.rows<InstanceRow>("SELECT * FROM instances WHERE state = 'deleted' ORDER BY name COLLATE \"C\"")).map(toInstance);
    },
    async keep(k) {
      await sql.run(
        "INSERT INTO kept_resources (resource_id, instance, kind, workflow_id, kept_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) " +
          "ON CONFLICT (resource_id) DO UPDATE SET instance = excluded.instance, kind = excluded.kind, workflow_id = excluded.workflow_id, " +
          "kept_at = excluded.kept_at, expires_at = excluded.expires_at, sweep_started_at = NULL, deleted_at = NULL, " +
          "adopted_by = NULL, adopted_at = NULL WHERE kept_resources.adopted_by IS NOT NULL",
        [k.resourceId, k.instance, k.kind, k.workflowId, now(), k.expiresAt],
      );
    },
    async claims(resourceId) {
      return (await sql.rows<{ instance: string; what: string }>(CLAIMS, [resourceId])).map((r) => ({ instance: r.instance, as: r.what }));
    },
    async adopt(resourceId, instance) {
      return (
        (await sql.run(
          "UPDATE kept_resources SET adopted_by = $1, adopted_at = $2 WHERE resource_id = $3 AND deleted_at IS NULL AND adopted_by IS NULL",
          [instance, now(), resourceId],
        )) > 0
      );
    },
    async kept(instance) {
      return (
        await sql.rows<KeptRow>('SELECT * FROM kept_resources WHERE instance = $1 ORDER BY kind COLLATE "C", resource_id COLLATE "C"', [
          instance,
        ])
      ).map(toKept);
    },
    async due(at) {
      return (
        await sql.rows<KeptRow>(
          "SELECT * FROM kept_resources WHERE deleted_at IS NULL AND adopted_by IS NULL AND expires_at IS NOT NULL AND expires_at <= $1 " +
            'ORDER BY expires_at, resource_id COLLATE "C"',
          [at],
        )
      ).map(toKept);
    },
    async markSweeping(resourceId) {
      await sql.run("UPDATE kept_resources SET sweep_started_at = COALESCE(sweep_started_at, $1) WHERE resource_id = $2", [
        now(),
        resourceId,
      ]);
    },
    async markGone(resourceId) {
      await sql.run("UPDATE kept_resources SET deleted_at = COALESCE(deleted_at, $1) WHERE resource_id = $2", [now(), resourceId]);
    },
  };
}
