/**
 * localcloud's SQS model: standard queues with visibility timeouts, redelivery, long polling and
 * SQS's own error codes. Durations and `visibleAt` are model time on the world's clock (a
 * time-scaled localcloud runs visibility timeouts and long polls faster by the same factor);
 * timestamps shown to clients are wall-clock epoch ms, as SQS shows them.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { Clock } from "../../shared/clock.js";
import { ACCOUNT_ID, DEFAULT_REGION } from "../world/catalog.js";

/** An SQS error: `type` is the JSON protocol's `__type` shape name, `queryCode` the x-amzn-query-error code. */
export class SqsError extends Error {
  constructor(
    readonly type: string,
    readonly queryCode: string,
    readonly status: number,
    message: string,
    readonly fault: "Sender" | "Receiver" = "Sender",
  ) {
    super(message);
  }
}

export const noSuchQueue = () =>
  new SqsError("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", 400, "The specified queue does not exist.");
export const invalidParameter = (message: string) => new SqsError("InvalidParameterValue", "InvalidParameterValue", 400, message);
export const missingParameter = (name: string) =>
  new SqsError("MissingParameter", "MissingParameter", 400, `The request must contain the parameter ${name}.`);
const invalidReceipt = (handle: string) =>
  new SqsError(
    "ReceiptHandleIsInvalid",
    "ReceiptHandleIsInvalid",
    404,
    `The input receipt handle "${handle.slice(0, 100)}" is not a valid receipt handle.`,
  );

const LIMITS = {
  VisibilityTimeout: [0, 43_200],
  ReceiveMessageWaitTimeSeconds: [0, 20],
  DelaySeconds: [0, 900],
  MessageRetentionPeriod: [60, 1_209_600],
  MaximumMessageSize: [1024, 262_144],
} as const;
type SettableAttribute = keyof typeof LIMITS;
const DEFAULTS: Record<SettableAttribute, number> = {
  VisibilityTimeout: 30,
  ReceiveMessageWaitTimeSeconds: 0,
  DelaySeconds: 0,
  MessageRetentionPeriod: 345_600,
  MaximumMessageSize: 262_144,
};
const READ_ONLY = [
  "ApproximateNumberOfMessages",
  "ApproximateNumberOfMessagesNotVisible",
  "ApproximateNumberOfMessagesDelayed",
  "CreatedTimestamp",
  "LastModifiedTimestamp",
  "QueueArn",
] as const;
/** The most queues and messages per queue localcloud keeps (bounded memory). */
const MAX_QUEUES = 1000;
const MAX_MESSAGES = 100_000;

interface Message {
  id: string;
  body: string;
  md5: string;
  /** Wall-clock ms (shown to clients). */
  sentAt: number;
  /** Model ms (retention). */
  sentModelAt: number;
  /** Model ms when it may be received again (delay or visibility timeout). */
  visibleAt: number;
  receiveCount: number;
  firstReceivedAt: number | null;
  /** The latest receipt handle; older ones delete nothing. */
  receipt: string | null;
  delayed: boolean;
}

export interface ReceivedMessage {
  MessageId: string;
  ReceiptHandle: string;
  MD5OfBody: string;
  Body: string;
  Attributes?: Record<string, string>;
}

export class Queue {
  readonly messages: Message[] = [];
  readonly attributes: Record<SettableAttribute, number>;
  readonly createdAt = Date.now();
  /** Long polls waiting for a message: woken on send and on change of visibility. */
  readonly waiters = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly url: string,
    attrs: Partial<Record<SettableAttribute, number>>,
    readonly region: string = DEFAULT_REGION,
  ) {
    this.attributes = { ...DEFAULTS, ...attrs };
  }

  get arn(): string {
    return `arn:aws:sqs:${this.region}:${ACCOUNT_ID}:${this.name}`;
  }

  wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

const NAME = /^[A-Za-z0-9_-]{1,80}$/;

/** Parse and range-check queue attributes given as strings (CreateQueue). */
function parseAttributes(input: Record<string, unknown> | undefined): Partial<Record<SettableAttribute, number>> {
  const out: Partial<Record<SettableAttribute, number>> = {};
  for (const [k, v] of Object.entries(input ?? {})) {
    if (!(k in LIMITS)) {
      if (k === "FifoQueue" || k === "ContentBasedDeduplication")
        throw invalidParameter(`localcloud's SQS has standard queues only (${k})`);
      throw new SqsError("InvalidAttributeName", "InvalidAttributeName", 400, `Unknown Attribute ${k}.`);
    }
    const [min, max] = LIMITS[k as SettableAttribute];
    const n = typeof v === "string" && /^\d{1,9}$/.test(v) ? Number(v) : Number.NaN;
    if (!(n >= min && n <= max))
      throw new SqsError("InvalidAttributeValue", "InvalidAttributeValue", 400, `Invalid value for the parameter ${k}.`);
    out[k as SettableAttribute] = n;
  }
  return out;
}

export class SqsService {
  readonly queues = new Map<string, Queue>();

  constructor(
    /** localcloud's model-time clock. */
    private readonly clock: Clock,
    /** http://host:port of the endpoint, known once the server listens. */
    private readonly endpoint: () => string,
    /** The region these queues are in (their ARNs). */
    readonly region: string = DEFAULT_REGION,
  ) {}

  private readonly timers = new Set<() => void>();

  /** A wake-up `ms` model ms from now; stop() cancels the ones still pending. */
  private timer(ms: number, fn: () => void): () => void {
    const cancel = this.clock.setTimer(ms, () => {
      this.timers.delete(cancel);
      fn();
    });
    this.timers.add(cancel);
    return () => {
      this.timers.delete(cancel);
      cancel();
    };
  }

  /** Cancel every pending wake-up and end every long poll. */
  stop(): void {
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    for (const q of this.queues.values()) q.wake();
    this.stopped = true;
  }

  private stopped = false;

  /** The model-time instant `seconds` from now. */
  private after(seconds: number): number {
    return this.clock.now() + seconds * 1000;
  }

  urlFor(name: string): string {
    return `${this.endpoint()}/${ACCOUNT_ID}/${name}`;
  }

  createQueue(name: string, attributes?: Record<string, unknown>): Queue {
    if (!NAME.test(name))
      throw invalidParameter(
        name.endsWith(".fifo")
          ? "localcloud's SQS has standard queues only"
          : "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
      );
    const attrs = parseAttributes(attributes);
    const existing = this.queues.get(name);
    if (existing) {
      for (const [k, v] of Object.entries(attrs))
        if (existing.attributes[k as SettableAttribute] !== v)
          throw new SqsError(
            "QueueNameExists",
            "QueueAlreadyExists",
            400,
            `A queue already exists with the same name and a different value for attribute ${k}`,
          );
      return existing;
    }
    if (this.queues.size >= MAX_QUEUES) throw new SqsError("OverLimit", "OverLimit", 403, `localcloud keeps at most ${MAX_QUEUES} queues`);
    const q = new Queue(name, this.urlFor(name), attrs, this.region);
    this.queues.set(name, q);
    return q;
  }

  byName(name: string): Queue {
    const q = this.queues.get(name);
    if (!q) throw noSuchQueue();
    return q;
  }

  /** A queue URL of this endpoint's account (any host: clients reach localcloud by several names). */
  byUrl(url: unknown): Queue {
    if (typeof url !== "string" || url === "") throw missingParameter("QueueUrl");
    let path: string;
    try {
      path = new URL(url).pathname;
    } catch {
      throw new SqsError("InvalidAddress", "InvalidAddress", 404, "The address is not valid for this endpoint.");
    }
    const m = /^\/(\d{12})\/([^/]+)\/?$/.exec(path);
    if (!m || m[1] !== ACCOUNT_ID) throw noSuchQueue();
    return this.byName(m[2]!);
  }

  deleteQueue(q: Queue): void {
    this.queues.delete(q.name);
    q.wake();
  }

  send(q: Queue, body: unknown, delaySeconds?: unknown): { MessageId: string; MD5OfMessageBody: string } {
    if (typeof body !== "string" || body.length === 0) throw missingParameter("MessageBody");
    if (Buffer.byteLength(body) > q.attributes.MaximumMessageSize)
      throw invalidParameter(
        `One or more parameters are invalid. Reason: Message must be shorter than ${q.attributes.MaximumMessageSize} bytes.`,
      );
    // SQS accepts #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the characters SQS refuses are control characters
    if (/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/.test(body))
      throw new SqsError("InvalidMessageContents", "InvalidMessageContents", 400, "Invalid binary character in the message body.");
    const delay = delaySeconds === undefined ? q.attributes.DelaySeconds : intIn("DelaySeconds", delaySeconds, 0, 900);
    if (q.messages.length >= MAX_MESSAGES)
      throw new SqsError("OverLimit", "OverLimit", 403, `localcloud keeps at most ${MAX_MESSAGES} messages per queue`);
    const m: Message = {
      id: randomUUID(),
      body,
      md5: createHash("md5").update(body, "utf8").digest("hex"),
      sentAt: Date.now(),
      sentModelAt: this.clock.now(),
      visibleAt: this.after(delay),
      receiveCount: 0,
      firstReceivedAt: null,
      receipt: null,
      delayed: delay > 0,
    };
    q.messages.push(m);
    if (delay > 0) this.timer(delay * 1000, () => q.wake());
    else q.wake();
    return { MessageId: m.id, MD5OfMessageBody: m.md5 };
  }

  /** Take up to `max` visible messages now (each becomes invisible for `visibility` model seconds). */
  private take(q: Queue, max: number, visibility: number, withAttributes: boolean): ReceivedMessage[] {
    const now = this.clock.now();
    const retention = q.attributes.MessageRetentionPeriod * 1000;
    const out: ReceivedMessage[] = [];
    for (let i = 0; i < q.messages.length && out.length < max; i++) {
      const m = q.messages[i]!;
      if (now - m.sentModelAt > retention) {
        q.messages.splice(i--, 1);
        continue;
      }
      if (m.visibleAt > now) continue;
      m.receiveCount += 1;
      m.firstReceivedAt ??= Date.now();
      m.delayed = false;
      m.receipt = `${Buffer.from(`${q.name}\n${m.id}`).toString("base64url")}.${randomBytes(18).toString("base64url")}`;
      m.visibleAt = this.after(visibility);
      if (visibility > 0) this.timer(visibility * 1000, () => q.wake());
      out.push({
        MessageId: m.id,
        ReceiptHandle: m.receipt,
        MD5OfBody: m.md5,
        Body: m.body,
        ...(withAttributes
          ? {
              Attributes: {
                ApproximateReceiveCount: String(m.receiveCount),
                SentTimestamp: String(m.sentAt),
                ApproximateFirstReceiveTimestamp: String(m.firstReceivedAt),
                SenderId: ACCOUNT_ID,
              },
            }
          : {}),
      });
    }
    return out;
  }

  /** ReceiveMessage: waits up to `waitSeconds` (model time) for a first message; `signal` ends the wait early. */
  async receive(
    q: Queue,
    o: { max?: unknown; visibility?: unknown; waitSeconds?: unknown; withAttributes: boolean },
    signal: AbortSignal,
  ): Promise<ReceivedMessage[]> {
    const max = o.max === undefined ? 1 : intIn("MaxNumberOfMessages", o.max, 1, 10);
    const visibility = o.visibility === undefined ? q.attributes.VisibilityTimeout : intIn("VisibilityTimeout", o.visibility, 0, 43_200);
    const wait = o.waitSeconds === undefined ? q.attributes.ReceiveMessageWaitTimeSeconds : intIn("WaitTimeSeconds", o.waitSeconds, 0, 20);
    let got = this.take(q, max, visibility, o.withAttributes);
    if (got.length > 0 || wait === 0) return got;
    let expired = false;
    const cancel = this.timer(wait * 1000, () => {
      expired = true;
      q.wake();
    });
    try {
      while (!expired && !signal.aborted && !this.stopped && this.queues.get(q.name) === q) {
        await new Promise<void>((resolve) => {
          const done = () => {
            q.waiters.delete(done);
            signal.removeEventListener("abort", done);
            resolve();
          };
          q.waiters.add(done);
          signal.addEventListener("abort", done, { once: true });
        });
        got = this.take(q, max, visibility, o.withAttributes);
        if (got.length > 0) return got;
      }
      return [];
    } finally {
      cancel();
    }
  }

  /** The in-flight message a receipt handle names; null when the message is gone or the handle is not its latest. */
  private byReceipt(q: Queue, handle: unknown): Message | null {
    if (typeof handle !== "string" || handle === "") throw missingParameter("ReceiptHandle");
    const [head] = handle.split(".");
    let decoded = "";
    try {
      decoded = Buffer.from(head ?? "", "base64url").toString("utf8");
    } catch {
      /* not ours */
    }
    const [queueName, id] = decoded.split("\n");
    if (queueName !== q.name || !id || !/^[A-Za-z0-9_-]{20,40}$/.test(handle.slice((head ?? "").length + 1))) throw invalidReceipt(handle);
    const m = q.messages.find((x) => x.id === id);
    return m && m.receipt === handle ? m : null;
  }

  /** DeleteMessage: a handle of a message already deleted (or re-received since) succeeds and deletes nothing, as in SQS. */
  delete(q: Queue, handle: unknown): void {
    const m = this.byReceipt(q, handle);
    if (m) q.messages.splice(q.messages.indexOf(m), 1);
  }

  changeVisibility(q: Queue, handle: unknown, seconds: unknown): void {
    const timeout = intIn("VisibilityTimeout", seconds, 0, 43_200);
    const m = this.byReceipt(q, handle);
    if (!m || m.visibleAt <= this.clock.now())
      throw new SqsError(
        "MessageNotInflight",
        "AWS.SimpleQueueService.MessageNotInflight",
        400,
        "The message referred to isn't in flight.",
      );
    m.visibleAt = this.after(timeout);
    if (timeout === 0) q.wake();
    else this.timer(timeout * 1000, () => q.wake());
  }

  attributes(q: Queue, names: unknown): Record<string, string> {
    const wanted = names === undefined ? [] : Array.isArray(names) ? names : null;
    if (!wanted || wanted.some((n) => typeof n !== "string")) throw invalidParameter("AttributeNames must be a list of attribute names");
    const now = this.clock.now();
    const all: Record<string, string> = {
      ...Object.fromEntries(Object.entries(q.attributes).map(([k, v]) => [k, String(v)])),
      ApproximateNumberOfMessages: String(q.messages.filter((m) => m.visibleAt <= now).length),
      ApproximateNumberOfMessagesNotVisible: String(q.messages.filter((m) => m.visibleAt > now && !m.delayed).length),
      ApproximateNumberOfMessagesDelayed: String(q.messages.filter((m) => m.visibleAt > now && m.delayed).length),
      CreatedTimestamp: String(Math.floor(q.createdAt / 1000)),
      LastModifiedTimestamp: String(Math.floor(q.createdAt / 1000)),
      QueueArn: q.arn,
    };
    if (wanted.includes("All")) return all;
    const out: Record<string, string> = {};
    for (const n of wanted as string[]) {
      if (!(n in all) && !(READ_ONLY as readonly string[]).includes(n))
        throw new SqsError("InvalidAttributeName", "InvalidAttributeName", 400, `Unknown Attribute ${n}.`);
      out[n] = all[n]!;
    }
    return out;
  }

  /** Drop every message (control API reset). */
  purgeAll(): void {
    for (const q of this.queues.values()) q.messages.length = 0;
  }
}

function intIn(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max)
    throw invalidParameter(
      `Value ${JSON.stringify(v)} for parameter ${name} is invalid. Reason: Must be between ${min} and ${max}, if provided.`,
    );
  return v;
}
