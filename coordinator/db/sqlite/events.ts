/** The timeline and what agents reported. */
import type { AgentReportQueries, EventQueries, TimelineEvent } from "../store.js";
import type { Sql } from "./statements.js";
import { type EventRow, type ReportRow, toReport } from "../rows.js";

export function eventQueries(sql: Sql, now: () => number): EventQueries {
  return {
    add(instance, kind, message, workflowId = null) {
      sql("INSERT INTO events (at, instance, kind, message, workflow_id) VALUES (?, ?, ?, ?, ?)").run(
        now(),
        instance,
        kind,
        message,
        workflowId,
      );
    },
    replaceLatest(instance, kind, prefix, message, quietKinds) {
      const r = sql(
        "UPDATE events SET message = ? WHERE id = " +
          "(SELECT MAX(id) FROM events WHERE instance = ? AND kind = ? AND substr(message, 1, ?) = ?) " +
          "AND NOT EXISTS (SELECT 1 FROM events e WHERE e.instance = ? AND e.id > events.id " +
          "AND e.kind NOT IN (SELECT value FROM json_each(?)))",
      ).run(message, instance, kind, prefix.length, prefix, instance, JSON.stringify(quietKinds));
      return r.changes > 0;
    },
    list(instance, limit = 500): TimelineEvent[] {
      const rows = sql("SELECT * FROM events WHERE instance = ? ORDER BY id DESC LIMIT ?").all(instance, limit) as EventRow[];
      return rows
        .reverse()
        .map((r) => ({ id: r.id, at: r.at, instance: r.instance, kind: r.kind, message: r.message, workflowId: r.workflow_id }));
    },
  };
}

export function agentReportQueries(sql: Sql, now: () => number): AgentReportQueries {
  return {
    record(ec2InstanceId, kind, ref, data) {
      const r = sql("INSERT OR IGNORE INTO agent_reports (instance_id, kind, ref, data, at) VALUES (?, ?, ?, ?, ?)").run(
        ec2InstanceId,
        kind,
        ref,
        JSON.stringify(data),
        now(),
      );
      return r.changes > 0;
    },
    get(ec2InstanceId, kind, ref = "") {
      const r = sql("SELECT * FROM agent_reports WHERE instance_id = ? AND kind = ? AND ref = ?").get(ec2InstanceId, kind, ref) as
        | ReportRow
        | undefined;
      return r ? toReport(r) : null;
    },
    latest(ec2InstanceId, kind) {
      const r = sql("SELECT * FROM agent_reports WHERE instance_id = ? AND kind = ? ORDER BY at DESC, rowid DESC LIMIT 1").get(
        ec2InstanceId,
        kind,
      ) as ReportRow | undefined;
      return r ? toReport(r) : null;
    },
  };
}
