/**
 * The HTTP exchange with IMDS, through @smithy/node-http-handler's NodeHttpHandler, bounded:
 *  - ONE handler and ONE keep-alive connection (an http.Agent with maxSockets 1): every exchange
 *    reuses it, and concurrent exchanges queue for it;
 *  - every body is capped in bytes: a Content-Length over the cap is refused before reading, and a
 *    body that grows past it is cut off (the connection is destroyed), never buffered whole;
 *  - every exchange is capped in total time from when it is issued (waiting for the connection,
 *    connecting, headers and body), not only while the socket is idle: the handler's own
 *    connection and request timeouts end at the response headers, so an abort signal bounds the rest.
 */
import { Agent } from "node:http";
import type { IncomingMessage } from "node:http";
import { HttpRequest } from "@smithy/core/protocols";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { safeTimeout } from "../../shared/clock.js";

export interface ImdsResponse {
  status: number;
  body: string;
}

/** Why an exchange failed without an HTTP status, as a code (never decided on message text). */
export type ImdsFailure = "body-too-large" | "timeout" | "network";

export class ImdsTransportError extends Error {
  override name = "ImdsTransportError";
  constructor(
    message: string,
    readonly code: ImdsFailure,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface ImdsExchange {
  method: "GET" | "PUT";
  path: string;
  headers: Record<string, string>;
  /** Largest body read (bytes); a larger one fails with "body-too-large". */
  maxBytes: number;
}

export interface ImdsHttpOptions {
  /** http://host[:port], no path. */
  endpoint: string;
  /** Whole exchange, real ms: waiting for the connection, connecting, headers and body. */
  timeoutMs: number;
}

/**
 * The handler warns through its logger when exchanges queue for the connection; queueing for the
 * one connection is the design here, and every failure is returned as an error, so it says nothing.
 */
const quietLogger = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

export class ImdsHttp {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
  private readonly handler: NodeHttpHandler;
  private readonly base: URL;
  private readonly timeoutMs: number;

  constructor(o: ImdsHttpOptions) {
    this.base = new URL(o.endpoint);
    if (this.base.protocol !== "http:") throw new Error(`IMDS endpoint ${JSON.stringify(o.endpoint)} is not an http:// URL`);
    this.timeoutMs = o.timeoutMs;
    this.handler = new NodeHttpHandler({
      httpAgent: this.agent,
      connectionTimeout: o.timeoutMs,
      requestTimeout: o.timeoutMs,
      throwOnRequestTimeout: true,
      logger: quietLogger,
    });
  }

  async exchange(x: ImdsExchange): Promise<ImdsResponse> {
    const what = `${x.method} ${x.path}`;
    const deadline = new AbortController();
    const cancelTimer = safeTimeout(this.timeoutMs, () => deadline.abort());
    const timedOut = () => new ImdsTransportError(`${what}: no complete answer within ${this.timeoutMs} ms`, "timeout");
    try {
      const request = new HttpRequest({
        protocol: this.base.protocol,
        hostname: this.base.hostname,
        ...(this.base.port ? { port: Number(this.base.port) } : {}),
        method: x.method,
        path: x.path,
        headers: { ...x.headers },
      });
      let response: Awaited<ReturnType<NodeHttpHandler["handle"]>>["response"];
      try {
        ({ response } = await this.handler.handle(request, { abortSignal: deadline.signal }));
      } catch (err) {
        if (deadline.signal.aborted || handlerTimedOut(err)) throw timedOut();
        throw new ImdsTransportError(`${what}: ${(err as Error).message}`, "network", { cause: err });
      }
      const body = await readBounded(response.body as IncomingMessage, response.headers["content-length"], x.maxBytes, deadline.signal, {
        tooLarge: (n) =>
          new ImdsTransportError(`${what}: body of ${n} bytes or more exceeds the ${x.maxBytes}-byte limit`, "body-too-large"),
        timedOut,
        broken: (err) => new ImdsTransportError(`${what}: ${err.message}`, "network", { cause: err }),
      });
      return { status: response.statusCode, body };
    } finally {
      cancelTimer();
    }
  }

  /** Close the kept-alive connection. */
  close(): void {
    this.handler.destroy();
  }
}

/**
 * Whether the handler gave up on its own connection or request timeout. It also names a reset or
 * broken connection (ECONNRESET, EPIPE) a "TimeoutError": those are network failures here.
 */
function handlerTimedOut(err: unknown): boolean {
  const e = err as { name?: unknown; code?: unknown };
  return e?.name === "TimeoutError" && e.code !== "ECONNRESET" && e.code !== "EPIPE";
}

/**
 * Reads `res` to its end as UTF-8, at most `maxBytes`: a declared or actual length over it, or the
 * deadline, destroys the response (and with it the connection) and fails; nothing past the cap is kept.
 */
function readBounded(
  res: IncomingMessage,
  contentLength: string | undefined,
  maxBytes: number,
  deadline: AbortSignal,
  errors: { tooLarge: (n: number) => Error; timedOut: () => Error; broken: (err: Error) => Error },
): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let settled = false;
    const settle = (err: Error | null, body = "") => {
      if (settled) return;
      settled = true;
      deadline.removeEventListener("abort", onDeadline);
      if (err) {
        res.destroy();
        reject(err);
      } else resolve(body);
    };
    const onDeadline = () => settle(errors.timedOut());
    if (deadline.aborted) return onDeadline();
    deadline.addEventListener("abort", onDeadline, { once: true });
    const declared = Number(contentLength);
    if (contentLength !== undefined && Number.isFinite(declared) && declared > maxBytes) return settle(errors.tooLarge(declared));
    const chunks: Buffer[] = [];
    let size = 0;
    res.on("data", (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) return settle(errors.tooLarge(size));
      chunks.push(c);
    });
    res.on("end", () => settle(null, Buffer.concat(chunks).toString("utf8")));
    res.on("error", (err) => settle(errors.broken(err)));
    res.on("close", () => {
      if (!res.complete) settle(errors.broken(new Error("the connection closed before the body was complete")));
    });
  });
}
