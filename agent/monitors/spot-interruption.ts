/**
 * Spot interruption notice: `spot/instance-action` = {"action": terminate|stop|hibernate, "time"}.
 * The deadline is the notice's own `time` (not the local clock). Hibernation starts at once, so a
 * hibernate notice has no lead time: its deadline is never later than when we saw it.
 */
import type { Imds } from "../imds/client.js";
import type { Clock } from "../../shared/clock.js";
import { noticeIdOf, parseNoticeTime, type NoticeMonitor, type NoticeObservation } from "./types.js";

const ACTIONS = new Set(["terminate", "stop", "hibernate"]);

export class SpotInterruptionMonitor implements NoticeMonitor {
  readonly kind = "spot-interruption" as const;
  constructor(
    private readonly imds: Pick<Imds, "spotInstanceAction">,
    private readonly clock: Clock,
  ) {}

  async check(): Promise<NoticeObservation | null> {
    const raw = await this.imds.spotInstanceAction();
    if (raw === null) return null;
    let body: { action?: unknown; time?: unknown };
    try {
      body = JSON.parse(raw) as typeof body;
    } catch {
      throw new Error(`spot/instance-action: is not JSON (${JSON.stringify(raw.slice(0, 200))})`);
    }
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw new Error(`spot/instance-action: must be a JSON object (${JSON.stringify(raw.slice(0, 200))})`);
    if (typeof body.action !== "string" || !ACTIONS.has(body.action)) {
      throw new Error(`spot/instance-action.action: must be terminate, stop or hibernate, got ${JSON.stringify(body.action)}`);
    }
    const time = parseNoticeTime("spot/instance-action.time", body.time);
    const observedAt = new Date(this.clock.now()).toISOString();
    const deadline = body.action === "hibernate" && Date.parse(time) > this.clock.now() ? observedAt : time;
    return {
      // Hash of the normalised payload: IMDS whitespace changes don't make a new notice.
      noticeId: noticeIdOf(this.kind, JSON.stringify({ action: body.action, time })),
      kind: this.kind,
      action: body.action,
      deadline,
      observedAt,
      raw,
    };
  }
}
