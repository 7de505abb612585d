/** Rebalance recommendation: `events/recommendations/rebalance` = {"noticeTime"}; no deadline (a risk signal). */
import type { Imds } from "../imds/client.js";
import type { Clock } from "../../shared/clock.js";
import { noticeIdOf, parseNoticeTime, type NoticeMonitor, type NoticeObservation } from "./types.js";

export class RebalanceMonitor implements NoticeMonitor {
  readonly kind = "rebalance" as const;
  constructor(
    private readonly imds: Pick<Imds, "rebalanceRecommendation">,
    private readonly clock: Clock,
  ) {}

  async check(): Promise<NoticeObservation | null> {
    const raw = await this.imds.rebalanceRecommendation();
    if (raw === null) return null;
    let body: { noticeTime?: unknown };
    try {
      body = JSON.parse(raw) as typeof body;
    } catch {
      throw new Error(`events/recommendations/rebalance: is not JSON (${JSON.stringify(raw.slice(0, 200))})`);
    }
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw new Error(`events/recommendations/rebalance: must be a JSON object (${JSON.stringify(raw.slice(0, 200))})`);
    const noticeTime = parseNoticeTime("events/recommendations/rebalance.noticeTime", body.noticeTime);
    return { noticeId: noticeIdOf(this.kind, noticeTime), kind: this.kind, observedAt: new Date(this.clock.now()).toISOString(), raw };
  }
}
