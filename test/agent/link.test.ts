import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { realClock } from "../../shared/clock.js";
import type { CoordinatorMessage } from "../../shared/protocol.js";
import { AgentLink } from "../../agent/link/client.js";
import { StateStore, readStateFile } from "../../agent/link/state.js";
import { silentLogger } from "../../agent/log.js";
import { NOT_LEADER_CLOSE_CODE } from "../../shared/coordinators.js";
import { startFakeCoordinator, type FakeCoordinator } from "./fake-coordinator.js";

const SCALE = 0.01;
let dir: string;
let coord: FakeCoordinator;
const links: AgentLink[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-link-"));
  coord = await startFakeCoordinator();
  coord.welcomeConfig.heartbeatMs = 1000; // model ms -> 10 ms real
});
afterEach(async () => {
  for (const l of links.splice(0)) await l.stop();
  await coord.close();
  rmSync(dir, { recursive: true, force: true });
});

function makeLink(url: string | string[] = coord.url, commands: CoordinatorMessage[] = []) {
  const store = new StateStore(dir, silentLogger).load("i-0123456789abcdef0");
  const link = new AgentLink({
    urls: typeof url === "string" ? [url] : url,
    clock: realClock,
    log: silentLogger,
    store,
    hello: async () => ({
      identity: { document: '{"instanceId":"i-0123456789abcdef0"}', signature: "c2ln" },
      agentVersion: "0.1.0",
      mode: "run",
      sessionSecret: "test-session-secret-0123456789abcdefghijklmno",
    }),
    onCommand: (m) => void commands.push(m),
    scale: (ms) => Math.max(1, ms * SCALE),
  });
  links.push(link);
  return { link, store, commands };
}

const notice = {
  type: "notice" as const,
  noticeId: "spot-interruption-abc",
  kind: "spot-interruption" as const,
  action: "terminate",
  deadline: "2030-01-01T00:02:00.000Z",
  observedAt: "2030-01-01T00:00:00.000Z",
  raw: '{"action":"terminate","time":"2030-01-01T00:02:00Z"}',
};

describe("agent link", () => {
  it("says hello with the identity, gets welcomed, and empties the outbox once messages are acked", async () => {
    const { link, store } = makeLink();
    link.start();
    const hello = await coord.waitFor((m) => m.type === "hello");
    expect(hello).toMatchObject({ mode: "run", agentVersion: "0.1.0", identity: { signature: "c2ln" } });
    expect(await link.waitConnected(5000)).toBe(true);
    link.send(notice);
    await coord.waitFor((m) => m.type === "notice");
    await expect.poll(() => store.outbox.length).toBe(0);
    await coord.waitFor((m) => m.type === "heartbeat");
  });

  it("waitOutboxEmpty resolves when the coordinator's ack empties the outbox, and false at its timeout without one", async () => {
    const { link, store } = makeLink();
    link.start();
    expect(await link.waitConnected(5000)).toBe(true);
    expect(await link.waitOutboxEmpty(10)).toBe(true); // nothing pending: at once
    link.send(notice);
    expect(store.outbox.length).toBe(1);
    expect(await link.waitOutboxEmpty(5000)).toBe(true);
    expect(store.outbox.length).toBe(0);

    const dead = makeLink("ws://127.0.0.1:9/agent/v1/ws"); // nothing listens there: never acked
    dead.link.start();
    dead.link.send(notice);
    expect(await dead.link.waitOutboxEmpty(50)).toBe(false);
  });

  it("reconnects when the coordinator drops the connection during a notice; the notice is delivered exactly once", async () => {
    const { link, store } = makeLink();
    link.start();
    expect(await link.waitConnected(5000)).toBe(true);
    coord.dropOn("notice");
    const id = link.send(notice);
    await expect.poll(() => coord.connections, { timeout: 5000 }).toBeGreaterThanOrEqual(2);
    await expect.poll(() => store.outbox.length, { timeout: 5000 }).toBe(0);
    expect(coord.raw.filter((m) => m.type === "notice").length).toBeGreaterThanOrEqual(2); // resent…
    expect(coord.delivered.filter((m) => m.type === "notice").map((m) => m.id)).toEqual([id]); // …delivered once
    expect(link.stats.connects).toBeGreaterThanOrEqual(2);
  });

  it("delivers a notice left in the outbox by an agent that was restarted before it could send it", async () => {
    const dead = makeLink("ws://127.0.0.1:9/agent/v1/ws"); // nothing listens there
    dead.link.start();
    const id = dead.link.send(notice);
    await dead.link.stop();
    links.splice(0);
    expect(readStateFile(dir)?.outbox.map((e) => e.message.id)).toEqual([id]);

    const { link, store } = makeLink(); // "restarted": new process state loaded from the same dir
    link.start();
    const got = await coord.waitFor((m) => m.type === "notice");
    expect(got.id).toBe(id);
    await expect.poll(() => store.outbox.length).toBe(0);
  });

  it("discards an outbox that belongs to another instance (root disk restored from an image)", () => {
    const store = new StateStore(dir, silentLogger).load("i-0aaaaaaaaaaaaaaaa");
    store.enqueue({ v: 1, id: "a-1", ...notice });
    expect(new StateStore(dir, silentLogger).load("i-0bbbbbbbbbbbbbbbb").outbox).toEqual([]);
  });

  it("moves a corrupt state file aside instead of crashing", () => {
    writeFileSync(join(dir, "agent-state.json"), "{not json");
    expect(new StateStore(dir, silentLogger).load("i-0aaaaaaaaaaaaaaaa").outbox).toEqual([]);
  });

  it("acks every command, drops a duplicate by id, and ignores invalid frames", async () => {
    const { link, commands } = makeLink();
    link.start();
    expect(await link.waitConnected(5000)).toBe(true);
    coord.sendRaw("{not json");
    coord.sendRaw(JSON.stringify({ v: 1, id: "x", type: "quiesce", reason: "r", deadline: "soon" }));
    coord.sendRaw(JSON.stringify({ v: 1, id: "y", type: "notice" }));
    const id = coord.send({ type: "thaw" } as never);
    coord.send({ type: "thaw", id } as never);
    await expect.poll(() => coord.acksReceived.filter((r) => r === id).length).toBe(2);
    expect(commands.map((c) => c.id)).toEqual([id]);
    expect(link.stats.badFrames).toBe(3);
    expect(link.stats.duplicates).toBe(1);
    expect(link.connected).toBe(true);
  });

  it("remembers handled command ids across a restart and tells the coordinator in hello", async () => {
    const first = makeLink();
    first.link.start();
    expect(await first.link.waitConnected(5000)).toBe(true);
    const id = coord.send({ type: "thaw" } as never);
    await expect.poll(() => first.commands.length).toBe(1);
    await first.link.stop();
    links.splice(0);
    const second = makeLink();
    second.link.start();
    expect(await second.link.waitConnected(5000)).toBe(true);
    const hellos = coord.raw.filter((m) => m.type === "hello");
    expect(hellos.at(-1)).toMatchObject({ lastSeen: [id] });
    coord.send({ type: "thaw", id } as never);
    await expect.poll(() => coord.acksReceived.filter((r) => r === id).length).toBe(2);
    expect(second.commands).toEqual([]);
  });

  it("resends an unacked message while connected after the ack timeout", async () => {
    const { link, store } = makeLink();
    link.start();
    expect(await link.waitConnected(5000)).toBe(true);
    coord.autoAck = false;
    link.send(notice);
    await expect.poll(() => coord.raw.filter((m) => m.type === "notice").length, { timeout: 5000 }).toBeGreaterThanOrEqual(2);
    coord.autoAck = true;
    await expect.poll(() => store.outbox.length, { timeout: 5000 }).toBe(0);
  });
});

describe("agent link with several coordinator URLs", () => {
  /** A standby: completes the handshake and closes with the not-leader code, naming `leader`. */
  async function standby(leader: string) {
    const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    await new Promise<void>((r) => wss.once("listening", () => r()));
    let refused = 0;
    wss.on("connection", (ws) => {
      refused++;
      ws.close(NOT_LEADER_CLOSE_CODE, `standby coordinator; leader: ${leader}`);
    });
    return { wss, url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/agent/v1/ws`, refused: () => refused };
  }

  it("moves on from a standby's refusal to the leader it names, and delivers the outbox there once", async () => {
    const leaderHttp = coord.url.replace(/^ws/, "http").replace(/\/agent\/v1\/ws$/, "");
    const s1 = await standby(leaderHttp);
    const s2 = await standby(leaderHttp);
    try {
      const { link, store } = makeLink([s1.url, s2.url, coord.url]);
      link.send(notice);
      link.start();
      expect(await link.waitConnected(5000)).toBe(true);
      // The first standby named the leader: the link went straight there, past the second one.
      expect(s1.refused()).toBe(1);
      expect(s2.refused()).toBe(0);
      await expect.poll(() => store.outbox.length).toBe(0);
      expect(coord.raw.filter((m) => m.type === "notice")).toHaveLength(1);
    } finally {
      s1.wss.close();
      s2.wss.close();
    }
  });

  it("moves on from a coordinator that does not answer to the next URL", async () => {
    const dead = await standby("http://127.0.0.1:1");
    const deadUrl = dead.url;
    await new Promise<void>((r) => dead.wss.close(() => r()));
    const { link } = makeLink([deadUrl, coord.url]);
    link.start();
    expect(await link.waitConnected(5000)).toBe(true);
    expect(link.stats.connects).toBe(2);
  });
});

describe.skipIf(spawnSync("sh", ["-c", "command -v openssl"]).status !== 0)("agent link over TLS", () => {
  it("never talks to a wss:// coordinator it cannot verify, even with NODE_TLS_REJECT_UNAUTHORIZED=0", async () => {
    const pki = mkdtempSync(join(tmpdir(), "spotkeep-tls-"));
    const before = process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    const warn = vi.spyOn(process, "emitWarning").mockImplementation(() => {});
    const server = createHttpsServer(tlsCert(pki));
    const wss = new WebSocketServer({ server });
    let upgrades = 0;
    wss.on("connection", (ws) => {
      upgrades++;
      ws.close();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    try {
      process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
      const { link } = makeLink(`wss://127.0.0.1:${(server.address() as AddressInfo).port}/agent/v1/ws`);
      link.start();
      expect(await link.waitConnected(1500)).toBe(false);
      expect(upgrades).toBe(0);
      expect(link.stats.connects).toBeGreaterThanOrEqual(1);
    } finally {
      if (before === undefined) delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
      else process.env.NODE_TLS_REJECT_UNAUTHORIZED = before;
      warn.mockRestore();
      for (const l of links.splice(0)) await l.stop();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(pki, { recursive: true, force: true });
    }
  });
});

/** A self-signed certificate for 127.0.0.1 (no CA the agent trusts). */
function tlsCert(dir: string): { key: Buffer; cert: Buffer } {
  const r = spawnSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "k.pem",
      "-out",
      "c.pem",
      "-days",
      "1",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
    ],
    { cwd: dir, encoding: "utf8" },
  );
  if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
  return { key: readFileSync(join(dir, "k.pem")), cert: readFileSync(join(dir, "c.pem")) };
}
