import { afterEach, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import WebSocket from "ws";
import { NOT_LEADER_CLOSE_CODE } from "../../shared/coordinators.js";
import { StandbyRefusals } from "./refuse.js";

let server: Server | null = null;
const refusals = new StandbyRefusals();
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = null;
});

async function standby(leader: string | null): Promise<string> {
  server = createServer();
  server.on("upgrade", (req, socket, head) => refusals.refuse(req, socket, head, leader));
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/agent/v1/ws`;
}

function closeOf(url: string, send?: string): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on("open", () => send && ws.send(send));
    ws.on("error", () => undefined);
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() }));
  });
}

describe("a standby's refusal of agents", () => {
  it("closes with the not-leader code and a reason naming the leader", async () => {
    const url = await standby("http://10.0.1.5:7400");
    expect(await closeOf(url)).toEqual({ code: NOT_LEADER_CLOSE_CODE, reason: "standby coordinator; leader: http://10.0.1.5:7400" });
  });

  it("says when no coordinator leads", async () => {
    const url = await standby(null);
    expect(await closeOf(url)).toMatchObject({ code: NOT_LEADER_CLOSE_CODE, reason: "standby coordinator; no leader just now" });
  });

  it("a hello larger than the refusal socket accepts ends that connection, not the process (regression: an unhandled ws error)", async () => {
    const url = await standby("http://10.0.1.5:7400");
    const big = JSON.stringify({ type: "hello", identity: "x".repeat(64 * 1024) });
    const closes = await Promise.all(Array.from({ length: 5 }, () => closeOf(url, big)));
    for (const c of closes) expect([NOT_LEADER_CLOSE_CODE, 1006, 1009]).toContain(c.code);
    expect(await closeOf(url)).toMatchObject({ code: NOT_LEADER_CLOSE_CODE });
  });
});
