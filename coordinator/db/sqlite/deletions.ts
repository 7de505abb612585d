/**
 * Deleted stateful instances and what their delete kept. A deleted instance is archived under a
 * name no spec can use (`NAME~<deletedAt ISO>`, since `~` is not allowed in a name): its row and
 * every row that refers to it move to the archived name in one transaction, so the history stays
 * together (describe, events, status --all) and the name is free for a new create.
 */
import type { DeletionQueries, StatefulInstance } from "../store.js";
import { instanceQueries } from "./instances.js";
import type { Sql } from "./statements.js";
import { type KeptRow, toKept } from "../rows.js";

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

/** Who claims a resource (`@id`): see DeletionQueries.claims. */
const CLAIMS = `
SELECT v.instance AS instance, 'volume ' || v.device AS what FROM volumes v JOIN instances i ON i.name = v.instance
  WHERE i.state <> 'deleted' AND v.volume_id = @id
UNION ALL SELECT v.instance, 'latest snapshot of ' || v.device FROM volumes v JOIN instances i ON i.name = v.instance
  WHERE i.state <> 'deleted' AND v.latest_snapshot_id = @id
UNION ALL SELECT n.instance, 'network interface' FROM network n JOIN instances i ON i.name = n.instance
  WHERE i.state <> 'deleted' AND n.eni_id = @id
UNION ALL SELECT r.instance, 'root image' FROM root_lineage r JOIN instances i ON i.name = r.instance
  WHERE i.state <> 'deleted' AND (r.image_id = @id OR r.snapshot_id = @id)
UNION ALL SELECT a.instance, a.kind FROM artifacts a JOIN instances i ON i.name = a.instance
  WHERE i.state <> 'deleted' AND a.deleted_at IS NULL AND a.id = @id
UNION ALL SELECT k.instance, 'kept' FROM kept_resources k
  WHERE k.resource_id = @id AND k.deleted_at IS NULL AND k.adopted_by IS NULL`;

export function deletionQueries(sql: Sql, now: () => number): DeletionQueries {
  const instances = instanceQueries(sql, now);
  return {
    archive(name, archivedAs) {
      if (!sql("SELECT 1 FROM instances WHERE name = ?").get(name)) return false;
      if (sql("SELECT 1 FROM instances WHERE name = ?").get(archivedAs)) throw new Error(`archiving ${name}: ${archivedAs} already exists`);
      // generations, volumes, network and root_lineage refer to instances(name): the checks wait for the commit.
      sql("PRAGMA defer_foreign_keys = ON").run();
      sql("UPDATE instances SET name = ?, updated_at = ? WHERE name = ?").run(archivedAs, now(), name);
      for (const table of REFERRING) sql(`UPDATE ${table} SET instance = ? WHERE instance = ?`).run(archivedAs, name);
      return true;
    },
    forgetDeleted(name, keep) {
      if (!keep.volumes) sql("UPDATE volumes SET volume_id = NULL, availability_zone = NULL WHERE instance = ?").run(name);
      if (!keep.snapshots) sql("UPDATE volumes SET latest_snapshot_id = NULL WHERE instance = ?").run(name);
      if (!keep.network) sql("UPDATE network SET eni_id = NULL WHERE instance = ?").run(name);
      if (!keep.images) sql("UPDATE root_lineage SET image_id = NULL WHERE instance = ?").run(name);
      if (!keep.images && !keep.snapshots) sql("UPDATE root_lineage SET snapshot_id = NULL WHERE instance = ?").run(name);
    },
    listDeleted() {
      return (sql("SELECT name FROM instances WHERE state = 'deleted' ORDER BY name").all() as { name: string }[])
        .map((r) => instances.get(r.name))
        .filter((i): i is StatefulInstance => i !== null);
    },
    keep(k) {
      sql(
        "INSERT INTO kept_resources (resource_id, instance, kind, workflow_id, kept_at, expires_at) VALUES (?, ?, ?, ?, ?, ?) " +
          "ON CONFLICT (resource_id) DO UPDATE SET instance = excluded.instance, kind = excluded.kind, workflow_id = excluded.workflow_id, " +
          "kept_at = excluded.kept_at, expires_at = excluded.expires_at, sweep_started_at = NULL, deleted_at = NULL, " +
          "adopted_by = NULL, adopted_at = NULL WHERE kept_resources.adopted_by IS NOT NULL",
      ).run(k.resourceId, k.instance, k.kind, k.workflowId, now(), k.expiresAt);
    },
    claims(resourceId) {
      return (sql(CLAIMS).all({ id: resourceId }) as { instance: string; what: string }[]).map((r) => ({
        instance: r.instance,
        as: r.what,
      }));
    },
    adopt(resourceId, instance) {
      return (
        sql(
          "UPDATE kept_resources SET adopted_by = ?, adopted_at = ? WHERE resource_id = ? AND deleted_at IS NULL AND adopted_by IS NULL",
        ).run(instance, now(), resourceId).changes > 0
      );
    },
    kept(instance) {
      return (sql("SELECT * FROM kept_resources WHERE instance = ? ORDER BY kind, resource_id").all(instance) as KeptRow[]).map(toKept);
    },
    due(at) {
      return (
        sql(
          "SELECT * FROM kept_resources WHERE deleted_at IS NULL AND adopted_by IS NULL AND expires_at IS NOT NULL AND expires_at <= ? " +
            "ORDER BY expires_at, resource_id",
        ).all(at) as KeptRow[]
      ).map(toKept);
    },
    markSweeping(resourceId) {
      sql("UPDATE kept_resources SET sweep_started_at = COALESCE(sweep_started_at, ?) WHERE resource_id = ?").run(now(), resourceId);
    },
    markGone(resourceId) {
      sql("UPDATE kept_resources SET deleted_at = COALESCE(deleted_at, ?) WHERE resource_id = ?").run(now(), resourceId);
    },
  };
}
