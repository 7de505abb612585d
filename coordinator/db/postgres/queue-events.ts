/** Events taken from the interruption queue, and the first arrival of each notice per source. */
import type { Async, NoticeArrival, NoticeArrivalQueries, NoticeSource, QueueEventQueries } from "../store.js";
import type { Sql } from "./sql.js";
import { type ArrivalRow, type QueueEventRow, toEvent } from "../rows.js";

export function queueEventQueries(sql: Sql, now: () => number): Async<QueueEventQueries> {
  return {
    async record(e) {
      const n = await sql.run(
        "INSERT INTO queue_events (event_id, kind, ec2_instance_id, instance, data, received_at) VALUES ($1, $2, $3, $4, $5, $6) " +
          "ON CONFLICT (event_id) DO NOTHING",
        [e.eventId, e.kind, e.ec2InstanceId, e.instance, JSON.stringify(e.data), now()],
      );
      return n > 0;
    },
    async get(eventId) {
      const r = await sql.row<QueueEventRow>("SELECT * FROM queue_events WHERE event_id = $1", [eventId]);
      return r ? toEvent(r) : null;
    },
    async markHandled(eventId, outcome) {
      await sql.run("UPDATE queue_events SET handled_at = $1, outcome = $2 WHERE event_id = $3 AND handled_at IS NULL", [
        now(),
        outcome,
        eventId,
      ]);
    },
  };
}

export function noticeArrivalQueries(sql: Sql, now: () => number): Async<NoticeArrivalQueries> {
  return {
    async record(ec2InstanceId, kind, source) {
      const n = await sql.run(
        "INSERT INTO notice_arrivals (ec2_instance_id, kind, source, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        [ec2InstanceId, kind, source, now()],
      );
      return n > 0;
    },
    async list(ec2InstanceId, kind): Promise<NoticeArrival[]> {
      const rows = await sql.rows<ArrivalRow>(
        'SELECT * FROM notice_arrivals WHERE ec2_instance_id = $1 AND kind = $2 ORDER BY at, source COLLATE "C"',
        [ec2InstanceId, kind],
      );
      return rows.map((r) => ({ ec2InstanceId: r.ec2_instance_id, kind: r.kind, source: r.source as NoticeSource, at: r.at }));
    },
  };
}
