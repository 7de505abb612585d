/**
 * EventBridge events as they arrive in the interruption queue (the rule's target is the queue, so
 * the message body is the event itself). Bounded before parsing; anything that is not one of the
 * events below, in AWS's shape, is refused with a specific reason and changes nothing.
 *
 *   {"version":"0","id":"…","detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2",
 *    "account":"…","time":"2024-01-02T03:04:05Z","region":"us-east-1","resources":["arn:…"],
 *    "detail":{"instance-id":"i-…","instance-action":"terminate"}}
 */
import { z } from "zod";

/** SQS's own limit on a message body; anything larger was not sent by EventBridge. */
export const MAX_EVENT_BYTES = 256 * 1024;

export type CloudEventKind = "spot-interruption" | "rebalance" | "state-change" | "scheduled-change";

export interface CloudEvent {
  /** EventBridge's event id (the same event delivered twice keeps it). */
  id: string;
  kind: CloudEventKind;
  detailType: string;
  instanceId: string;
  /** When AWS sent the event (wall clock, ms). */
  time: number;
  /** The account and region the event says it comes from, and the resource ARNs it names (checked by intake). */
  account: string;
  region: string;
  resources: string[];
  /** spot-interruption: terminate | stop | hibernate. */
  action?: string;
  /** state-change: the instance's new EC2 state. */
  state?: string;
  /** scheduled-change: the AWS Health event type code. */
  eventTypeCode?: string;
}

export type ParseResult = { ok: true; events: CloudEvent[] } | { ok: false; reason: string };

const INSTANCE_ID = z.string().regex(/^i-[0-9a-f]{8,17}$/, { message: "is not an EC2 instance id" });
const Envelope = z.object({
  version: z.string().max(16),
  id: z.string().min(1).max(128),
  "detail-type": z.string().min(1).max(128),
  source: z.string().min(1).max(64),
  account: z.string().max(32),
  time: z.string().max(64),
  region: z.string().max(32),
  resources: z.array(z.string().max(2048)).max(100),
  detail: z.record(z.string(), z.unknown()),
});
const SpotDetail = z.object({ "instance-id": INSTANCE_ID, "instance-action": z.enum(["terminate", "stop", "hibernate"]) });
const RebalanceDetail = z.object({ "instance-id": INSTANCE_ID });
const StateDetail = z.object({
  "instance-id": INSTANCE_ID,
  state: z.enum(["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]),
});
const HealthDetail = z.object({
  service: z.string().max(64),
  eventTypeCode: z.string().max(128),
  eventTypeCategory: z.string().max(64),
  affectedEntities: z
    .array(z.object({ entityValue: z.string().max(256) }))
    .max(1000)
    .optional(),
});

function issues(err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => `${i.path.join(".") || "event"}: ${i.message}`)
    .join("; ");
}

/** One queue message body → the events it carries (AWS Health may name several instances). */
export function parseEventMessage(body: string): ParseResult {
  if (Buffer.byteLength(body) > MAX_EVENT_BYTES) return { ok: false, reason: `message body is larger than ${MAX_EVENT_BYTES} bytes` };
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { ok: false, reason: "message body is not JSON" };
  }
  const env = Envelope.safeParse(json);
  if (!env.success) return { ok: false, reason: `not an EventBridge event (${issues(env.error)})` };
  const e = env.data;
  const time = Date.parse(e.time);
  if (!Number.isFinite(time)) return { ok: false, reason: `time: ${JSON.stringify(e.time.slice(0, 40))} is not a timestamp` };
  const base = { id: e.id, detailType: e["detail-type"], time, account: e.account, region: e.region, resources: e.resources };
  const detail = <T>(schema: z.ZodType<T>): T | string => {
    const r = schema.safeParse(e.detail);
    return r.success ? r.data : `${e["detail-type"]}: ${issues(r.error)}`;
  };
  if (e.source === "aws.ec2") {
    switch (e["detail-type"]) {
      case "EC2 Spot Instance Interruption Warning": {
        const d = detail(SpotDetail);
        if (typeof d === "string") return { ok: false, reason: d };
        return { ok: true, events: [{ ...base, kind: "spot-interruption", instanceId: d["instance-id"], action: d["instance-action"] }] };
      }
      case "EC2 Instance Rebalance Recommendation": {
        const d = detail(RebalanceDetail);
        if (typeof d === "string") return { ok: false, reason: d };
        return { ok: true, events: [{ ...base, kind: "rebalance", instanceId: d["instance-id"] }] };
      }
      case "EC2 Instance State-change Notification": {
        const d = detail(StateDetail);
        if (typeof d === "string") return { ok: false, reason: d };
        return { ok: true, events: [{ ...base, kind: "state-change", instanceId: d["instance-id"], state: d.state }] };
      }
    }
  }
  if (e.source === "aws.health" && e["detail-type"] === "AWS Health Event") {
    const d = detail(HealthDetail);
    if (typeof d === "string") return { ok: false, reason: d };
    if (d.service !== "EC2" || d.eventTypeCategory !== "scheduledChange")
      return { ok: false, reason: `AWS Health event ${d.service} ${d.eventTypeCategory} is not an EC2 scheduled change` };
    const ids = [
      ...new Set(
        [...(d.affectedEntities ?? []).map((a) => a.entityValue), ...e.resources.map((r) => r.split("/").pop() ?? "")].filter(
          (v) => INSTANCE_ID.safeParse(v).success,
        ),
      ),
    ];
    if (ids.length === 0) return { ok: false, reason: "AWS Health scheduled change names no EC2 instance" };
    // One event id per instance, so each is recorded (and deduplicated) on its own.
    return {
      ok: true,
      events: ids.map((instanceId) => ({
        ...base,
        id: ids.length === 1 ? base.id : `${base.id}/${instanceId}`,
        kind: "scheduled-change" as const,
        instanceId,
        eventTypeCode: d.eventTypeCode,
      })),
    };
  }
  return { ok: false, reason: `${e.source} ${JSON.stringify(e["detail-type"])} is not an event spotkeep handles` };
}
