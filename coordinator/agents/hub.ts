/**
 * The agent hub: WebSocket sessions with on-instance agents.
 *  - An agent is accepted only after a `hello` whose identity document verifies against the
 *    pinned certificate, names an EC2 instance that is a managed, not-ended generation, comes from
 *    one of that generation's private addresses, and presents the session secret registered at the
 *    instance's first hello. On a root disk made from an earlier generation's root, that first hello
 *    must also present the secret the root carries before its own is registered. A refused hello is reported through `onRejected` and closes only its
 *    own connection: the session already open for that instance is never touched by it.
 *  - A new session replaces an open one for the same instance only after proving the same secret.
 *  - Until its hello is verified a connection holds a pre-hello slot (capped in total and per
 *    source address; beyond the caps the upgrade is answered 503) and gets nothing but errors;
 *    `welcome` (hooks may carry secrets) goes to verified sessions only.
 *  - Malformed, oversized or binary frames close the session; nothing they carried is acted on.
 *  - Commands are at-least-once: kept until the agent acks them, resent on reconnect and on a
 *    timer. Inbound messages are handled one at a time per connection, deduplicated by id, and
 *    acked once handled. A reply (`quiesced`, `restored`, `volume-changed`) is handed on only when its `ref` names a
 *    command of the matching kind sent to that instance and not yet answered; reports beyond a
 *    per-minute count and byte budget are dropped unacknowledged.
 *  - An exception in a handler closes that session with 1011; it never reaches the process.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { BlockList } from "node:net";
import { WebSocketServer, type WebSocket, type RawData } from "ws";
import {
  MAX_FRAME_BYTES,
  encodeMessage,
  newMessageId,
  parseMessage,
  type AgentMessage,
  type CoordinatorMessage,
  type MessageOf,
} from "../../shared/protocol.js";
import { safeTimeout, type Clock } from "../../shared/clock.js";
import { IdentityError, verifyIdentity, type IdentityDocument, type IdentityKeys } from "./identity.js";
import { hashSessionSecret, sessionSecretMatches } from "./session-secret.js";
import { clientAddress, isLoopback, parseTrustedProxies } from "./source-address.js";
import { DEFAULT_REPORT_LIMITS, PreHelloGate, ReportWindow, type PreHelloSlot, type ReportLimits } from "./limits.js";

export interface AgentSession {
  instanceId: string;
  statefulInstance: string;
  generation: number;
  mode: "run" | "restore";
  agentVersion: string;
  identity: IdentityDocument;
  /** The client address the session was verified from. */
  source: string;
  connectedAt: number;
  lastSeenAt: number;
}

/** What the hub needs to know about the generation an EC2 instance id belongs to. */
export interface ManagedInstance {
  statefulInstance: string;
  generation: number;
  /** The generation's private addresses as EC2 knows them; a session must come from one of them. */
  privateIps: string[];
  /** What `registerSessionSecret` recorded at this EC2 instance's first hello; null before it. */
  sessionSecretHash: string | null;
  /**
   * The secret the instance's root disk carries (registered by `generation`, whose root the boot
   * image was made from), which the first hello must present as `carriedSecret`; null for a fresh root.
   */
  carriedSecret: { hash: string; generation: number } | null;
}

/** Why a connection or message was refused; the service counts these. */
export type RejectionReason =
  | "pre-hello-cap"
  | "hello-timeout"
  | "no-hello"
  | "forged-identity"
  | "unknown-instance"
  | "source-address-mismatch"
  | "session-secret-mismatch"
  | "carried-secret-mismatch"
  | "binary-frame"
  | "malformed-frame"
  | "oversized-frame"
  | "unsolicited-reply"
  | "report-flood"
  | "handler-error"
  | "boot-report-refused";

/** A boot report the hub refused; the message says why. */
export class BootReportRefused extends Error {
  override name = "BootReportRefused";
}

export interface RejectionContext {
  /** The EC2 instance the refused hello or message was about, when known. */
  instanceId?: string;
  statefulInstance?: string;
  /** The client address it came from. */
  source?: string;
}

/** What a command looks like before the hub gives it an envelope. */
export type CommandBody = DistributiveOmit<CoordinatorMessage, "v" | "id" | "ts">;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
export type WelcomeConfig = Extract<CoordinatorMessage, { type: "welcome" }>["config"];

export interface HubOptions {
  clock: Clock;
  /** The identity certificate's key, or each managed region's. */
  publicKey: IdentityKeys;
  /** The managed, not-ended generation for an EC2 instance id, or null (refused). */
  lookup(instanceId: string): Promise<ManagedInstance | null>;
  /**
   * Record `hash` as the instance's session secret only if none is recorded yet (compare-and-set).
   * Resolves false when another hash is already there.
   */
  registerSessionSecret(instanceId: string, hash: string): Promise<boolean>;
  /** welcome.config for a verified session. */
  welcome(session: AgentSession): WelcomeConfig | Promise<WelcomeConfig>;
  /** A verified hello (after welcome was sent). */
  onHello?(session: AgentSession): void | Promise<void>;
  /** Every non-ack, non-hello, non-heartbeat message that passed the checks, once per id. */
  onMessage(session: AgentSession, message: AgentMessage): void | Promise<void>;
  /** Every heartbeat of a verified session (acked at once; the health checks read it). */
  onHeartbeat?(session: AgentSession, message: MessageOf<"heartbeat">): void;
  onRejected?(reason: RejectionReason, detail: string, context?: RejectionContext): void;
  onConnectionCount?(n: number): void;
  /** Real ms a connection may take to complete its hello; default 10 s, clamped to 100 ms..2 min. */
  helloTimeoutMs?: number;
  /** ms between resends of unacked commands; default 2 s, clamped to 50 ms..1 min. */
  resendMs?: number;
  /**
   * Require a session's source address to be one of its instance's private addresses (default
   * true). While on, loopback sources are always refused: no instance connects from the
   * coordinator's own host. Off only where instances share the coordinator's address, such as
   * localcloud's process runtime.
   */
  checkSourceAddress?: boolean;
  /**
   * Addresses or CIDRs of TLS-terminating proxies in front of the coordinator. A connection from
   * one of them is attributed to the client address it appends to X-Forwarded-For; from anything
   * else the header is ignored.
   */
  trustProxy?: string[];
  /** Connections without a verified hello, in total (default 256) and per source address (default 16). */
  maxPreHello?: number;
  maxPreHelloPerSource?: number;
  /** Per-instance budget for messages other than heartbeats and acks. */
  reportLimits?: Partial<ReportLimits>;
  log?: (line: string) => void;
}

interface Pending {
  id: string;
  text: string;
  sentAt: number;
}

/** The reply each command expects, by command type. */
type ReplyType = "quiesced" | "restored" | "volume-changed";
const REPLY_TO: Partial<Record<CoordinatorMessage["type"], ReplyType>> = {
  quiesce: "quiesced",
  "freeze-for-snapshot": "quiesced",
  "restore-plan": "restored",
  "volume-change": "volume-changed",
};
/** Unanswered commands remembered per instance; the oldest is forgotten beyond this. */
const MAX_OUTSTANDING = 256;
const MAX_SEEN = 5000;

interface Connection {
  ws: WebSocket;
  source: string;
  slot: PreHelloSlot;
  session: AgentSession | null;
  helloInFlight: boolean;
  /** Inbound messages are handled in order, one at a time. */
  chain: Promise<void>;
}

const clamp = (v: number | undefined, def: number, min: number, max: number) =>
  v === undefined || Number.isNaN(v) ? def : Math.min(max, Math.max(min, v));

export class AgentHub {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private readonly sessions = new Map<string, Connection>();
  private readonly pending = new Map<string, Map<string, Pending>>();
  private readonly outstanding = new Map<string, Map<string, ReplyType>>();
  /** Commands whose reply was handled (recent ones), so a second answer is told from an unknown one. */
  private readonly answered = new Map<string, Set<string>>();
  /** Dropped-but-unacked reply ids already reported, so a resent one is reported once. */
  private readonly reported = new Map<string, Set<string>>();
  private readonly seen = new Map<string, Set<string>>();
  private readonly windows = new Map<string, ReportWindow>();
  private readonly gate: PreHelloGate;
  private readonly trusted: BlockList | null;
  private readonly limits: ReportLimits;
  private readonly helloTimeoutMs: number;
  private readonly resendMs: number;
  private resendTimer: (() => void) | null = null;
  private closed = false;

  constructor(private readonly opts: HubOptions) {
    this.gate = new PreHelloGate(clamp(opts.maxPreHello, 256, 1, 1_000_000), clamp(opts.maxPreHelloPerSource, 16, 1, 1_000_000));
    this.trusted = opts.trustProxy?.length ? parseTrustedProxies(opts.trustProxy) : null;
    this.limits = {
      messagesPerMinute: clamp(opts.reportLimits?.messagesPerMinute, DEFAULT_REPORT_LIMITS.messagesPerMinute, 1, 1_000_000),
      bytesPerMinute: clamp(opts.reportLimits?.bytesPerMinute, DEFAULT_REPORT_LIMITS.bytesPerMinute, MAX_FRAME_BYTES, 2 ** 40),
    };
    this.helloTimeoutMs = clamp(opts.helloTimeoutMs, 10_000, 100, 120_000);
    this.resendMs = clamp(opts.resendMs, 2000, 50, 60_000);
    this.scheduleResend();
  }

  /** ApiServerDeps.onAgentUpgrade. Never throws. */
  handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on("error", () => socket.destroy());
    if (this.closed) {
      socket.destroy();
      return;
    }
    try {
      const source = clientAddress(req, this.trusted);
      const slot = this.gate.acquire(source);
      if ("refused" in slot) {
        const cap = slot.refused === "total" ? `${this.gate.maxTotal} in total` : `${this.gate.maxPerSource} from ${source}`;
        this.rejected("pre-hello-cap", `more than ${cap} connections are waiting for their hello; upgrade refused`, { source });
        socket.end("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n");
        return;
      }
      // Whatever happens to the socket (a failed handshake included), its slot comes back.
      socket.once("close", slot.release);
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, source, slot));
    } catch (err) {
      this.opts.log?.(`agent upgrade failed: ${(err as Error)?.message ?? String(err)}`);
      socket.destroy();
    }
  };

  get connected(): number {
    return this.sessions.size;
  }

  /** Connections that have not (yet) completed a verified hello. */
  get preHello(): number {
    return this.gate.count;
  }

  isConnected(instanceId: string): boolean {
    return this.sessions.has(instanceId);
  }

  session(instanceId: string): AgentSession | undefined {
    return this.sessions.get(instanceId)?.session ?? undefined;
  }

  /**
   * Queue a command for an agent; delivered now if connected, else on its next hello, and
   * resent until acked. Returns the message id (replies carry it as `ref`). A command that expects
   * a reply stays outstanding until that reply has been handled.
   */
  send(instanceId: string, body: CommandBody, id: string = newMessageId("c")): string {
    const text = encodeMessage(
      { ...body, v: 1, id, ts: new Date(this.opts.clock.now()).toISOString() } as CoordinatorMessage,
      "from-coordinator",
    );
    let q = this.pending.get(instanceId);
    if (!q) this.pending.set(instanceId, (q = new Map()));
    if (!q.has(id)) q.set(id, { id, text, sentAt: this.opts.clock.now() });
    const reply = REPLY_TO[body.type];
    if (reply) {
      let o = this.outstanding.get(instanceId);
      if (!o) this.outstanding.set(instanceId, (o = new Map()));
      if (!o.has(id)) o.set(id, reply);
      if (o.size > MAX_OUTSTANDING) o.delete(o.keys().next().value!);
    }
    this.sessions.get(instanceId)?.ws.send(text);
    return id;
  }

  /** Forget queued and outstanding commands, seen ids and report budgets of an instance that is gone. */
  forget(instanceId: string): void {
    this.pending.delete(instanceId);
    this.outstanding.delete(instanceId);
    this.answered.delete(instanceId);
    this.reported.delete(instanceId);
    this.seen.delete(instanceId);
    this.windows.delete(instanceId);
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
    const every = this.resendMs;
    this.resendTimer = this.opts.clock.setTimer(every, () => {
      const now = this.opts.clock.now();
      for (const [instanceId, q] of this.pending) {
        const c = this.sessions.get(instanceId);
        if (!c) continue;
        for (const p of q.values()) {
          if (now - p.sentAt >= every) {
            p.sentAt = now;
            c.ws.send(p.text);
          }
        }
      }
      this.scheduleResend();
    });
  }

  /** onRejected, which must never break the hub. */
  private rejected(reason: RejectionReason, detail: string, context?: RejectionContext): void {
    try {
      this.opts.onRejected?.(reason, detail, context);
    } catch (err) {
      this.opts.log?.(`onRejected(${reason}) threw: ${(err as Error)?.message ?? String(err)}`);
    }
  }

  /** Refuse and close one connection (never any other). */
  private reject(conn: Connection, code: number, reason: RejectionReason, detail: string, context?: RejectionContext): void {
    const { ws } = conn;
    this.rejected(reason, detail, { source: conn.source, ...context });
    this.opts.log?.(`agent connection from ${conn.source || "?"} closed (${reason}): ${detail}`);
    try {
      if (code === 1008 && ws.readyState === ws.OPEN)
        ws.send(
          encodeMessage({ v: 1, id: newMessageId("e"), type: "error", code: reason, message: detail.slice(0, 1000) }, "from-coordinator"),
        );
    } catch {
      /* best effort */
    }
    this.closeConnection(conn, code, detail);
  }

  private closeConnection(conn: Connection, code: number, reason: string): void {
    const { ws } = conn;
    if (ws.readyState === ws.CLOSED) return;
    ws.close(code, reason.slice(0, 120));
    // A peer that ignores the close handshake is cut off.
    const kill = safeTimeout(5000, () => ws.terminate());
    ws.once("close", kill);
  }

  /** A handler failed: that session ends with 1011, nothing else does. */
  private internalError(conn: Connection, what: string, err: unknown): void {
    const message = (err as Error)?.message ?? String(err);
    const s = conn.session;
    this.rejected("handler-error", `${what}: ${message}`, {
      source: conn.source,
      ...(s ? { instanceId: s.instanceId, statefulInstance: s.statefulInstance } : {}),
    });
    this.opts.log?.(`agent ${s?.instanceId ?? conn.source}: ${what} failed: ${message}; closing the session (1011)`);
    this.closeConnection(conn, 1011, "internal error");
  }

  private accept(ws: WebSocket, source: string, slot: PreHelloSlot): void {
    const conn: Connection = { ws, source, slot, session: null, helloInFlight: false, chain: Promise.resolve() };
    // Real time, not the (possibly scaled) clock: this bounds a connection's silence on this host,
    // and an agent busy fetching its identity under load must not be cut off by a time scale.
    const cancelHello = safeTimeout(this.helloTimeoutMs, () => {
      if (!conn.session) this.reject(conn, 1008, "hello-timeout", `no verified hello within ${this.helloTimeoutMs} ms`);
    });
    ws.on("error", () => undefined);
    ws.on("close", (code) => {
      cancelHello();
      slot.release();
      if (code === 1009) this.rejected("oversized-frame", `frame larger than ${MAX_FRAME_BYTES} bytes`, { source });
      const s = conn.session;
      if (s && this.sessions.get(s.instanceId) === conn) {
        this.sessions.delete(s.instanceId);
        this.notifyCount();
      }
    });
    ws.on("message", (data: RawData, isBinary: boolean) => {
      try {
        this.onFrame(conn, data, isBinary, cancelHello);
      } catch (err) {
        this.internalError(conn, "handling a frame", err);
      }
    });
  }

  private onFrame(conn: Connection, data: RawData, isBinary: boolean, cancelHello: () => void): void {
    if (isBinary) return this.reject(conn, 1003, "binary-frame", "binary frames are not part of the protocol");
    const text = Array.isArray(data) ? Buffer.concat(data).toString("utf8") : Buffer.from(data as ArrayBuffer).toString("utf8");
    const parsed = parseMessage(text, "from-agent");
    if (!parsed.ok) return this.reject(conn, 1007, "malformed-frame", parsed.error.message, this.contextOf(conn));
    const msg = parsed.message as AgentMessage;
    const session = conn.session;
    if (!session) {
      // Nothing is acted on while the hello is being checked; a durable message is resent after welcome.
      if (conn.helloInFlight) return;
      // An ack left over from the agent's previous connection carries no request: drop it.
      if (msg.type === "ack") return;
      if (msg.type !== "hello") return this.reject(conn, 1008, "no-hello", `first message must be hello, got ${msg.type}`);
      conn.helloInFlight = true;
      this.hello(conn, msg)
        .then((ok) => {
          if (ok) cancelHello();
        })
        .catch((err) => this.internalError(conn, "checking the hello", err))
        .finally(() => {
          conn.helloInFlight = false;
        });
      return;
    }
    session.lastSeenAt = this.opts.clock.now();
    switch (msg.type) {
      case "hello":
        return; // a repeated hello on an open session changes nothing
      case "ack":
        this.pending.get(session.instanceId)?.delete(msg.ref);
        return;
      case "heartbeat":
        this.opts.onHeartbeat?.(session, msg);
        return this.ack(conn, msg.id);
    }
    if (this.seen.get(session.instanceId)?.has(msg.id)) return this.ack(conn, msg.id);
    let window = this.windows.get(session.instanceId);
    if (!window) this.windows.set(session.instanceId, (window = new ReportWindow(this.limits)));
    const took = window.take(this.opts.clock.now(), Buffer.byteLength(text));
    if (!took.ok) {
      if (took.firstDrop)
        this.rejected("report-flood", `${session.instanceId} sent ${took.why}; dropping the excess until the minute is over`, {
          ...this.contextOf(conn),
        });
      return;
    }
    conn.chain = conn.chain
      .then(() => this.handle(conn, session, msg))
      .catch((err) => this.internalError(conn, `handling ${msg.type}`, err));
  }

  private async handle(conn: Connection, session: AgentSession, msg: AgentMessage): Promise<void> {
    if (conn.ws.readyState !== conn.ws.OPEN) return; // unacked: the agent resends it on its next session
    const seen = this.seenFor(session.instanceId);
    if (seen.has(msg.id)) return this.ack(conn, msg.id);
    let answers: string | null = null;
    if (msg.type === "quiesced" || msg.type === "restored" || msg.type === "volume-changed") {
      const verdict = this.replyVerdict(session.instanceId, msg.type, msg.ref);
      if (verdict !== "outstanding") {
        const { instanceId } = session;
        const ref = JSON.stringify(msg.ref);
        const why = {
          "no-ref": `${instanceId} sent ${msg.type} without ref; only replies to outstanding commands are accepted`,
          "wrong-kind": `${instanceId} sent ${msg.type} for ${ref}, a command that expects another reply`,
          answered: `${instanceId} sent a second ${msg.type} for ${ref}, which was already answered`,
          unknown:
            `${instanceId} sent ${msg.type} for ${ref}, which is no outstanding command of this instance ` +
            "(left unacknowledged: after a coordinator restart the command is sent again)",
        }[verdict];
        if (verdict === "unknown") {
          // Not acked, so the agent resends it; taken once the command is outstanding again
          // (a workflow resumed after a restart sends it anew). Reported once per message.
          if (this.noteOnce(instanceId, msg.id)) this.rejected("unsolicited-reply", why, this.contextOf(conn));
          return;
        }
        this.markSeen(seen, msg.id);
        this.ack(conn, msg.id); // it can never become valid: acknowledged so it is not resent, acted on never
        this.rejected("unsolicited-reply", why, this.contextOf(conn));
        return;
      }
      answers = msg.ref!;
    }
    await this.opts.onMessage(session, msg);
    if (answers) {
      this.outstanding.get(session.instanceId)?.delete(answers);
      this.remember(this.answered, session.instanceId, answers, MAX_OUTSTANDING);
    }
    this.markSeen(seen, msg.id);
    this.ack(conn, msg.id);
  }

  private replyVerdict(
    instanceId: string,
    type: ReplyType,
    ref: string | undefined,
  ): "outstanding" | "no-ref" | "wrong-kind" | "answered" | "unknown" {
    if (ref === undefined) return "no-ref";
    const expected = this.outstanding.get(instanceId)?.get(ref);
    if (expected === type) return "outstanding";
    if (expected) return "wrong-kind";
    return this.answered.get(instanceId)?.has(ref) ? "answered" : "unknown";
  }

  /** True the first time a dropped message id is noted (bounded memory). */
  private noteOnce(instanceId: string, id: string): boolean {
    if (this.reported.get(instanceId)?.has(id)) return false;
    this.remember(this.reported, instanceId, id, MAX_OUTSTANDING);
    return true;
  }

  private remember(map: Map<string, Set<string>>, instanceId: string, id: string, max: number): void {
    let set = map.get(instanceId);
    if (!set) map.set(instanceId, (set = new Set()));
    set.add(id);
    if (set.size > max) set.delete(set.values().next().value!);
  }

  private seenFor(instanceId: string): Set<string> {
    let seen = this.seen.get(instanceId);
    if (!seen) this.seen.set(instanceId, (seen = new Set()));
    return seen;
  }

  private markSeen(seen: Set<string>, id: string): void {
    seen.add(id);
    if (seen.size > MAX_SEEN) seen.delete(seen.values().next().value!);
  }

  private ack(conn: Connection, ref: string): void {
    if (conn.ws.readyState !== conn.ws.OPEN) return;
    conn.ws.send(encodeMessage({ v: 1, id: newMessageId("a"), type: "ack", ref }, "from-coordinator"));
  }

  private contextOf(conn: Connection): RejectionContext {
    const s = conn.session;
    return s ? { instanceId: s.instanceId, statefulInstance: s.statefulInstance, source: conn.source } : { source: conn.source };
  }

  private notifyCount(): void {
    try {
      this.opts.onConnectionCount?.(this.sessions.size);
    } catch {
      /* a gauge must not break the hub */
    }
  }

  /**
   * A bootstrap's report that it cannot start the agent, checked as a hello is: the identity
   * document's signature, a managed generation that is not ended, the source address (when
   * checked), and one more: its agent has never said hello (no session secret registered), since a
   * boot that got as far as an agent has the session to speak through. Returns the instance, or
   * throws BootReportRefused saying why (counted and logged as a refusal).
   */
  async verifyBootReport(
    req: IncomingMessage,
    document: string,
    signature: string,
  ): Promise<{ instanceId: string; statefulInstance: string; generation: number }> {
    const source = clientAddress(req, this.trusted);
    const refuse = (reason: RejectionReason, detail: string, context?: RejectionContext): never => {
      this.rejected(reason, `boot report: ${detail}`, { source, ...context });
      throw new BootReportRefused(detail);
    };
    let identity: IdentityDocument;
    try {
      identity = verifyIdentity(document, signature, this.opts.publicKey);
    } catch (err) {
      return refuse("forged-identity", err instanceof IdentityError ? err.message : String(err));
    }
    const instanceId = identity.instanceId;
    const managed = await this.opts.lookup(instanceId);
    if (!managed) return refuse("unknown-instance", `${instanceId} is not a live generation of any stateful instance`, { instanceId });
    const ctx: RejectionContext = { instanceId, statefulInstance: managed.statefulInstance };
    if (this.opts.checkSourceAddress !== false) {
      const allowed = managed.privateIps.map((a) => a.trim());
      if (!source || isLoopback(source) || !allowed.includes(source))
        return refuse(
          "source-address-mismatch",
          `${instanceId}: ${source || "an unknown address"} is not one of its private addresses`,
          ctx,
        );
    }
    if (managed.sessionSecretHash !== null)
      return refuse("boot-report-refused", `${instanceId}: its agent has said hello, so its bootstrap did start it`, ctx);
    return { instanceId, statefulInstance: managed.statefulInstance, generation: managed.generation };
  }

  /** Verify a hello; true when the connection became the instance's session. */
  private async hello(conn: Connection, msg: Extract<AgentMessage, { type: "hello" }>): Promise<boolean> {
    const { ws, source } = conn;
    const gone = () => this.closed || ws.readyState !== ws.OPEN;
    let identity: IdentityDocument;
    try {
      identity = verifyIdentity(msg.identity.document, msg.identity.signature, this.opts.publicKey);
    } catch (err) {
      this.reject(conn, 1008, "forged-identity", err instanceof IdentityError ? err.message : String(err));
      return false;
    }
    const instanceId = identity.instanceId;
    let managed = await this.opts.lookup(instanceId);
    if (gone()) return false;
    if (!managed) {
      this.reject(conn, 1008, "unknown-instance", `${instanceId} is not a live generation of any stateful instance`, { instanceId });
      return false;
    }
    const ctx: RejectionContext = { instanceId, statefulInstance: managed.statefulInstance, source };
    const who = `hello for ${instanceId} (${managed.statefulInstance} generation ${managed.generation}) from ${source || "an unknown address"}`;
    if (this.opts.checkSourceAddress !== false) {
      const allowed = managed.privateIps.map((a) => a.trim());
      if (!source || isLoopback(source) || !allowed.includes(source)) {
        this.reject(
          conn,
          1008,
          "source-address-mismatch",
          `${who}: not one of the instance's private addresses (${allowed.join(", ") || "none known"})` +
            (this.sessions.has(instanceId) ? "; the open session is kept" : ""),
          ctx,
        );
        return false;
      }
    }
    const hash = hashSessionSecret(msg.sessionSecret);
    if (managed.sessionSecretHash === null) {
      // A root made from an earlier generation's root carries that generation's secret in a
      // root-only file: only a hello that proves it may register this generation's secret, so a
      // process from the old root that says hello before the agent cannot claim the instance.
      const carried = managed.carriedSecret;
      if (carried && (msg.carriedSecret === undefined || !sessionSecretMatches(msg.carriedSecret, carried.hash))) {
        this.reject(
          conn,
          1008,
          "carried-secret-mismatch",
          `${who}: its root disk was made from generation ${carried.generation}'s root, and the first hello must present ` +
            `the session secret that root carries (${msg.carriedSecret === undefined ? "none presented" : "another was presented"}); ` +
            "nothing registered",
          ctx,
        );
        return false;
      }
      if (!(await this.opts.registerSessionSecret(instanceId, hash))) {
        // Another hello registered first: the secret must match what it registered.
        managed = await this.opts.lookup(instanceId);
        if (gone()) return false;
        if (!managed) {
          this.reject(conn, 1008, "unknown-instance", `${instanceId} is not a live generation of any stateful instance`, { instanceId });
          return false;
        }
      } else {
        this.opts.log?.(
          `${instanceId}: registered the agent's session secret at its first hello (from ${source || "?"}` +
            (carried ? `, proven with the secret generation ${carried.generation}'s root carries)` : ")"),
        );
        managed = { ...managed, sessionSecretHash: hash };
      }
      if (gone()) return false;
    }
    if (managed.sessionSecretHash === null || !sessionSecretMatches(msg.sessionSecret, managed.sessionSecretHash)) {
      this.reject(
        conn,
        1008,
        "session-secret-mismatch",
        `${who}: the session secret does not match the one registered at the instance's first hello` +
          (this.sessions.has(instanceId) ? "; the open session is kept" : ""),
        ctx,
      );
      return false;
    }

    const now = this.opts.clock.now();
    const session: AgentSession = {
      instanceId,
      statefulInstance: managed.statefulInstance,
      generation: managed.generation,
      mode: msg.mode,
      agentVersion: msg.agentVersion,
      identity,
      source,
      connectedAt: now,
      lastSeenAt: now,
    };
    const config = await this.opts.welcome(session);
    if (gone()) return false;
    conn.session = session;
    conn.slot.release();
    const old = this.sessions.get(instanceId);
    if (old && old !== conn) this.closeConnection(old, 1000, "replaced by a newer session");
    this.sessions.set(instanceId, conn);
    this.notifyCount();
    ws.send(
      encodeMessage(
        {
          v: 1,
          id: newMessageId("w"),
          type: "welcome",
          statefulInstance: managed.statefulInstance,
          generation: managed.generation,
          config,
        },
        "from-coordinator",
      ),
    );
    const already = new Set(msg.lastSeen ?? []);
    for (const p of this.pending.get(instanceId)?.values() ?? []) {
      if (already.has(p.id)) continue;
      p.sentAt = now;
      ws.send(p.text);
    }
    await this.opts.onHello?.(session);
    return true;
  }
}
