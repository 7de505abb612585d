/**
 * What localcloud's services in AWS's JSON protocols (KMS, EventBridge: `application/x-amz-json-1.1`)
 * share: the response with its request id, and the request body read as a JSON object within a cap.
 * Each service keeps its own actions and its own error type.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

/** Sends `body` as JSON with AWS's request-id header; nothing once the response has ended. */
export function jsonSender(res: ServerResponse, contentType = "application/x-amz-json-1.1"): (status: number, body: unknown) => void {
  return (status, body) => {
    if (res.writableEnded || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(text), "x-amzn-requestid": randomUUID() });
    res.end(text);
  };
}

/**
 * The POST body as a JSON object (empty: `{}`), read up to `maxBytes`. Refusals go through `fail`
 * with AWS's error types: ValidationException (too large, not a POST), SerializationException (not
 * JSON, not an object).
 */
export async function readJsonObject(
  req: IncomingMessage,
  o: { maxBytes: number; service: string; fail: (type: string, message: string) => Error },
): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > o.maxBytes) throw o.fail("ValidationException", `the request body is larger than ${o.maxBytes} bytes`);
    chunks.push(c);
  }
  if (req.method !== "POST") throw o.fail("ValidationException", `${o.service} requests are POSTs`);
  let body: unknown;
  try {
    const text = Buffer.concat(chunks).toString("utf8");
    body = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    throw o.fail("SerializationException", "the request body is not valid JSON");
  }
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw o.fail("SerializationException", "the request body must be a JSON object");
  return body as Record<string, unknown>;
}
