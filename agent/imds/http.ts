/**
 * The HTTP exchange with IMDS, bounded: every body is capped in bytes (a Content-Length over the
 * cap is refused before reading, and a body that grows past it is cut off), and every exchange is
 * capped in total time (connect + headers + body), not only while the socket is idle. One
 * keep-alive socket pool is reused across polls.
 */
import { Agent, request } from "node:http";
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
  /** Whole exchange, real ms. */
  timeoutMs: number;
}

export class ImdsHttp {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 8, maxFreeSockets: 2 });
  private readonly base: URL;

  constructor(endpoint: string) {
    this.base = new URL(endpoint);
  }

  exchange(x: ImdsExchange): Promise<ImdsResponse> {
    return new Promise<ImdsResponse>((resolve, reject) => {
      let settled = false;
      const fail = (err: ImdsTransportError) => {
        if (settled) return;
        settled = true;
        cancelTimer();
        req.destroy();
        reject(err);
      };
      const req = request(
        {
          agent: this.agent,
          protocol: this.base.protocol,
          hostname: this.base.hostname,
          port: this.base.port || undefined,
          method: x.method,
          path: x.path,
          headers: x.headers,
        },
        (res) => {
          const status = res.statusCode ?? 0;
          const tooLarge = (n: number) =>
            new ImdsTransportError(
              `${x.method} ${x.path}: body of ${n} bytes or more exceeds the ${x.maxBytes}-byte limit`,
              "body-too-large",
            );
          const declared = Number(res.headers["content-length"]);
          if (Number.isFinite(declared) && declared > x.maxBytes) return fail(tooLarge(declared));
          const chunks: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            size += c.length;
            if (size > x.maxBytes) return fail(tooLarge(size));
            chunks.push(c);
          });
          res.on("end", () => {
            if (settled) return;
            settled = true;
            cancelTimer();
            resolve({ status, body: Buffer.concat(chunks).toString("utf8") });
          });
          res.on("error", (err) => fail(new ImdsTransportError(`${x.method} ${x.path}: ${err.message}`, "network", { cause: err })));
        },
      );
      const cancelTimer = safeTimeout(x.timeoutMs, () =>
        fail(new ImdsTransportError(`${x.method} ${x.path}: no complete answer within ${x.timeoutMs} ms`, "timeout")),
      );
      req.on("error", (err) => fail(new ImdsTransportError(`${x.method} ${x.path}: ${err.message}`, "network", { cause: err })));
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
