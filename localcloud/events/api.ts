/**
 * EventBridge's API for the rules of localcloud's bus, in the AWS JSON 1.1 protocol the
 * `@aws-sdk/client-eventbridge` speaks: POST / with `X-Amz-Target: AWSEvents.<Action>` and a JSON
 * body; errors are `{"__type", "message"}` with HTTP 400. Only ListRuleNamesByTarget: which rules
 * send to a target (an SQS queue's ARN here). Requests are bounded before parsing; signatures are
 * not checked.
 */
import { jsonSender, readJsonObject } from "../json-api.js";
import type { IncomingMessage, ServerResponse } from "node:http";
import { ACCOUNT_ID, DEFAULT_REGION } from "../world/catalog.js";
import type { EventBus } from "./bus.js";

export const EVENTS_TARGET_PREFIX = "AWSEvents.";
const MAX_BODY = 64 * 1024;

export function isEventsRequest(req: IncomingMessage): boolean {
  const t = req.headers["x-amz-target"];
  return typeof t === "string" && t.startsWith(EVENTS_TARGET_PREFIX);
}

class EventsError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

/** The ARN of localcloud's queue `name` in `region`, as its rules' targets are named. */
export function queueArn(name: string, region: string = DEFAULT_REGION): string {
  return `arn:aws:sqs:${region}:${ACCOUNT_ID}:${name}`;
}

function listRuleNamesByTarget(bus: EventBus, b: Record<string, unknown>): { RuleNames: string[]; NextToken?: string } {
  const arn = b.TargetArn;
  if (typeof arn !== "string" || arn.length < 1 || arn.length > 1600)
    throw new EventsError(
      "ValidationException",
      "1 validation error detected: Value at 'targetArn' failed to satisfy constraint: Member must have length between 1 and 1600",
    );
  if (
    b.EventBusName !== undefined &&
    b.EventBusName !== "default" &&
    b.EventBusName !== `arn:aws:events:${bus.region}:${ACCOUNT_ID}:event-bus/default`
  )
    throw new EventsError("ResourceNotFoundException", `Event bus ${String(b.EventBusName).slice(0, 256)} does not exist.`);
  const limit = b.Limit === undefined ? 100 : b.Limit;
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > 100)
    throw new EventsError(
      "ValidationException",
      "1 validation error detected: Value at 'limit' failed to satisfy constraint: Member must have value between 1 and 100",
    );
  const names = [...bus.rules.values()]
    .filter((r) => queueArn(r.queue, bus.region) === arn)
    .map((r) => r.name)
    .sort();
  const start = typeof b.NextToken === "string" && /^\d{1,6}$/.test(b.NextToken) ? Number(b.NextToken) : 0;
  if (b.NextToken !== undefined && (typeof b.NextToken !== "string" || !/^\d{1,6}$/.test(b.NextToken)))
    throw new EventsError("ValidationException", "The NextToken is not valid.");
  const page = names.slice(start, start + limit);
  return start + limit < names.length ? { RuleNames: page, NextToken: String(start + limit) } : { RuleNames: page };
}

export async function handleEvents(req: IncomingMessage, res: ServerResponse, bus: EventBus): Promise<void> {
  const send = jsonSender(res);
  try {
    const action = String(req.headers["x-amz-target"]).slice(EVENTS_TARGET_PREFIX.length);
    const body = await readJsonObject(req, {
      maxBytes: MAX_BODY,
      service: "EventBridge",
      fail: (type, message) => new EventsError(type, message),
    });
    if (action !== "ListRuleNamesByTarget")
      return send(400, {
        __type: "UnknownOperationException",
        message: `localcloud's EventBridge does not implement ${action.slice(0, 64)}`,
      });
    send(200, listRuleNamesByTarget(bus, body));
  } catch (err) {
    if (err instanceof EventsError) return send(400, { __type: err.type, message: err.message });
    send(500, { __type: "InternalException", message: (err as Error)?.message ?? String(err) });
  }
}
