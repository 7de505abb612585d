/** Events taken from the interruption queue, and the first arrival of each notice per source. */
import type { NoticeArrival, NoticeArrivalQueries, NoticeSource, QueueEventQueries } from "../store.js";
import type { Sql } from "./statements.js";
import { type ArrivalRow, type QueueEventRow, toEvent } from "../rows.js";

export function queueEventQueries(sql: Sql, now: () => number): QueueEventQueries {
  return {
    record(e) {
      const r = sql(
        "INSERT OR IGNORE INTO queue_events (event_id, kind, ec2_instance_id, instance, data, received_at) VALUES (?, ?, ?, ?, ?, ?)",
      ).run(e.eventId, e.kind, e.ec2InstanceId, e.instance, JSON.stringify(e.data), now());
      return r.changes > 0;
    },
    get(eventId) {
      const r = sql("SELECT * FROM queue_events WHERE event_id = ?").get(eventId) as QueueEventRow | undefined;
      return r ? toEvent(r) : null;
    },
    markHandled(eventId, outcome) {
      sql("UPDATE queue_events SET handled_at = ?, outcome = ? WHERE event_id = ? AND handled_at IS NULL").run(now(), outcome, eventId);
    },
  };
}

export function noticeArrivalQueries(sql: Sql, now: () => number): NoticeArrivalQueries {
  return {
    record(ec2InstanceId, kind, source) {
      const r = sql("INSERT OR IGNORE INTO notice_arrivals (ec2_instance_id, kind, source, at) VALUES (?, ?, ?, ?)").run(
        ec2InstanceId,
        kind,
        source,
        now(),
      );
      return r.changes > 0;
    },
    list(ec2InstanceId, kind): NoticeArrival[] {
      const rows = sql("SELECT * FROM notice_arrivals WHERE ec2_instance_id = ? AND kind = ? ORDER BY at, source").all(
        ec2InstanceId,
        kind,
      ) as ArrivalRow[];
      return rows.map((r) => ({ ec2InstanceId: r.ec2_instance_id, kind: r.kind, source: r.source as NoticeSource, at: r.at }));
    },
  };
}
