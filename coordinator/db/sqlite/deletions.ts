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
];

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
        "INSERT OR IGNORE INTO kept_resources (resource_id, instance, kind, workflow_id, kept_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
      ).run(k.resourceId, k.instance, k.kind, k.workflowId, now(), k.expiresAt);
    },
    kept(instance) {
      return (sql("SELECT * FROM kept_resources WHERE instance = ? ORDER BY kind, resource_id").all(instance) as KeptRow[]).map(toKept);
    },
    due(at) {
      return (
        sql(
          "SELECT * FROM kept_resources WHERE deleted_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, resource_id",
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
