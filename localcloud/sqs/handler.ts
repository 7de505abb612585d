/**
 * The SQS endpoint in the AWS JSON 1.0 protocol that current `@aws-sdk/client-sqs` speaks: POST /
 * with `X-Amz-Target: AmazonSQS.<Action>` and a JSON body; errors are `{"__type", "message"}` with
 * the query-compatible `x-amzn-query-error: <code>;Sender` header the SDK maps back to its
 * exception classes. Requests are bounded before parsing; signatures are not checked.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import { invalidParameter, missingParameter, SqsError, type SqsService } from "./queues.js";

export const SQS_TARGET_PREFIX = "AmazonSQS.";
/** A batch of ten 256 KiB messages plus JSON overhead. */
const MAX_BODY = 3 * 1024 * 1024;

export function isSqsRequest(req: IncomingMessage): boolean {
  const t = req.headers["x-amz-target"];
  return typeof t === "string" && t.startsWith(SQS_TARGET_PREFIX);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY)
      throw new SqsError("RequestEntityTooLarge", "RequestEntityTooLarge", 413, `request body is larger than ${MAX_BODY} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks).toString("utf8");
}

type Body = Record<string, unknown>;
type Action = (sqs: SqsService, b: Body, signal: AbortSignal) => unknown | Promise<unknown>;

function batchEntries(b: Body): Array<Record<string, unknown>> {
  const entries = b.Entries;
  if (entries === undefined || (Array.isArray(entries) && entries.length === 0))
    throw new SqsError(
      "EmptyBatchRequest",
      "AWS.SimpleQueueService.EmptyBatchRequest",
      400,
      "There should be at least one entry in the request.",
    );
  if (!Array.isArray(entries) || entries.some((e) => typeof e !== "object" || e === null))
    throw invalidParameter("Entries must be a list of entries");
  if (entries.length > 10)
    throw new SqsError(
      "TooManyEntriesInBatchRequest",
      "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
      400,
      `Maximum number of entries per request are 10. You have sent ${entries.length}.`,
    );
  const ids = new Set<string>();
  for (const e of entries as Array<Record<string, unknown>>) {
    if (typeof e.Id !== "string" || !/^[A-Za-z0-9_-]{1,80}$/.test(e.Id))
      throw new SqsError(
        "InvalidBatchEntryId",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        400,
        "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
      );
    if (ids.has(e.Id))
      throw new SqsError("BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400, `Id ${e.Id} repeated.`);
    ids.add(e.Id);
  }
  return entries as Array<Record<string, unknown>>;
}

const ACTIONS: Record<string, Action> = {
  CreateQueue(sqs, b) {
    if (typeof b.QueueName !== "string") throw missingParameter("QueueName");
    if (b.Attributes !== undefined && (typeof b.Attributes !== "object" || b.Attributes === null))
      throw invalidParameter("Attributes must be a map");
    return { QueueUrl: sqs.createQueue(b.QueueName, b.Attributes as Record<string, unknown> | undefined).url };
  },
  GetQueueUrl(sqs, b) {
    if (typeof b.QueueName !== "string") throw missingParameter("QueueName");
    return { QueueUrl: sqs.byName(b.QueueName).url };
  },
  ListQueues(sqs, b) {
    const prefix = typeof b.QueueNamePrefix === "string" ? b.QueueNamePrefix : "";
    return { QueueUrls: [...sqs.queues.values()].filter((q) => q.name.startsWith(prefix)).map((q) => q.url) };
  },
  DeleteQueue(sqs, b) {
    sqs.deleteQueue(sqs.byUrl(b.QueueUrl));
    return {};
  },
  SendMessage(sqs, b) {
    return sqs.send(sqs.byUrl(b.QueueUrl), b.MessageBody, b.DelaySeconds);
  },
  async ReceiveMessage(sqs, b, signal) {
    const q = sqs.byUrl(b.QueueUrl);
    const names = [
      ...(Array.isArray(b.AttributeNames) ? b.AttributeNames : []),
      ...(Array.isArray(b.MessageSystemAttributeNames) ? b.MessageSystemAttributeNames : []),
    ];
    const messages = await sqs.receive(
      q,
      { max: b.MaxNumberOfMessages, visibility: b.VisibilityTimeout, waitSeconds: b.WaitTimeSeconds, withAttributes: names.length > 0 },
      signal,
    );
    return messages.length ? { Messages: messages } : {};
  },
  DeleteMessage(sqs, b) {
    sqs.delete(sqs.byUrl(b.QueueUrl), b.ReceiptHandle);
    return {};
  },
  DeleteMessageBatch(sqs, b) {
    const q = sqs.byUrl(b.QueueUrl);
    const Successful: Array<{ Id: string }> = [];
    const Failed: Array<{ Id: string; SenderFault: boolean; Code: string; Message: string }> = [];
    for (const e of batchEntries(b)) {
      try {
        sqs.delete(q, e.ReceiptHandle);
        Successful.push({ Id: e.Id as string });
      } catch (err) {
        if (!(err instanceof SqsError)) throw err;
        Failed.push({ Id: e.Id as string, SenderFault: true, Code: err.queryCode, Message: err.message });
      }
    }
    return { Successful, Failed };
  },
  ChangeMessageVisibility(sqs, b) {
    sqs.changeVisibility(sqs.byUrl(b.QueueUrl), b.ReceiptHandle, b.VisibilityTimeout);
    return {};
  },
  GetQueueAttributes(sqs, b) {
    return { Attributes: sqs.attributes(sqs.byUrl(b.QueueUrl), b.AttributeNames) };
  },
};

export async function handleSqs(req: IncomingMessage, res: ServerResponse, sqs: SqsService): Promise<void> {
  const requestId = randomUUID();
  const send = (status: number, body: unknown, extra: Record<string, string> = {}) => {
    if (res.writableEnded || res.destroyed) return;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "content-type": "application/x-amz-json-1.0",
      "content-length": Buffer.byteLength(text),
      "x-amzn-requestid": requestId,
      ...extra,
    });
    res.end(text);
  };
  // A long poll ends early when its client goes away.
  const abort = new AbortController();
  res.on("close", () => abort.abort());
  try {
    if (req.method !== "POST") throw new SqsError("InvalidAction", "InvalidAction", 400, "SQS requests are POSTs");
    const action = String(req.headers["x-amz-target"]).slice(SQS_TARGET_PREFIX.length);
    const text = await readBody(req);
    const fn = Object.hasOwn(ACTIONS, action) ? ACTIONS[action] : undefined;
    if (!fn) {
      return send(400, {
        __type: "com.amazon.coral.service#UnknownOperationException",
        message: `localcloud's SQS does not implement ${action.slice(0, 64)}`,
      });
    }
    let body: unknown;
    try {
      body = text.trim() === "" ? {} : JSON.parse(text);
    } catch {
      throw new SqsError("SerializationException", "SerializationException", 400, "the request body is not valid JSON");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalidParameter("the request body must be a JSON object");
    send(200, await fn(sqs, body as Body, abort.signal));
  } catch (err) {
    if (err instanceof SqsError)
      return send(
        err.status,
        { __type: `com.amazonaws.sqs#${err.type}`, message: err.message },
        { "x-amzn-query-error": `${err.queryCode};${err.fault}` },
      );
    send(
      500,
      { __type: "com.amazonaws.sqs#InternalError", message: (err as Error)?.message ?? String(err) },
      { "x-amzn-query-error": "InternalError;Receiver" },
    );
  }
}
