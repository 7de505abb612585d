/**
 * Agent sessions across a coordinator failover, at the link: the leader the agent is welcomed by
 * stops answering without closing anything (as a SIGSTOPped or frozen process: its socket stays
 * open and accepts writes). A notice raised meanwhile sits in the outbox; the agent must notice the
 * silence, move on to the next coordinator on its list (the new leader), and deliver the notice
 * there exactly once.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AgentLink } from "../../agent/link/client.js";
import { StateStore } from "../../agent/link/state.js";
import { silentLogger } from "../../agent/log.js";
import { realClock } from "../../shared/clock.js";
import { type FakeCoordinator, startFakeCoordinator } from "./fake-coordinator.js";

const SCALE = 0.01;
let dir: string;
let leader: FakeCoordinator;
let next: FakeCoordinator;
const links: AgentLink[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-link-failover-"));
  leader = await startFakeCoordinator();
  next = await startFakeCoordinator();
  for (const c of [leader, next]) c.welcomeConfig.heartbeatMs = 10_000; // model ms -> 100 ms real
});
afterEach(async () => {
  for (const l of links.splice(0)) await l.stop();
  await leader.close();
  await next.close();
  rmSync(dir, { recursive: true, force: true });
});

const notice = {
  type: "notice" as const,
  noticeId: "spot-interruption-failover",
  kind: "spot-interruption" as const,
  action: "terminate",
  deadline: "2030-01-01T00:02:00.000Z",
  observedAt: "2030-01-01T00:00:00.000Z",
  raw: '{"action":"terminate","time":"2030-01-01T00:02:00Z"}',
};

function makeLink(urls: string[]) {
  const store = new StateStore(dir, silentLogger).load("i-0123456789abcdef0");
  const link = new AgentLink({
    urls,
    clock: realClock,
    log: silentLogger,
    store,
    hello: async () => ({
      identity: { document: '{"instanceId":"i-0123456789abcdef0"}', signature: "c2ln" },
      agentVersion: "0.1.0",
      mode: "run",
      sessionSecret: "test-session-secret-0123456789abcdefghijklmno",
    }),
    onCommand: () => undefined,
    scale: (ms) => Math.max(1, ms * SCALE),
  });
  links.push(link);
  return { link, store };
}

describe("agent link across a failover", () => {
  it("a leader that goes silent with its socket open is left after three heartbeats; a notice raised meanwhile reaches the next coordinator exactly once", async () => {
    const { link, store } = makeLink([leader.url, next.url]);
    link.start();
    expect(await link.waitConnected(5000)).toBe(true);
    expect(next.connections).toBe(0);
    // The leader stops answering anything (acks, heartbeats), as a paused process would.
    leader.autoAck = false;
    link.send(notice);
    await leader.waitFor((m) => m.type === "notice");
    expect(store.outbox.length).toBe(1);
    await next.waitFor((m) => m.type === "notice");
    await expect.poll(() => store.outbox.length).toBe(0);
    expect(next.delivered.filter((m) => m.type === "notice")).toHaveLength(1);
    expect(next.raw.filter((m) => m.type === "notice")).toHaveLength(1);
    expect(link.connected).toBe(true);
    expect(link.stats.disconnects).toBe(1);
  });

  it("a coordinator that keeps acking heartbeats is never left, however long the session", async () => {
    const { link } = makeLink([leader.url, next.url]);
    link.start();
    expect(await link.waitConnected(5000)).toBe(true);
    // Twenty heartbeat intervals.
    await new Promise((r) => setTimeout(r, 2000));
    expect(link.stats.disconnects).toBe(0);
    expect(next.connections).toBe(0);
    expect(leader.raw.filter((m) => m.type === "heartbeat").length).toBeGreaterThan(5);
  });
});
