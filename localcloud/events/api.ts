/**
 * EventBridge's API for the rules of localcloud's bus, in the AWS JSON 1.1 protocol the
 * `@aws-sdk/client-eventbridge` speaks: POST / with `X-Amz-Target: AWSEvents.<Action>` and a JSON
 * body; errors are `{"__type", "message"}` with HTTP 400. Only ListRuleNamesByTarget: which rules
 * send to a target (an SQS queue's ARN here). Requests are bounded before parsing; signatures are
 * not checked.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import { ACCOUNT_ID, REGION } from "../world/catalog.js";
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

/** The ARN of localcloud's queue `name`, as its rules' targets are named. */
export function queueArn(name: string): string {
  return `arn:aws:sqs:${REGION}:${ACCOUNT_ID}:${name}`;
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
    b.EventBusName !== `arn:aws:events:${REGION}:${ACCOUNT_ID}:event-bus/default`
  )
    throw new EventsError("ResourceNotFoundException", `Event bus ${String(b.EventBusName).slice(0, 256)} does not exist.`);
  const limit = b.Limit === undefined ? 100 : b.Limit;
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > 100)
    throw new EventsError(
      "ValidationException",
      "1 validation error detected: Value at 'limit' failed to satisfy constraint: Member must have value between 1 and 100",
    );
  const names = [...bus.rules.values()]
    .filter((r) => queueArn(r.queue) === arn)
    .map((r) => r.name)
    .sort();
  const start = typeof b.NextToken === "string" && /^\d{1,6}$/.test(b.NextToken) ? Number(b.NextToken) : 0;
  if (b.NextToken !== undefined && (typeof b.NextToken !== "string" || !/^\d{1,6}$/.test(b.NextToken)))
    throw new EventsError("ValidationException", "The NextToken is not valid.");
  const page = names.slice(start, start + limit);
  return start + limit < names.length ? { RuleNames: page, NextToken: String(start + limit) } : { RuleNames: page };
}

export async function handleEvents(req: IncomingMessage, res: ServerResponse, bus: EventBus): Promise<void> {
  const send = (status: number, body: unknown) => {
    if (res.writableEnded || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/x-amz-json-1.1",
      "content-length": Buffer.byteLength(text),
      "x-amzn-requestid": randomUUID(),
    });
    res.end(text);
  };
  try {
    const action = String(req.headers["x-amz-target"]).slice(EVENTS_TARGET_PREFIX.length);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > MAX_BODY) throw new EventsError("ValidationException", `the request body is larger than ${MAX_BODY} bytes`);
      chunks.push(c);
    }
    if (req.method !== "POST") throw new EventsError("ValidationException", "EventBridge requests are POSTs");
    if (action !== "ListRuleNamesByTarget")
      return send(400, {
        __type: "UnknownOperationException",
        message: `localcloud's EventBridge does not implement ${action.slice(0, 64)}`,
      });
    let body: unknown;
    try {
      const text = Buffer.concat(chunks).toString("utf8");
      body = text.trim() === "" ? {} : JSON.parse(text);
    } catch {
      throw new EventsError("SerializationException", "the request body is not valid JSON");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw new EventsError("SerializationException", "the request body must be a JSON object");
    send(200, listRuleNamesByTarget(bus, body as Record<string, unknown>));
  } catch (err) {
    if (err instanceof EventsError) return send(400, { __type: err.type, message: err.message });
    send(500, { __type: "InternalException", message: (err as Error)?.message ?? String(err) });
  }
}
