/**
 * A test coordinator end: a ws server at /agent/v1/ws that welcomes every hello, acks every
 * agent message, records what arrived (raw and deduplicated by id, as the real hub does), and
 * lets a test drop the connection when a given message type arrives, or push commands.
 */
import { WebSocketServer, type WebSocket } from "ws";
import type { AddressInfo } from "node:net";
import { encodeMessage, newMessageId, parseMessage, type AgentMessage, type CoordinatorMessage } from "../../shared/protocol.js";

export interface FakeCoordinator {
  url: string;
  /** Every valid frame received, duplicates included. */
  raw: AgentMessage[];
  /** Delivered to "the application": first arrival of each message id only. */
  delivered: AgentMessage[];
  acksReceived: string[];
  /** Next time a message of this type arrives, close the connection WITHOUT acking it. */
  dropOn(type: string): void;
  /** When false, agent messages are not acked. */
  autoAck: boolean;
  welcomeConfig: { pollIntervalMs: number; heartbeatMs: number; mounts: unknown[]; hooks: Record<string, unknown> };
  send(msg: Omit<CoordinatorMessage, "v" | "id"> & { id?: string }): string;
  sendRaw(text: string): void;
  waitFor(pred: (m: AgentMessage) => boolean, timeoutMs?: number): Promise<AgentMessage>;
  connections: number;
  close(): Promise<void>;
}

export async function startFakeCoordinator(): Promise<FakeCoordinator> {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1", path: "/agent/v1/ws" });
  await new Promise<void>((r) => wss.once("listening", () => r()));
  let current: WebSocket | null = null;
  const drops = new Set<string>();
  const seen = new Set<string>();
  const listeners: Array<() => void> = [];
  const fc: FakeCoordinator = {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/agent/v1/ws`,
    raw: [],
    delivered: [],
    acksReceived: [],
    autoAck: true,
    connections: 0,
    welcomeConfig: { pollIntervalMs: 1000, heartbeatMs: 5000, mounts: [], hooks: { timeoutSeconds: 60 } },
    dropOn: (t) => void drops.add(t),
    send(msg) {
      const full = { v: 1, id: msg.id ?? newMessageId("c"), ...msg } as CoordinatorMessage;
      current?.send(encodeMessage(full, "from-coordinator"));
      return full.id;
    },
    sendRaw: (text) => current?.send(text),
    waitFor(pred, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = fc.raw.find(pred);
          if (m) {
            clearTimeout(t);
            listeners.splice(listeners.indexOf(check), 1);
            resolve(m);
          }
        };
        const t = setTimeout(() => {
          listeners.splice(listeners.indexOf(check), 1);
          reject(new Error(`fake coordinator: timed out waiting; got ${fc.raw.map((m) => m.type).join(",")}`));
        }, timeoutMs);
        listeners.push(check);
        check();
      });
    },
    close: async () => {
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    },
  };
  wss.on("connection", (ws) => {
    fc.connections++;
    current = ws;
    ws.on("message", (data) => {
      const parsed = parseMessage(data.toString(), "from-agent");
      if (!parsed.ok) throw new Error(`agent sent an invalid frame: ${parsed.error.message}`);
      const msg = parsed.message as AgentMessage;
      if (msg.type === "ack") {
        fc.acksReceived.push(msg.ref);
        return;
      }
      fc.raw.push(msg);
      if (drops.has(msg.type)) {
        drops.delete(msg.type);
        ws.terminate();
        for (const l of [...listeners]) l();
        return;
      }
      if (fc.autoAck) ws.send(encodeMessage({ v: 1, id: newMessageId("c"), type: "ack", ref: msg.id }, "from-coordinator"));
      if (!seen.has(msg.id)) {
        seen.add(msg.id);
        fc.delivered.push(msg);
      }
      if (msg.type === "hello") {
        ws.send(
          encodeMessage(
            {
              v: 1,
              id: newMessageId("c"),
              type: "welcome",
              statefulInstance: "orders-db",
              generation: 1,
              config: fc.welcomeConfig,
            } as CoordinatorMessage,
            "from-coordinator",
          ),
        );
      }
      for (const l of [...listeners]) l();
    });
  });
  return fc;
}
