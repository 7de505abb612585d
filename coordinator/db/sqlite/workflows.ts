/** Durable workflows and their recorded steps. */
import type { RecordedFailure, StepQueries, WorkflowQueries } from "../store.js";
import type { Sql } from "./statements.js";
import { type StepRow, type WorkflowRow, toStep, toWorkflow } from "../rows.js";

export function workflowQueries(sql: Sql, now: () => number): WorkflowQueries {
  return {
    insert(w) {
      sql("INSERT INTO workflows (id, kind, instance, status, input, trigger, started_at) VALUES (?, ?, ?, 'running', ?, ?, ?)").run(
        w.id,
        w.kind,
        w.instance,
        JSON.stringify(w.input ?? null),
        w.trigger,
        now(),
      );
    },
    get(id) {
      const r = sql("SELECT * FROM workflows WHERE id = ?").get(id) as WorkflowRow | undefined;
      return r ? toWorkflow(r) : null;
    },
    unfinished() {
      return (sql("SELECT * FROM workflows WHERE status = 'running' ORDER BY started_at, id").all() as WorkflowRow[]).map(toWorkflow);
    },
    runningFor(instance) {
      return (
        sql("SELECT * FROM workflows WHERE instance = ? AND status = 'running' ORDER BY started_at, id").all(instance) as WorkflowRow[]
      ).map(toWorkflow);
    },
    listFor(instance) {
      return (sql("SELECT * FROM workflows WHERE instance = ? ORDER BY started_at, id").all(instance) as WorkflowRow[]).map(toWorkflow);
    },
    finish(id, status, result, error) {
      sql("UPDATE workflows SET status = ?, result = ?, error = ?, finished_at = ? WHERE id = ? AND status = 'running'").run(
        status,
        result === undefined ? null : JSON.stringify(result),
        error,
        now(),
        id,
      );
    },
    countRunning() {
      return (sql("SELECT COUNT(*) AS n FROM workflows WHERE status = 'running'").get() as { n: number }).n;
    },
  };
}

export function stepQueries(sql: Sql, now: () => number): StepQueries {
  return {
    get(workflowId, seq) {
      const r = sql("SELECT * FROM steps WHERE workflow_id = ? AND seq = ?").get(workflowId, seq) as StepRow | undefined;
      return r ? toStep(r) : null;
    },
    list(workflowId) {
      return (sql("SELECT * FROM steps WHERE workflow_id = ? ORDER BY seq").all(workflowId) as StepRow[]).map(toStep);
    },
    start(workflowId, seq, name) {
      sql(
        "INSERT INTO steps (workflow_id, seq, name, status, attempts, started_at) VALUES (?, ?, ?, 'running', 0, ?) " +
          "ON CONFLICT(workflow_id, seq) DO UPDATE SET status = 'running', next_attempt_at = NULL",
      ).run(workflowId, seq, name, now());
    },
    complete(workflowId, seq, result) {
      sql(
        "UPDATE steps SET status = 'done', attempts = attempts + 1, result = ?, error = NULL, error_kind = NULL, error_code = NULL, " +
          "next_attempt_at = NULL, ended_at = ? WHERE workflow_id = ? AND seq = ?",
      ).run(JSON.stringify(result === undefined ? null : result), now(), workflowId, seq);
    },
    scheduleRetry(workflowId, seq, f: RecordedFailure, nextAt) {
      sql(
        "UPDATE steps SET status = 'pending', attempts = attempts + 1, error = ?, error_kind = ?, error_code = ?, next_attempt_at = ? " +
          "WHERE workflow_id = ? AND seq = ?",
      ).run(f.message, f.kind, f.code, nextAt, workflowId, seq);
    },
    fail(workflowId, seq, f: RecordedFailure) {
      sql(
        "UPDATE steps SET status = 'failed', attempts = attempts + 1, error = ?, error_kind = ?, error_code = ?, next_attempt_at = NULL, " +
          "ended_at = ? WHERE workflow_id = ? AND seq = ?",
      ).run(f.message, f.kind, f.code, now(), workflowId, seq);
    },
  };
}
