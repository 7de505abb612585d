import { afterEach, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApiServer, type ApiServer } from "./server.js";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { CONSOLE_CSP, Console, MAX_STREAMS } from "./console.js";
import { unusedGroups, unusedViews } from "./unused-deps.js";
import type { InstanceSummary } from "../../shared/api.js";

const TOKEN = "console-test-token-0123456789";
let server: ApiServer | undefined;
let dir: string | undefined;

afterEach(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  server = undefined;
  dir = undefined;
});

async function start(o: { built?: boolean; instances?: () => InstanceSummary[] } = {}) {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-console-unit-"));
  if (o.built !== false) {
    mkdirSync(join(dir, "assets"));
    writeFileSync(join(dir, "index.html"), '<!doctype html><script type="module" src="/assets/main-ABC123.js"></script>');
    writeFileSync(join(dir, "assets", "main-ABC123.js"), "console.log(1)");
  }
  writeFileSync(join(dir, "secret.txt"), "not an asset");
  const views = unusedViews({ listInstances: o.instances ?? (() => []) });
  server = createApiServer({
    views,
    groups: unusedGroups(),
    adminToken: TOKEN,
    consoleDir: dir,
    agentBundlePath: join(dir, "none.js"),
    onAgentUpgrade: () => undefined,
    metricsText: async () => "",
    health: () => ({ ok: true }),
  });
  return server.listen(0);
}

describe("console files", () => {
  it("serves index.html no-cache and hashed assets immutable, both under the CSP; nothing else from the folder", async () => {
    const url = await start();
    const index = await fetch(`${url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("cache-control")).toBe("no-cache");
    expect(index.headers.get("content-security-policy")).toBe(CONSOLE_CSP);
    expect(index.headers.get("x-frame-options")).toBe("DENY");
    const js = await fetch(`${url}/assets/main-ABC123.js`);
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(js.headers.get("content-security-policy")).toBe(CONSOLE_CSP);
    expect(await js.text()).toBe("console.log(1)");
    for (const p of ["/assets/../secret.txt", "/assets/..%2fsecret.txt", "/assets/secret.txt", "/assets/nope-1.js"])
      expect((await fetch(`${url}${p}`)).status, p).toBe(404);
    expect((await fetch(`${url}/`, { method: "POST" })).status).toBe(405);
  });

  it("says how to build it when it is not built", async () => {
    const url = await start({ built: false });
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(404);
    expect(await res.text()).toContain("npm run build");
  });
});

describe("/api/v1/stream", () => {
  it("needs the token, sends the instance list, and is bounded", async () => {
    const list = [{ name: "db", state: "running" }] as InstanceSummary[];
    const url = await start({ instances: () => list });
    expect((await fetch(`${url}/api/v1/stream`)).status).toBe(401);
    const ctl = new AbortController();
    const res = await fetch(`${url}/api/v1/stream`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: ctl.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("event: instances")) text += (await reader.read()).value ?? "";
    expect(text).toContain(`data: ${JSON.stringify(list)}`);
    ctl.abort();
    const open: AbortController[] = [];
    // Held until the end: fetch cancels the body of a Response that is garbage-collected unread
    // (Node 26's undici does), which would close that stream before the limit is tried.
    const held: Response[] = [];
    for (let i = 0; i < MAX_STREAMS; i++) {
      const c = new AbortController();
      open.push(c);
      const r = await fetch(`${url}/api/v1/stream`, { headers: { authorization: `Bearer ${TOKEN}` }, signal: c.signal });
      expect(r.status).toBe(200);
      held.push(r);
    }
    const over = await fetch(`${url}/api/v1/stream`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(over.status).toBe(503);
    expect(((await over.json()) as { error: { code: string } }).error.code).toBe("too-many-streams");
    for (const c of open) c.abort();
    expect(held).toHaveLength(MAX_STREAMS);
  });

  it("ends open streams when the server closes", async () => {
    const url = await start();
    const res = await fetch(`${url}/api/v1/stream`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const reader = res.body!.getReader();
    await reader.read();
    await server!.close();
    server = undefined;
    for (;;) {
      const r = await reader.read().catch(() => ({ done: true }));
      if (r.done) break;
    }
  });
});

describe("Console.stream", () => {
  it("sends heartbeat comments, a changed list at once to every stream, and stops reading when the last stream goes", async () => {
    let list = [{ name: "a", state: "running" }] as InstanceSummary[];
    let reads = 0;
    const views = unusedViews({
      listInstances: () => {
        reads++;
        return list;
      },
    });
    const web = new Console("/nonexistent", views, { checkMs: 20, heartbeatMs: 30 });
    const http = createServer((req, res) => web.stream(req, res));
    await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/`;
    try {
      const open = async () => (await fetch(url)).body!.pipeThrough(new TextDecoderStream()).getReader();
      const readUntil = async (r: ReadableStreamDefaultReader<string>, what: string) => {
        let t = "";
        while (!t.includes(what)) t += (await r.read()).value ?? "";
        return t;
      };
      const a = await open();
      const b = await open();
      expect(await readUntil(a, ": heartbeat")).toContain('"name":"a"');
      expect(await readUntil(b, '"name":"a"')).toContain("event: instances");
      list = [{ name: "b", state: "replacing" }] as InstanceSummary[];
      expect(await readUntil(a, '"name":"b"')).toContain('"state":"replacing"');
      expect(await readUntil(b, '"name":"b"')).toContain('"state":"replacing"');
      expect(web.openStreams).toBe(2);
      await a.cancel();
      await b.cancel();
      await new Promise((r) => setTimeout(r, 100));
      expect(web.openStreams).toBe(0);
      const after = reads;
      await new Promise((r) => setTimeout(r, 100));
      expect(reads).toBe(after);
    } finally {
      web.closeStreams();
      http.closeAllConnections();
      await new Promise((r) => http.close(r));
    }
  });
});
