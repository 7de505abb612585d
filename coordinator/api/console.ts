/**
 * The web console: static files built by scripts/build.mjs into dist/console/ (index.html and
 * content-hashed assets/), and the server-sent event stream /api/v1/stream the console follows.
 *
 * index.html is served `no-cache` (it names the current hashes); assets are immutable for a year.
 * Every console response carries a Content-Security-Policy that allows scripts, styles and
 * connections from this origin only: no inline script, no eval, no framing.
 *
 * The stream sends the instance list (`event: instances`) whenever it changes, read once a
 * second for all open streams together (not once per stream), and a comment line every 15 s so proxies keep it open. At most MAX_STREAMS are open at
 * once (a further one is answered 503); all of them end when the coordinator stops.
 */
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { CoordinatorViews } from "./types.js";

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS = {
  "content-security-policy": CONSOLE_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

const TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".png": "image/png",
  ".svg": "image/svg+xml",
  ".map": "application/json; charset=utf-8",
};

/** An asset name esbuild writes: `<name>-<HASH>.<ext>`, nothing that could leave the folder. */
const ASSET_NAME = /^[A-Za-z0-9_-]{1,80}\.(js|css|png|svg|map)$/;

export const MAX_STREAMS = 32;
export const STREAM_CHECK_MS = 1000;
export const HEARTBEAT_MS = 15_000;

const here = dirname(fileURLToPath(import.meta.url));

/** dist/console of this package, from the sources (coordinator/api/) or from the built CLI (dist/cli/). */
export function defaultConsoleDir(): string {
  return here.endsWith(join("dist", "cli")) ? join(here, "..", "console") : join(here, "..", "..", "dist", "console");
}

export class Console {
  private readonly streams = new Set<ServerResponse>();
  private poll: ReturnType<typeof setInterval> | undefined;
  private checking = false;
  /** The last instances frame sent: a new stream gets it at once. */
  private last: string | null = null;

  constructor(
    private readonly dir: string,
    private readonly views: CoordinatorViews,
    private readonly timing: { checkMs: number; heartbeatMs: number } = { checkMs: STREAM_CHECK_MS, heartbeatMs: HEARTBEAT_MS },
  ) {}

  /** True when the path is the console's (/, /index.html, /assets/…); answered here. */
  serve(path: string, method: string, res: ServerResponse): boolean {
    if (path !== "/" && path !== "/index.html" && !path.startsWith("/assets/")) return false;
    if (method !== "GET" && method !== "HEAD") {
      res.writeHead(405, { ...SECURITY_HEADERS, allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
      res.end(`${method} is not allowed here (allowed: GET, HEAD)\n`);
      return true;
    }
    if (path === "/" || path === "/index.html") {
      let html: Buffer;
      try {
        html = readFileSync(join(this.dir, "index.html"));
      } catch {
        return this.text(res, 404, "the web console is not built (run npm run build)\n");
      }
      res.writeHead(200, {
        ...SECURITY_HEADERS,
        "content-type": "text/html; charset=utf-8",
        "cache-control": "no-cache",
        "content-length": html.length,
      });
      res.end(method === "HEAD" ? undefined : html);
      return true;
    }
    const name = path.slice("/assets/".length);
    const ext = ASSET_NAME.exec(name)?.[1];
    if (!ext) return this.text(res, 404, "no such asset\n");
    let body: Buffer;
    try {
      body = readFileSync(join(this.dir, "assets", name));
    } catch {
      return this.text(res, 404, "no such asset\n");
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      "content-type": TYPES[`.${ext}`]!,
      "cache-control": "public, max-age=31536000, immutable",
      "content-length": body.length,
    });
    res.end(method === "HEAD" ? undefined : body);
    return true;
  }

  /** GET /api/v1/stream (already authenticated). */
  stream(req: IncomingMessage, res: ServerResponse): void {
    if (this.streams.size >= MAX_STREAMS) {
      const text = JSON.stringify({
        error: { code: "too-many-streams", message: `at most ${MAX_STREAMS} event streams may be open at once; poll the API instead` },
      });
      res.writeHead(503, { "content-type": "application/json; charset=utf-8", "retry-after": "10" });
      res.end(text);
      return;
    }
    this.streams.add(res);
    // The stream outlives the server's request timeout by design.
    req.socket.setTimeout(0);
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    });
    res.write(`retry: 2000\n\n`);
    if (this.last !== null) res.write(this.last);
    const beat = setInterval(() => res.write(": heartbeat\n\n"), this.timing.heartbeatMs);
    const done = () => {
      clearInterval(beat);
      this.streams.delete(res);
      if (this.streams.size === 0) this.stopPolling();
    };
    res.on("close", done);
    res.on("error", done);
    if (!this.poll) {
      this.poll = setInterval(() => void this.check(), this.timing.checkMs);
      void this.check();
    }
  }

  /** One read of the instance list per tick for every open stream; sent when it changed. */
  private async check(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      const frame = `event: instances\ndata: ${JSON.stringify(await this.views.listInstances())}\n\n`;
      if (frame === this.last) return;
      this.last = frame;
      for (const res of this.streams) if (!res.writableEnded) res.write(frame);
    } catch (err) {
      const frame = `event: error\ndata: ${JSON.stringify({ message: (err as Error).message })}\n\n`;
      for (const res of this.streams) if (!res.writableEnded) res.write(frame);
    } finally {
      this.checking = false;
    }
  }

  private stopPolling(): void {
    if (this.poll) clearInterval(this.poll);
    this.poll = undefined;
    this.last = null;
  }

  /** End every open stream (the coordinator is stopping). */
  closeStreams(): void {
    for (const res of this.streams) res.end();
    this.streams.clear();
    this.stopPolling();
  }

  get openStreams(): number {
    return this.streams.size;
  }

  private text(res: ServerResponse, status: number, text: string): true {
    res.writeHead(status, { ...SECURITY_HEADERS, "content-type": "text/plain; charset=utf-8" });
    res.end(text);
    return true;
  }
}
