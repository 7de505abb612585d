/**
 * The agent hub: WebSocket sessions with on-instance agents (design §5).
 *  - An agent is accepted only after a `hello` whose identity document verifies against the
 *    pinned certificate AND names an EC2 instance that is a managed, not-ended generation.
 *  - Malformed, oversized or binary frames close the session; nothing they carried is acted on.
 *  - Commands are at-least-once: kept until the agent acks them, resent on reconnect and on a
 *    timer. Inbound messages are acked and deduplicated by id before the service sees them.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { KeyObject } from "node:crypto";
import { WebSocketServer, type WebSocket, type RawData } from "ws";
import {
  MAX_FRAME_BYTES,
  encodeMessage,
  newMessageId,
  parseMessage,
  type AgentMessage,
  type CoordinatorMessage,
} from "../../shared/protocol.js";
import type { Clock } from "../../shared/clock.js";
import { IdentityError, verifyIdentity, type IdentityDocument } from "./identity.js";

export interface AgentSession {
  instanceId: string;
  statefulInstance: string;
  generation: number;
  mode: "run" | "restore";
  agentVersion: string;
  identity: IdentityDocument;
  connectedAt: number;
  lastSeenAt: number;
}

/** What a command looks like before the hub gives it an envelope. */
export type CommandBody = DistributiveOmit<CoordinatorMessage, "v" | "id" | "ts">;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export interface HubOptions {
  clock: Clock;
  publicKey: KeyObject;
  /** The managed generation for an EC2 instance id, or null (refused). */
  lookup(instanceId: string): { statefulInstance: string; generation: number } | null;
  /** welcome.config for an accepted agent. */
  welcome(session: AgentSession): Extract<CoordinatorMessage, { type: "welcome" }>["config"];
  /** An accepted hello (after welcome was sent). */
  onHello?(session: AgentSession): void;
  /** Every non-ack, non-hello message, once per id. */
  onMessage(session: AgentSession, message: AgentMessage): void;
  onRejected?(reason: string, detail: string): void;
  onConnectionCount?(n: number): void;
  /** Real ms a socket may stay silent before its hello; default 10 s. */
  helloTimeoutMs?: number;
  /** ms between resends of unacked commands; default 2 s. */
  resendMs?: number;
  log?: (line: string) => void;
}

interface Pending {
  id: string;
  text: string;
  sentAt: number;
}

export class AgentHub {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private readonly sessions = new Map<string, { ws: WebSocket; session: AgentSession }>();
  private readonly pending = new Map<string, Map<string, Pending>>();
  private readonly seen = new Map<string, Set<string>>();
  private resendTimer: (() => void) | null = null;
  private closed = false;

  constructor(private readonly opts: HubOptions) {
    this.wss.on("connection", (ws: WebSocket) => this.accept(ws));
    this.scheduleResend();
  }

  /** ApiServerDeps.onAgentUpgrade. */
  handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit("connection", ws, req));
  };

  get connected(): number {
    return this.sessions.size;
  }

  isConnected(instanceId: string): boolean {
    return this.sessions.has(instanceId);
  }

  session(instanceId: string): AgentSession | undefined {
    return this.sessions.get(instanceId)?.session;
  }

  /**
   * Queue a command for an agent; delivered now if connected, else on its next hello, and
   * resent until acked. Returns the message id (replies carry it as `ref`).
   */
  send(instanceId: string, body: CommandBody, id: string = newMessageId("c")): string {
    const text = encodeMessage(
      { ...body, v: 1, id, ts: new Date(this.opts.clock.now()).toISOString() } as CoordinatorMessage,
      "from-coordinator",
    );
    let q = this.pending.get(instanceId);
    if (!q) this.pending.set(instanceId, (q = new Map()));
    if (!q.has(id)) q.set(id, { id, text, sentAt: this.opts.clock.now() });
    this.sessions.get(instanceId)?.ws.send(text);
    return id;
  }

  /** Forget queued commands for an instance that is gone. */
  forget(instanceId: string): void {
    this.pending.delete(instanceId);
    this.seen.delete(instanceId);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.resendTimer?.();
    for (const { ws } of this.sessions.values()) ws.terminate();
    for (const ws of this.wss.clients) ws.terminate();
    this.sessions.clear();
    await new Promise<void>((r) => this.wss.close(() => r()));
  }

  private scheduleResend(): void {
    if (this.closed) return;
    const every = this.opts.resendMs ?? 2000;
    this.resendTimer = this.opts.clock.setTimer(every, () => {
      const now = this.opts.clock.now();
      for (const [instanceId, q] of this.pending) {
        const s = this.sessions.get(instanceId);
        if (!s) continue;
        for (const p of q.values()) {
          if (now - p.sentAt >= every) {
            p.sentAt = now;
            s.ws.send(p.text);
          }
        }
      }
      this.scheduleResend();
    });
  }

  private reject(ws: WebSocket, code: number, reason: string, detail: string): void {
    this.opts.onRejected?.(reason, detail);
    this.opts.log?.(`agent session closed (${reason}): ${detail}`);
    try {
      if (code === 1008 && ws.readyState === ws.OPEN)
        ws.send(
          encodeMessage({ v: 1, id: newMessageId("e"), type: "error", code: reason, message: detail.slice(0, 1000) }, "from-coordinator"),
        );
    } catch {
      /* best effort */
    }
    ws.close(code, detail.slice(0, 120));
    // A peer that ignores the close handshake is cut off.
    const kill = this.opts.clock.setTimer(5000, () => ws.terminate());
    ws.once("close", kill);
  }

  private accept(ws: WebSocket): void {
    let session: AgentSession | null = null;
    // Real time, not the (possibly scaled) clock: this bounds a socket's silence on this host,
    // and an agent busy fetching its identity under load must not be cut off by a time scale.
    const helloTimer = setTimeout(() => {
      if (!session) this.reject(ws, 1008, "hello-timeout", "no hello within the timeout");
    }, this.opts.helloTimeoutMs ?? 10_000);
    const cancelHello = () => clearTimeout(helloTimer);
    ws.on("error", () => undefined);
    ws.on("close", (code) => {
      cancelHello();
      if (code === 1009) this.opts.onRejected?.("oversized-frame", `frame larger than ${MAX_FRAME_BYTES} bytes`);
      if (session && this.sessions.get(session.instanceId)?.ws === ws) {
        this.sessions.delete(session.instanceId);
        this.opts.onConnectionCount?.(this.sessions.size);
      }
    });
    ws.on("message", (data: RawData, isBinary: boolean) => {
      if (isBinary) return this.reject(ws, 1003, "binary-frame", "binary frames are not part of the protocol");
      const text = Array.isArray(data) ? Buffer.concat(data).toString("utf8") : Buffer.from(data as ArrayBuffer).toString("utf8");
      const parsed = parseMessage(text, "from-agent");
      if (!parsed.ok) return this.reject(ws, 1007, "malformed-frame", parsed.error.message);
      const msg = parsed.message as AgentMessage;
      if (!session) {
        // An ack left over from the agent's previous connection carries no request: drop it.
        if (msg.type === "ack") return;
        if (msg.type !== "hello") return this.reject(ws, 1008, "no-hello", `first message must be hello, got ${msg.type}`);
        session = this.hello(ws, msg);
        if (session) cancelHello();
        return;
      }
      session.lastSeenAt = this.opts.clock.now();
      if (msg.type === "hello") return; // a repeated hello on an open session changes nothing
      if (msg.type === "ack") {
        this.pending.get(session.instanceId)?.delete(msg.ref);
        return;
      }
      ws.send(encodeMessage({ v: 1, id: newMessageId("a"), type: "ack", ref: msg.id }, "from-coordinator"));
      let seen = this.seen.get(session.instanceId);
      if (!seen) this.seen.set(session.instanceId, (seen = new Set()));
      if (seen.has(msg.id)) return;
      seen.add(msg.id);
      if (seen.size > 5000) seen.delete(seen.values().next().value!);
      if (msg.type === "heartbeat") return;
      try {
        this.opts.onMessage(session, msg);
      } catch (err) {
        this.opts.log?.(`handling ${msg.type} from ${session.instanceId}: ${(err as Error).message}`);
      }
    });
  }

  private hello(ws: WebSocket, msg: Extract<AgentMessage, { type: "hello" }>): AgentSession | null {
    let identity: IdentityDocument;
    try {
      identity = verifyIdentity(msg.identity.document, msg.identity.signature, this.opts.publicKey);
    } catch (err) {
      this.reject(ws, 1008, "forged-identity", err instanceof IdentityError ? err.message : String(err));
      return null;
    }
    const managed = this.opts.lookup(identity.instanceId);
    if (!managed) {
      this.reject(ws, 1008, "unknown-instance", `${identity.instanceId} is not a live generation of any stateful instance`);
      return null;
    }
    const now = this.opts.clock.now();
    const session: AgentSession = {
      instanceId: identity.instanceId,
      statefulInstance: managed.statefulInstance,
      generation: managed.generation,
      mode: msg.mode,
      agentVersion: msg.agentVersion,
      identity,
      connectedAt: now,
      lastSeenAt: now,
    };
    const old = this.sessions.get(identity.instanceId);
    if (old && old.ws !== ws) old.ws.close(1000, "replaced by a newer session");
    this.sessions.set(identity.instanceId, { ws, session });
    this.opts.onConnectionCount?.(this.sessions.size);
    ws.send(
      encodeMessage(
        {
          v: 1,
          id: newMessageId("w"),
          type: "welcome",
          statefulInstance: managed.statefulInstance,
          generation: managed.generation,
          config: this.opts.welcome(session),
        },
        "from-coordinator",
      ),
    );
    const already = new Set(msg.lastSeen ?? []);
    for (const p of this.pending.get(identity.instanceId)?.values() ?? []) {
      if (already.has(p.id)) continue;
      p.sentAt = now;
      ws.send(p.text);
    }
    this.opts.onHello?.(session);
    return session;
  }
}
