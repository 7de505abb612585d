/**
 * A notice monitor watches one IMDS notice kind. `check()` returns the current notice or null
 * ("no notice": IMDS 404). The id is a hash of the payload, so the loop reports each distinct
 * notice once however often it is polled, and reports again when the payload changes.
 */
import { createHash } from "node:crypto";
import type { NoticeKind } from "../../shared/protocol.js";

export interface NoticeObservation {
  noticeId: string;
  kind: NoticeKind;
  /** spot: terminate | stop | hibernate; scheduled-event: the event code. */
  action?: string;
  /** Wall-clock ISO time the instance goes away / the event starts (from the notice itself). */
  deadline?: string;
  observedAt: string;
  /** The payload as IMDS served it. */
  raw: string;
}

export interface NoticeMonitor {
  readonly kind: NoticeKind;
  check(): Promise<NoticeObservation | null>;
}

export function noticeIdOf(kind: NoticeKind, payload: string): string {
  return `${kind}-${createHash("sha256").update(kind).update("\n").update(payload).digest("hex").slice(0, 32)}`;
}

/** ISO form of a notice time, or throws naming the field. */
export function parseNoticeTime(field: string, value: unknown): string {
  const t = typeof value === "string" ? Date.parse(value) : NaN;
  if (Number.isNaN(t)) throw new Error(`${field}: is not a time (${JSON.stringify(value)})`);
  return new Date(t).toISOString();
}
