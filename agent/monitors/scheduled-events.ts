/**
 * Scheduled maintenance: `events/maintenance/scheduled` = JSON array (`[]` when none). Only
 * `active` events matter. All active events form ONE notice (id = hash of the sorted active set,
 * so a new or changed event is reported again); action and deadline are the earliest event's code
 * and NotBefore ("21 Jan 2019 09:00:43 GMT" layout).
 */
import type { Imds } from "../imds/client.js";
import type { Clock } from "../../shared/clock.js";
import { noticeIdOf, parseNoticeTime, type NoticeMonitor, type NoticeObservation } from "./types.js";

interface ScheduledEvent {
  Code?: unknown;
  State?: unknown;
  EventId?: unknown;
  NotBefore?: unknown;
}

export class ScheduledEventsMonitor implements NoticeMonitor {
  readonly kind = "scheduled-event" as const;
  constructor(
    private readonly imds: Pick<Imds, "scheduledEvents">,
    private readonly clock: Clock,
  ) {}

  async check(): Promise<NoticeObservation | null> {
    const raw = await this.imds.scheduledEvents();
    if (raw === null || raw.trim() === "") return null;
    let events: unknown;
    try {
      events = JSON.parse(raw);
    } catch {
      throw new Error(`events/maintenance/scheduled: is not JSON (${JSON.stringify(raw.slice(0, 200))})`);
    }
    if (!Array.isArray(events)) throw new Error("events/maintenance/scheduled: must be a JSON array");
    const active = (events as ScheduledEvent[])
      .filter((e) => e && e.State === "active")
      .map((e, i) => ({
        code: String(e.Code ?? "unknown"),
        eventId: String(e.EventId ?? i),
        notBefore: parseNoticeTime(`events/maintenance/scheduled[${i}].NotBefore`, e.NotBefore),
      }))
      .sort((a, b) => a.notBefore.localeCompare(b.notBefore) || a.eventId.localeCompare(b.eventId));
    const first = active[0];
    if (!first) return null;
    return {
      noticeId: noticeIdOf(this.kind, JSON.stringify(active)),
      kind: this.kind,
      action: first.code,
      deadline: first.notBefore,
      observedAt: new Date(this.clock.now()).toISOString(),
      raw,
    };
  }
}
