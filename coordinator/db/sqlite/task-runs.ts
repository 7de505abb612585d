/** Scheduled tasks: when each became known and the latest due time handled, so each due time is handled once. */
import type { TaskRunQueries } from "../store.js";
import type { Sql } from "./statements.js";
import { type TaskRunRow, toRun } from "../rows.js";

export function taskRunQueries(sql: Sql, now: () => number): TaskRunQueries {
  return {
    sync(instance, taskKeys, at) {
      const keep = new Set(taskKeys);
      for (const r of sql("SELECT task_key FROM task_runs WHERE instance = ?").all(instance) as { task_key: string }[])
        if (!keep.has(r.task_key)) sql("DELETE FROM task_runs WHERE instance = ? AND task_key = ?").run(instance, r.task_key);
      for (const key of keep)
        sql("INSERT OR IGNORE INTO task_runs (instance, task_key, baseline_at) VALUES (?, ?, ?)").run(instance, key, at);
    },
    list(instance) {
      return (sql("SELECT * FROM task_runs WHERE instance = ? ORDER BY task_key").all(instance) as TaskRunRow[]).map(toRun);
    },
    handled(instance, taskKey, dueAt, outcome, workflowId) {
      const r = sql(
        `UPDATE task_runs SET last_due_at = ?, last_outcome = ?, last_workflow_id = ?, handled_at = ?
         WHERE instance = ? AND task_key = ? AND (last_due_at IS NULL OR last_due_at < ?)`,
      ).run(dueAt, outcome, workflowId, now(), instance, taskKey, dueAt);
      return r.changes > 0;
    },
  };
}
