import { describe, it, expect, beforeAll, afterAll, beforeEach, afterEach } from "vitest";
import { createServer, type Server } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { realClock } from "../../shared/clock.js";
import { newMessageId, type AgentMessage } from "../../shared/protocol.js";
import { loadOrCreateSigner } from "../../localcloud/imds/identity.js";
import type { IdentitySigner } from "../../localcloud/imds/types.js";
import { AgentHub, type AgentSession } from "../../coordinator/agents/hub.js";
import { loadCertificate } from "../../coordinator/agents/identity.js";

let dir: string;
let signer: IdentitySigner;
let forger: IdentitySigner;
let server: Server;
let hub: AgentHub;
let url: string;
const received: Array<{ session: AgentSession; msg: AgentMessage }> = [];
const rejected: string[] = [];
const MANAGED = "i-0123456789abcdef0";
let secretHash: string | null = null;

function doc(instanceId = MANAGED): string {
  return JSON.stringify(
    {
      accountId: "000000000000",
      availabilityZone: "us-east-1a",
      instanceId,
      instanceType: "m5.large",
      imageId: "ami-0123456789abcdef0",
      privateIp: "172.31.0.10",
      region: "us-east-1",
      pendingTime: new Date().toISOString(),
      version: "2017-09-30",
    },
    null,
    2,
  );
}
function hello(document: string, signature: string) {
  return JSON.stringify({
    v: 1,
    id: newMessageId("h"),
    type: "hello",
    identity: { document, signature },
    agentVersion: "0.1.0",
    mode: "run",
    sessionSecret: "test-session-secret-0123456789abcdefghijklmno",
  });
}
function connect(): Promise<{ ws: WebSocket; frames: unknown[]; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(url);
  const frames: unknown[] = [];
  ws.on("message", (d) => frames.push(JSON.parse(d.toString())));
  const closed = new Promise<{ code: number; reason: string }>((r) =>
    ws.on("close", (code, reason) => r({ code, reason: reason.toString() })),
  );
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve({ ws, frames, closed }));
    ws.once("error", reject);
  });
}
const until = async (cond: () => boolean, ms = 3000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-hub-"));
  signer = await loadOrCreateSigner(join(dir, "real"));
  forger = await loadOrCreateSigner(join(dir, "forger"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeEach(async () => {
  received.length = 0;
  rejected.length = 0;
  secretHash = null;
  hub = new AgentHub({
    clock: realClock,
    publicKey: loadCertificate(signer.certificatePem),
    lookup: async (id) =>
      id === MANAGED
        ? { statefulInstance: "orders-db", generation: 1, privateIps: ["172.31.0.10"], sessionSecretHash: secretHash, carriedSecret: null }
        : null,
    registerSessionSecret: async (_id, hash) => {
      if (secretHash !== null) return false;
      secretHash = hash;
      return true;
    },
    // Every test connection comes from 127.0.0.1 (test/coordinator/hub-security.test.ts covers addresses).
    checkSourceAddress: false,
    welcome: () => ({ hooks: { timeoutSeconds: 60 }, mounts: [], pollIntervalMs: 1000, heartbeatMs: 5000 }),
    onMessage: (session, msg) => {
      received.push({ session, msg });
    },
    onRejected: (reason) => rejected.push(reason),
    resendMs: 100,
  });
  server = createServer();
  server.on("upgrade", hub.handleUpgrade);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `ws://127.0.0.1:${(server.address() as { port: number }).port}/agent/v1/ws`;
});
afterEach(async () => {
  await hub.close();
  await new Promise((r) => server.close(r));
});

describe("agent hub", () => {
  it("welcomes an agent whose identity verifies and names a managed generation", async () => {
    const { ws, frames } = await connect();
    const d = doc();
    ws.send(hello(d, signer.signRsaSha256(d)));
    await until(() => frames.length > 0);
    expect(frames[0]).toMatchObject({ type: "welcome", statefulInstance: "orders-db", generation: 1 });
    expect(hub.isConnected(MANAGED)).toBe(true);
    ws.close();
  });

  it("refuses a forged identity document (signed by another key) and closes the session", async () => {
    const { ws, frames, closed } = await connect();
    const d = doc();
    ws.send(hello(d, forger.signRsaSha256(d)));
    const c = await closed;
    expect(c.code).toBe(1008);
    expect(frames[0]).toMatchObject({ type: "error", code: "forged-identity" });
    expect((frames[0] as { message: string }).message).toMatch(/signature does not verify/);
    expect(rejected).toEqual(["forged-identity"]);
    expect(hub.connected).toBe(0);
  });

  it("refuses a tampered document even with a genuine signature of the original", async () => {
    const { ws, closed } = await connect();
    const d = doc();
    ws.send(hello(d.replace("172.31.0.10", "172.31.0.11"), signer.signRsaSha256(d)));
    expect((await closed).code).toBe(1008);
  });

  it("refuses a genuine identity of an instance that is not a managed generation", async () => {
    const { ws, frames, closed } = await connect();
    const d = doc("i-0fffffffffffffff0");
    ws.send(hello(d, signer.signRsaSha256(d)));
    expect((await closed).code).toBe(1008);
    expect(frames[0]).toMatchObject({ type: "error", code: "unknown-instance" });
  });

  it.each([
    ["invalid JSON", "{not json"],
    ["an unknown type", JSON.stringify({ v: 1, id: "x", type: "launch-missiles" })],
    ["a wrong protocol version", JSON.stringify({ v: 9, id: "x", type: "heartbeat", seq: 1, uptimeMs: 1 })],
    [
      "a notice with a bad deadline",
      JSON.stringify({
        v: 1,
        id: "x",
        type: "notice",
        noticeId: "n",
        kind: "spot-interruption",
        deadline: "soon",
        observedAt: new Date().toISOString(),
        raw: "",
      }),
    ],
  ])("closes the session on a malformed frame (%s) and hands nothing to the service", async (_what, frame) => {
    const { ws, frames } = await connect();
    const d = doc();
    ws.send(hello(d, signer.signRsaSha256(d)));
    await until(() => frames.length > 0);
    const { closed } = { closed: new Promise<number>((r) => ws.on("close", (code) => r(code))) };
    ws.send(frame);
    expect(await closed).toBe(1007);
    expect(received).toEqual([]);
    expect(rejected).toEqual(["malformed-frame"]);
  });

  it("closes the session on an oversized frame", async () => {
    const { ws, closed } = await connect();
    ws.send("x".repeat(300 * 1024));
    expect((await closed).code).toBe(1009);
    expect(received).toEqual([]);
  });

  it("acks each message, drops a duplicate id, and resends an unacked command until acked", async () => {
    const { ws, frames } = await connect();
    const d = doc();
    ws.send(hello(d, signer.signRsaSha256(d)));
    await until(() => frames.length > 0);
    const notice = JSON.stringify({
      v: 1,
      id: "n-1",
      type: "notice",
      noticeId: "abc",
      kind: "spot-interruption",
      action: "terminate",
      deadline: new Date(Date.now() + 120_000).toISOString(),
      observedAt: new Date().toISOString(),
      raw: "{}",
    });
    ws.send(notice);
    ws.send(notice);
    await until(() => frames.filter((f) => (f as { type: string }).type === "ack").length >= 2);
    expect(received.map((r) => r.msg.type)).toEqual(["notice"]);
    const id = hub.send(MANAGED, {
      type: "quiesce",
      reason: "spot interruption",
      deadline: new Date(Date.now() + 60_000).toISOString(),
      unmount: false,
    });
    await until(() => frames.filter((f) => (f as { id: string }).id === id).length >= 2); // resent while unacked
    ws.send(JSON.stringify({ v: 1, id: "a-1", type: "ack", ref: id }));
    await new Promise((r) => setTimeout(r, 50));
    const count = frames.filter((f) => (f as { id: string }).id === id).length;
    await new Promise((r) => setTimeout(r, 300));
    expect(frames.filter((f) => (f as { id: string }).id === id).length).toBe(count);
    ws.close();
  });

  it("delivers a command queued while the agent was away when it says hello", async () => {
    const id = hub.send(MANAGED, { type: "shutdown", reason: "test" });
    const { ws, frames } = await connect();
    const d = doc();
    ws.send(hello(d, signer.signRsaSha256(d)));
    await until(() => frames.some((f) => (f as { id: string }).id === id));
    ws.close();
  });
});
