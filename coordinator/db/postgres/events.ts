/** The timeline and what agents reported. */
import type { AgentReportQueries, Async, EventQueries, TimelineEvent } from "../store.js";
import type { Sql } from "./sql.js";
import { type EventRow, type ReportRow, toReport } from "../rows.js";

export function eventQueries(sql: Sql, now: () => number): Async<EventQueries> {
  return {
    async add(instance, kind, message, workflowId = null) {
      await sql.run("INSERT INTO events (at, instance, kind, message, workflow_id) VALUES ($1, $2, $3, $4, $5)", [
        now(),
        instance,
        kind,
        message,
        workflowId,
      ]);
    },
    async replaceLatest(instance, kind, prefix, message, quietKinds) {
      const n = await sql.run(
        "UPDATE events SET message = $1 WHERE id = " +
          "(SELECT MAX(id) FROM events WHERE instance = $2 AND kind = $3 AND left(message, $4) = $5) " +
          "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.instance = $2 AND e.id > events.id AND NOT (e.kind = ANY($6::text[])))",
        [message, instance, kind, prefix.length, prefix, quietKinds],
      );
      return n > 0;
    },
    async list(instance, limit = 500): Promise<TimelineEvent[]> {
      const rows = await sql.rows<EventRow>("SELECT * FROM events WHERE instance = $1 ORDER BY id DESC LIMIT $2", [instance, limit]);
      return rows
        .reverse()
        .map((r) => ({ id: r.id, at: r.at, instance: r.instance, kind: r.kind, message: r.message, workflowId: r.workflow_id }));
    },
  };
}

const REPORT_COLUMNS = "instance_id, kind, ref, data, at";

export function agentReportQueries(sql: Sql, now: () => number): Async<AgentReportQueries> {
  return {
    async record(ec2InstanceId, kind, ref, data) {
      const n = await sql.run(
        "INSERT INTO agent_reports (instance_id, kind, ref, data, at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        [ec2InstanceId, kind, ref, JSON.stringify(data), now()],
      );
      return n > 0;
    },
    async get(ec2InstanceId, kind, ref = "") {
      const r = await sql.row<ReportRow>(`SELECT ${REPORT_COLUMNS} FROM agent_reports WHERE instance_id = $1 AND kind = $2 AND ref = $3`, [
        ec2InstanceId,
        kind,
        ref,
      ]);
      return r ? toReport(r) : null;
    },
    async latest(ec2InstanceId, kind) {
      const r = await sql.row<ReportRow>(
        `SELECT ${REPORT_COLUMNS} FROM agent_reports WHERE instance_id = $1 AND kind = $2 ORDER BY at DESC, row_seq DESC LIMIT 1`,
        [ec2InstanceId, kind],
      );
      return r ? toReport(r) : null;
    },
  };
}
