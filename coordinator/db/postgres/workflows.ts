/** Durable workflows and their recorded steps. */
import type { Async, RecordedFailure, StepQueries, WorkflowQueries } from "../store.js";
import type { Sql } from "./sql.js";
import { type StepRow, type WorkflowRow, toStep, toWorkflow } from "../rows.js";

export function workflowQueries(sql: Sql, now: () => number): Async<WorkflowQueries> {
  return {
    async insert(w) {
      await sql.run(
        "INSERT INTO workflows (id, kind, instance, status, input, trigger, started_at) VALUES ($1, $2, $3, 'running', $4, $5, $6)",
        [w.id, w.kind, w.instance, JSON.stringify(w.input ?? null), w.trigger, now()],
      );
    },
    async get(id) {
      const r = await sql.row<WorkflowRow>("SELECT * FROM workflows WHERE id = $1", [id]);
      return r ? toWorkflow(r) : null;
    },
    async unfinished() {
      return (await sql.rows<WorkflowRow>("SELECT * FROM workflows WHERE status = 'running' ORDER BY started_at, id COLLATE \"C\"")).map(
        toWorkflow,
      );
    },
    async runningFor(instance) {
      return (
        await sql.rows<WorkflowRow>(
          "SELECT * FROM workflows WHERE instance = $1 AND status = 'running' ORDER BY started_at, id COLLATE \"C\"",
          [instance],
        )
      ).map(toWorkflow);
    },
    async listFor(instance) {
      return (
        await sql.rows<WorkflowRow>('SELECT * FROM workflows WHERE instance = $1 ORDER BY started_at, id COLLATE "C"', [instance])
      ).map(toWorkflow);
    },
    async finish(id, status, result, error) {
      await sql.run("UPDATE workflows SET status = $1, result = $2, error = $3, finished_at = $4 WHERE id = $5 AND status = 'running'", [
        status,
        result === undefined ? null : JSON.stringify(result),
        error,
        now(),
        id,
      ]);
    },
    async countRunning() {
      return (await sql.row<{ n: number }>("SELECT COUNT(*) AS n FROM workflows WHERE status = 'running'"))?.n ?? 0;
    },
  };
}

export function stepQueries(sql: Sql, now: () => number): Async<StepQueries> {
  return {
    async get(workflowId, seq) {
      const r = await sql.row<StepRow>("SELECT * FROM steps WHERE workflow_id = $1 AND seq = $2", [workflowId, seq]);
      return r ? toStep(r) : null;
    },
    async list(workflowId) {
      return (await sql.rows<StepRow>("SELECT * FROM steps WHERE workflow_id = $1 ORDER BY seq", [workflowId])).map(toStep);
    },
    async start(workflowId, seq, name) {
      await sql.run(
        "INSERT INTO steps (workflow_id, seq, name, status, attempts, started_at) VALUES ($1, $2, $3, 'running', 0, $4) " +
          "ON CONFLICT (workflow_id, seq) DO UPDATE SET status = 'running', next_attempt_at = NULL",
        [workflowId, seq, name, now()],
      );
    },
    async complete(workflowId, seq, result) {
      await sql.run(
        "UPDATE steps SET status = 'done', attempts = attempts + 1, result = $1, error = NULL, error_kind = NULL, error_code = NULL, " +
          "next_attempt_at = NULL, ended_at = $2 WHERE workflow_id = $3 AND seq = $4",
        [JSON.stringify(result === undefined ? null : result), now(), workflowId, seq],
      );
    },
    async scheduleRetry(workflowId, seq, f: RecordedFailure, nextAt) {
      await sql.run(
        "UPDATE steps SET status = 'pending', attempts = attempts + 1, error = $1, error_kind = $2, error_code = $3, next_attempt_at = $4 " +
          "WHERE workflow_id = $5 AND seq = $6",
        [f.message, f.kind, f.code, nextAt, workflowId, seq],
      );
    },
    async fail(workflowId, seq, f: RecordedFailure) {
      await sql.run(
        "UPDATE steps SET status = 'failed', attempts = attempts + 1, error = $1, error_kind = $2, error_code = $3, next_attempt_at = NULL, " +
          "ended_at = $4 WHERE workflow_id = $5 AND seq = $6",
        [f.message, f.kind, f.code, now(), workflowId, seq],
      );
    },
  };
}
