/**
 * localcloud's IMDS, strict like the real one: IMDSv2 tokens, 400/401/403/404/405
 * exactly where AWS answers them, `//latest/...` accepted, directory listings, JSON notices.
 *
 * Two ways to tell which instance is asking:
 *  - per-instance listeners (`endpointFor(instanceId)`, the `process` runtime): each instance gets
 *    its own `http://host:port` (ephemeral port), handed to it as AWS_EC2_METADATA_SERVICE_ENDPOINT.
 *  - by source address (`endpointForAddress(bindHost, port?)`, the `linux` runtime): ONE listener on
 *    the project bridge address; the caller's source IP (its private IP inside its namespace) is
 *    mapped to an instance by the `lookupByIp` option. Unknown addresses are refused like a
 *    stopped instance. Requires `lookupByIp`.
 *
 * Every request reads the instance's current view through `lookup`, so state changes in the EC2
 * model (notices, rebalance, termination) show up immediately.
 *
 * An instance whose view is missing or has `serving: false` (stopped/terminated) gets its
 * connection closed without a response (the client sees a reset, as when IMDS is unreachable);
 * it is not a 404, which would tell an agent "no notice" when there is no instance at all.
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { realClock, type Clock } from "../../shared/clock.js";
import { TOKEN_HEADER, TOKEN_TTL_HEADER, TokenIssuer, parseTokenTtl } from "./tokens.js";
import { TEXT, instanceTree, listing, type Node } from "./tree.js";
import type { IdentitySigner, ImdsInstanceView, ImdsLookup } from "./types.js";

export interface ImdsOptions {
  lookup: ImdsLookup;
  signer: IdentitySigner;
  /** Where per-instance listeners bind (default 127.0.0.1). */
  host?: string;
  /** Token expiry is measured on this clock (default real time). */
  clock?: Clock;
  /** Source-address mode: the instance id owning a caller's IP (IPv4, no `::ffff:`), or null. */
  lookupByIp?: (ip: string) => string | null;
}

export interface ImdsServer {
  /** Start (once) this instance's own listener; resolves to its origin `http://host:port`. */
  endpointFor(instanceId: string): Promise<string>;
  /** Start (once per bindHost) the shared listener that identifies callers by source IP. */
  endpointForAddress(bindHost: string, port?: number): Promise<string>;
  /** Close the instance's listener (if any); its endpoint stops answering. Idempotent. */
  release(instanceId: string): Promise<void>;
  /** Close every listener and connection. */
  stop(): Promise<void>;
}

const VERSION_RE = /^(latest|1\.0|\d{4}-\d{2}-\d{2})$/;
const MAX_HEADER_BYTES = 8 * 1024;
const REASONS: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  500: "Internal Server Error",
};

export async function startImds(opts: ImdsOptions): Promise<ImdsServer> {
  const host = opts.host ?? "127.0.0.1";
  const tokens = new TokenIssuer(opts.clock ?? realClock);
  const listeners = new Map<string, Promise<http.Server>>();
  let stopped = false;

  const handle = (req: http.IncomingMessage, res: http.ServerResponse, instanceId: string | null): void => {
    req.resume(); // IMDS takes no bodies; drain so keep-alive connections stay usable
    try {
      serve(req, res, instanceId);
    } catch (err) {
      if (!res.headersSent) sendError(res, 500);
      else res.destroy(err as Error);
    }
  };

  const serve = (req: http.IncomingMessage, res: http.ServerResponse, instanceId: string | null): void => {
    const view = instanceId === null ? null : opts.lookup(instanceId);
    if (!view?.serving) {
      req.socket.destroy();
      return;
    }
    const method = req.method ?? "";
    if (method !== "GET" && method !== "HEAD" && method !== "PUT") return sendError(res, 405, { Allow: "GET, HEAD, PUT" });

    const parsed = parsePath(req.url ?? "/");
    if (!parsed) return sendError(res, 404);
    // Leaves tolerate a trailing slash and directories answer without one, as the real IMDS does.
    const { segments } = parsed;

    if (segments[1] === "api" && segments[2] === "token" && segments.length === 3) {
      if (method !== "PUT") return sendError(res, 405, { Allow: "PUT" });
      // Versioned token paths are refused by design; proxied token requests are an SSRF defence.
      if (segments[0] !== "latest" || req.headers["x-forwarded-for"] !== undefined) return sendError(res, 403);
      const ttl = parseTokenTtl(req.headers[TOKEN_TTL_HEADER]);
      if (ttl === null) return sendError(res, 400);
      return send(res, method, 200, TEXT, tokens.issue(view.instanceId, ttl), { [TOKEN_TTL_HEADER]: String(ttl) });
    }
    if (method === "PUT") return sendError(res, 405, { Allow: "GET, HEAD" });

    // A supplied token must be valid even where IMDSv1 is allowed.
    const token = req.headers[TOKEN_HEADER];
    let extra: Record<string, string> = {};
    if (token !== undefined) {
      const left = typeof token === "string" ? tokens.remainingSeconds(token, view.instanceId) : null;
      if (left === null) return sendError(res, 401);
      extra = { [TOKEN_TTL_HEADER]: String(left) };
    } else if (view.httpTokens === "required") {
      return sendError(res, 401);
    }

    if (segments.length === 0) return send(res, method, 200, TEXT, "latest", extra);
    const node = resolve(view, segments.slice(1));
    if (!node) return sendError(res, 404);
    if (node.kind === "dir") return send(res, method, 200, TEXT, listing(node), extra);
    return send(res, method, 200, node.contentType, node.body(), extra);
  };

  const resolve = (view: ImdsInstanceView, rest: string[]): Node | null => {
    let node: Node = instanceTree(view, opts.signer);
    for (const seg of rest) {
      if (node.kind !== "dir") return null;
      const next: Node | undefined = node.entries.get(seg);
      if (!next) return null;
      node = next;
    }
    return node;
  };

  const listen = async (bindHost: string, port: number, identify: (socket: Socket) => string | null): Promise<http.Server> => {
    const server = http.createServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) =>
      handle(req, res, identify(req.socket)),
    );
    server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
      // Oversized or garbled requests: answer like a strict HTTP server and drop the connection.
      if (socket.writable) {
        const status = err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request";
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      }
      socket.destroy();
    });
    await new Promise<void>((resolveListen, reject) => {
      server.once("error", reject);
      server.listen(port, bindHost, () => {
        server.off("error", reject);
        resolveListen();
      });
    });
    return server;
  };

  const originOf = (server: http.Server): string => {
    const addr = server.address() as AddressInfo;
    const hostPart = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
    return `http://${hostPart}:${addr.port}`;
  };

  const once = async (key: string, start: () => Promise<http.Server>): Promise<string> => {
    if (stopped) throw new Error(`starting IMDS listener ${key}: IMDS server is stopped`);
    let p = listeners.get(key);
    if (!p) {
      p = start();
      listeners.set(key, p);
      p.catch(() => listeners.delete(key));
    }
    return originOf(await p);
  };

  const close = async (key: string): Promise<void> => {
    const p = listeners.get(key);
    if (!p) return;
    listeners.delete(key);
    const server = await p.catch(() => null);
    if (!server) return;
    await new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  };

  return {
    endpointFor: (instanceId) =>
      once(`instance:${instanceId}`, () => listen(host, 0, () => instanceId)).catch((err: unknown) => {
        throw new Error(`starting IMDS listener for ${instanceId} on ${host}`, { cause: err });
      }),
    endpointForAddress: (bindHost, port = 0) => {
      const byIp = opts.lookupByIp;
      if (!byIp) return Promise.reject(new Error(`starting IMDS on ${bindHost}: source-address mode needs the lookupByIp option`));
      return once(`address:${bindHost}:${port}`, () =>
        listen(bindHost, port, (socket) => {
          const ip = (socket.remoteAddress ?? "").replace(/^::ffff:/, "");
          return ip ? byIp(ip) : null;
        }),
      ).catch((err: unknown) => {
        throw new Error(`starting IMDS listener on ${bindHost}:${port}`, { cause: err });
      });
    },
    release: (instanceId) => close(`instance:${instanceId}`),
    stop: async () => {
      stopped = true;
      await Promise.all([...listeners.keys()].map((k) => close(k)));
    },
  };
}

/**
 * Split a request target into path segments. Empty segments are dropped (so `//latest/...`, which
 * @aws-sdk/ec2-metadata-service sends, works); the query string is ignored. null for a target that
 * is not a version path or does not decode (-> 404).
 */
export function parsePath(target: string): { segments: string[]; trailingSlash: boolean } | null {
  const pathOnly = target.split("?")[0] ?? "";
  if (!pathOnly.startsWith("/")) return null;
  const segments: string[] = [];
  for (const raw of pathOnly.split("/")) {
    if (raw === "") continue;
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return null;
    }
    if (seg === "." || seg === ".." || seg.includes("/")) return null;
    segments.push(seg);
  }
  const first = segments[0];
  if (first !== undefined && !VERSION_RE.test(first)) return null;
  return { segments, trailingSlash: pathOnly.endsWith("/") };
}

function send(
  res: http.ServerResponse,
  method: string,
  status: number,
  contentType: string,
  body: string | Buffer,
  headers: Record<string, string> = {},
): void {
  const bytes = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  res.writeHead(status, {
    "Content-Type": contentType,
    "Content-Length": String(bytes.length),
    Server: "EC2ws",
    ...headers,
  });
  res.end(method === "HEAD" ? undefined : bytes);
}

/** AWS and AEMM answer errors with a small XHTML page. */
function sendError(res: http.ServerResponse, status: number, headers: Record<string, string> = {}): void {
  const title = `${status} - ${REASONS[status] ?? "Error"}`;
  const body = `<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>${title}</title>
 </head>
 <body>
  <h1>${title}</h1>
 </body>
</html>
`;
  send(res, res.req?.method ?? "GET", status, "text/html", body, headers);
}
