/** Scheduled tasks: when each became known and the latest due time handled, so each due time is handled once. */
import type { Async, TaskRunQueries } from "../store.js";
import type { Sql } from "./sql.js";
import { type TaskRunRow, toRun } from "../rows.js";

export function taskRunQueries(sql: Sql, now: () => number): Async<TaskRunQueries> {
  return {
    async sync(instance, taskKeys, at) {
      const keep = [...new Set(taskKeys)];
      await sql.run("DELETE FROM task_runs WHERE instance = $1 AND NOT (task_key = ANY($2::text[]))", [instance, keep]);
      for (const key of keep)
        await sql.run("INSERT INTO task_runs (instance, task_key, baseline_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", [
          instance,
          key,
          at,
        ]);
    },
    async list(instance) {
      return (await sql.rows<TaskRunRow>('SELECT * FROM task_runs WHERE instance = $1 ORDER BY task_key COLLATE "C"', [instance])).map(
        toRun,
      );
    },
    async handled(instance, taskKey, dueAt, outcome, workflowId) {
      const n = await sql.run(
        "UPDATE task_runs SET last_due_at = $1, last_outcome = $2, last_workflow_id = $3, handled_at = $4 " +
          "WHERE instance = $5 AND task_key = $6 AND (last_due_at IS NULL OR last_due_at < $1)",
        [dueAt, outcome, workflowId, now(), instance, taskKey],
      );
      return n > 0;
    },
  };
}
