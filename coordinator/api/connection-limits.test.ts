import { afterEach, describe, expect, it } from "vitest";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { createApiServer, type ApiServer } from "./server.js";
import type { ConnectionCut, ConnectionLimits } from "./connection-limits.js";
import { unusedGroups, unusedViews } from "./unused-deps.js";

let api: ApiServer | null = null;
let dir: string | null = null;
const held: Socket[] = [];
const upgraded: Duplex[] = [];

afterEach(async () => {
  for (const s of held.splice(0)) s.destroy();
  for (const s of upgraded.splice(0)) s.destroy();
  await api?.close();
  api = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

async function start(limits: Partial<ConnectionLimits>) {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-conn-"));
  writeFileSync(join(dir, "agent.js"), "//\n");
  const cuts: Array<[ConnectionCut, string]> = [];
  api = createApiServer({
    views: unusedViews(),
    groups: unusedGroups(),
    adminToken: "connection-limits-token-0123456789",
    agentBundlePath: join(dir, "agent.js"),
    // Plays the hub: a completed upgrade is a long-lived session.
    onAgentUpgrade: (_req, socket) => {
      upgraded.push(socket);
      socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    },
    metricsText: async () => "",
    health: () => ({ ok: true }),
    connectionLimits: limits,
    onConnectionCut: (why, source) => void cuts.push([why, source]),
  });
  const base = await api.listen(0);
  return { base, port: Number(new URL(base).port), cuts };
}

async function open(port: number, from = "127.0.0.1", send?: string): Promise<Socket> {
  const s = connect({ port, host: "127.0.0.1", localAddress: from });
  s.on("error", () => undefined);
  held.push(s);
  await once(s, "connect");
  if (send) s.write(send);
  return s;
}

// Not events.once: it rejects on an 'error' event, and a server closing a connection whose bytes it
// has not read sends a reset (ECONNRESET here) before the close.
const closed = (s: Socket) => (s.closed ? Promise.resolve() : new Promise<void>((r) => s.once("close", () => r())));
const settle = () => new Promise((r) => setTimeout(r, 50));

describe("connections that have not completed a request", () => {
  // Regression: an idle connection held its descriptor until the 15 s header timeout, checked
  // every 30 s, so reconnecting idle clients ran the coordinator out of descriptors.
  it("are closed when they send no first byte in time, and counted", async () => {
    const { port, cuts } = await start({ firstByteMs: 100, requestMs: 60_000 });
    const idle = await open(port);
    await closed(idle);
    expect(cuts).toEqual([["first-byte-timeout", "127.0.0.1"]]);
  });

  it("are closed when their request head is not complete in time, even while bytes trickle in", async () => {
    const { port, cuts } = await start({ firstByteMs: 100, requestMs: 400 });
    const slow = await open(port, "127.0.0.1", "GET /healthz HTTP/1.1\r\n");
    const drip = setInterval(() => slow.write("x-a: b\r\n"), 50);
    await closed(slow);
    clearInterval(drip);
    expect(cuts).toEqual([["request-timeout", "127.0.0.1"]]);
  });

  it("beyond the per-source cap close the oldest waiting connection of that source, never another source's", async () => {
    const { port, cuts } = await start({ maxWaiting: 100, maxWaitingPerSource: 3, firstByteMs: 60_000, requestMs: 60_000 });
    const other = await open(port, "127.0.0.3");
    const a = [await open(port, "127.0.0.2"), await open(port, "127.0.0.2"), await open(port, "127.0.0.2")];
    await settle();
    const fourth = await open(port, "127.0.0.2");
    await closed(a[0]!);
    await settle();
    expect(cuts).toEqual([["per-source-cap", "127.0.0.2"]]);
    for (const s of [other, a[1]!, a[2]!, fourth]) expect(s.closed).toBe(false);
  });

  it("beyond the total cap close the oldest that has sent nothing, before one that has begun its request", async () => {
    const { port, cuts } = await start({ maxWaiting: 3, maxWaitingPerSource: 100, firstByteMs: 60_000, requestMs: 60_000 });
    const begun = await open(port, "127.0.0.2", "GET /healthz HTTP/1.1\r\n");
    const silent = await open(port, "127.0.0.3");
    const third = await open(port, "127.0.0.4");
    await settle();
    await open(port, "127.0.0.5");
    await closed(silent);
    await settle();
    expect(cuts).toEqual([["total-cap", "127.0.0.3"]]);
    expect(begun.closed).toBe(false);
    expect(third.closed).toBe(false);
  });

  // Regression: the total cap closed the globally oldest waiting connection, so a request whose
  // bytes were in but not yet read (the server accepts a whole queue of connections before reading
  // any) was closed when a cap's worth of flood connections was accepted after it.
  it("beyond the total cap close a connection of the source holding the most, never a lone one however old", async () => {
    const { port, cuts } = await start({ maxWaiting: 4, maxWaitingPerSource: 100, firstByteMs: 60_000, requestMs: 60_000 });
    const lone = await open(port, "127.0.0.1");
    await settle();
    const flood: Socket[] = [];
    for (let i = 0; i < 12; i++) flood.push(await open(port, `127.0.0.${2 + (i % 2)}`));
    await settle();
    expect(lone.closed).toBe(false);
    expect(cuts).toHaveLength(9);
    expect(cuts.every(([why, source]) => why === "total-cap" && source !== "127.0.0.1")).toBe(true);
    expect(flood.filter((s) => !s.closed)).toHaveLength(3);
  });

  it("/healthz answers during a flood of idle connections far beyond the caps, and an upgraded session is never cut", async () => {
    const { base, port, cuts } = await start({ maxWaiting: 20, maxWaitingPerSource: 10, firstByteMs: 60_000, requestMs: 60_000 });
    const session = await open(
      port,
      "127.0.0.2",
      "GET /agent/v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    await once(session, "data");
    const flood: Socket[] = [];
    for (let i = 0; i < 300; i++) flood.push(await open(port, `127.0.0.${2 + (i % 4)}`));
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${base}/healthz`);
      expect(res.status).toBe(200);
      await res.json();
    }
    await settle();
    expect(flood.filter((s) => !s.closed).length).toBeLessThanOrEqual(20);
    expect(cuts.length).toBeGreaterThanOrEqual(280);
    expect(session.closed).toBe(false);
    expect(upgraded).toHaveLength(1);
  });

  it("a kept-alive connection is served again, and waits under the same timeout between requests", async () => {
    const { port, cuts } = await start({ firstByteMs: 300, requestMs: 1000 });
    const s = await open(port);
    let text = "";
    s.on("data", (d) => (text += String(d)));
    for (let i = 0; i < 2; i++) {
      s.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
      const before = (text.match(/HTTP\/1.1 200/g) ?? []).length;
      while ((text.match(/HTTP\/1.1 200/g) ?? []).length === before) await once(s, "data");
    }
    expect(text).toMatch(/keep-alive: timeout=0/i);
    await closed(s);
    expect(cuts).toEqual([["first-byte-timeout", "127.0.0.1"]]);
  });
});
