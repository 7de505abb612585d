/**
 * The agent's WebSocket link to the coordinator (/agent/v1/ws, JSON frames).
 *  - connects to SPOTKEEP_COORDINATOR (one URL, or a list tried in turn: a connection that fails or
 *    is closed before its welcome moves on to the next URL, and a standby's refusal names the
 *    leader, which is tried next when it is on the list), sends `hello` (identity document + signature from IMDS,
 *    agent version, mode, the session secret, recently handled command ids) and waits for `welcome`;
 *  - reconnects forever with exponential backoff + full jitter, capped (reset after a welcome);
 *  - heartbeats every welcome.config.heartbeatMs (model ms, scaled by the agent's time scale); a
 *    coordinator that has sent nothing for three heartbeat intervals (it acks each one) is dropped
 *    and the next URL tried (a paused leader's socket stays open and accepts writes);
 *  - at-least-once: durable messages go through the persisted outbox and are resent (same id) on
 *    every reconnect and when unacked for ackTimeoutMs; the coordinator acks by id;
 *  - every inbound frame is validated (frames.ts, to the protocol's rules); a bad one is logged and
 *    ignored; every valid non-ack frame is acked, and a command id seen before is dropped.
 * Hello and heartbeats are not persisted: they only make sense on the live connection.
 */
import WebSocket from "ws";
import type { AgentMessage, CoordinatorMessage, MessageOf } from "../../shared/protocol.js";
import { encodeAgentFrame, MAX_FRAME_BYTES, newMessageId, parseCoordinatorFrame } from "./frames.js";
import { nextDelay, retryPolicy, type RetryPolicy } from "../../shared/retry.js";
import type { Clock } from "../../shared/clock.js";
import { errorText, type Logger } from "../log.js";
import type { StateStore } from "./state.js";
import { NOT_LEADER_CLOSE_CODE } from "../../shared/coordinators.js";

type Welcome = MessageOf<"welcome">;
/** An agent message without its envelope (the link fills v and id). */
export type AgentBody = AgentMessage extends infer M ? (M extends AgentMessage ? Omit<M, "v" | "id" | "ts"> : never) : never;

export interface LinkOptions {
  /** The coordinator URLs (ws:// or wss://), at least one. */
  urls: readonly string[];
  clock: Clock;
  log: Logger;
  store: StateStore;
  hello: () => Promise<Omit<MessageOf<"hello">, "v" | "id" | "ts" | "type">>;
  onWelcome?: (msg: Welcome) => void | Promise<void>;
  onCommand: (msg: CoordinatorMessage) => void | Promise<void>;
  /** Converts model ms (welcome config) to real ms. */
  scale: (modelMs: number) => number;
  /** Reconnect backoff, real ms. */
  backoff?: Partial<RetryPolicy>;
  /** Resend an unacked durable message after this long (real ms). */
  ackTimeoutMs?: number;
  /** Give up on a connection without a welcome after this long (real ms). */
  welcomeTimeoutMs?: number;
  /** What each heartbeat carries besides its sequence number (the application's health). */
  heartbeatExtras?: () => Pick<MessageOf<"heartbeat">, "health">;
  random?: () => number;
}

export class AgentLink {
  private ws: WebSocket | null = null;
  private welcomed = false;
  private stopped = true;
  private attempt = 0;
  /** Index into opts.urls of the coordinator tried now. */
  private current = 0;
  /** Connections that ended before their welcome since the last welcome. */
  private misses = 0;
  private seq = 0;
  /** When the coordinator last sent anything on the current connection (real ms, the link's clock). */
  private lastHeardAt = 0;
  /** The current connection is being dropped because the coordinator went silent: move on to the next URL. */
  private silenced = false;
  private readonly startedAt: number;
  private heartbeatMs: number;
  private cancelHeartbeat: (() => void) | null = null;
  private cancelReconnect: (() => void) | null = null;
  private cancelWelcomeWait: (() => void) | null = null;
  private readonly backoff: RetryPolicy;
  private waiters: Array<() => void> = [];
  /** Called after every ack the coordinator sends (waitOutboxEmpty). */
  private ackWaiters: Array<() => void> = [];
  welcome: Welcome | null = null;
  readonly stats = { connects: 0, disconnects: 0, sent: 0, resent: 0, badFrames: 0, duplicates: 0 };

  constructor(private readonly opts: LinkOptions) {
    if (opts.urls.length === 0) throw new Error("AgentLink: no coordinator URL");
    this.startedAt = opts.clock.now();
    this.heartbeatMs = opts.scale(15_000);
    this.backoff = retryPolicy({
      initialMs: opts.scale(500),
      factor: 2,
      maxMs: Math.max(opts.scale(500), opts.scale(30_000)),
      attempts: Infinity,
      jitter: "full",
      ...opts.backoff,
    });
  }

  get connected(): boolean {
    return this.welcomed && this.ws?.readyState === WebSocket.OPEN;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelReconnect?.();
    this.cancelHeartbeat?.();
    this.cancelWelcomeWait?.();
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    if (ws && ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => {
        ws.once("close", () => resolve());
        ws.close(1000, "agent stopping");
        this.opts.clock.setTimer(1000, () => {
          ws.terminate();
          resolve();
        });
      });
    }
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when the link is welcomed, or false after timeoutMs (real ms). */
  waitConnected(timeoutMs: number): Promise<boolean> {
    if (this.connected) return Promise.resolve(true);
    return new Promise((resolve) => {
      const cancel = this.opts.clock.setTimer(timeoutMs, () => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      });
      const done = () => {
        cancel();
        resolve(this.connected);
      };
      this.waiters.push(done);
    });
  }

  /**
   * Resolves true once every durable message has been acked (at once when the outbox is empty), or
   * false after timeoutMs (real ms). Woken by each ack, so a caller waiting for its report to land
   * does not wait a poll interval longer than the coordinator took.
   */
  waitOutboxEmpty(timeoutMs: number): Promise<boolean> {
    if (this.opts.store.outbox.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (this.opts.store.outbox.length > 0) return;
        this.ackWaiters = this.ackWaiters.filter((w) => w !== check);
        cancel();
        resolve(true);
      };
      const cancel = this.opts.clock.setTimer(timeoutMs, () => {
        this.ackWaiters = this.ackWaiters.filter((w) => w !== check);
        resolve(this.opts.store.outbox.length === 0);
      });
      this.ackWaiters.push(check);
    });
  }

  /**
   * Send a message. Durable messages (everything but heartbeats) go into the persisted outbox first
   * and stay there until acked. Returns the message id.
   */
  send(body: AgentBody): string {
    const message = { v: 1, id: newMessageId("a"), ts: new Date().toISOString(), ...body } as AgentMessage;
    let text: string;
    try {
      text = encodeAgentFrame(message);
    } catch (err) {
      // A bug on our side: never persist or send an invalid frame.
      this.opts.log.error("refusing to send an invalid message", { type: body.type, error: errorText(err) });
      throw err;
    }
    if (message.type !== "heartbeat" && message.type !== "ack" && message.type !== "hello") this.opts.store.enqueue(message);
    if (this.connected) this.write(message.id, text);
    return message.id;
  }

  private write(id: string, text: string): void {
    try {
      this.ws?.send(text);
      this.stats.sent++;
      this.opts.store.markSent(id, this.opts.clock.now());
    } catch (err) {
      this.opts.log.warn("send failed; will resend after reconnect", { id, error: errorText(err) });
    }
  }

  private connect(): void {
    if (this.stopped) return;
    this.stats.connects++;
    // Explicitly verified, whatever NODE_TLS_REJECT_UNAUTHORIZED says: hooks (run as root) only ever
    // come from a wss:// coordinator whose certificate chains to a trusted CA (NODE_EXTRA_CA_CERTS for a private one).
    const ws = new WebSocket(this.opts.urls[this.current]!, {
      maxPayload: MAX_FRAME_BYTES,
      handshakeTimeout: Math.max(1000, this.opts.scale(10_000)),
      rejectUnauthorized: true,
    });
    this.ws = ws;
    ws.on("open", () => {
      void this.sendHello(ws);
      this.cancelWelcomeWait = this.opts.clock.setTimer(this.opts.welcomeTimeoutMs ?? Math.max(2000, this.opts.scale(30_000)), () => {
        if (!this.welcomed && this.ws === ws) {
          this.opts.log.warn("no welcome from the coordinator; reconnecting");
          ws.terminate();
        }
      });
    });
    ws.on("message", (data, isBinary) => {
      if (this.ws === ws) this.lastHeardAt = this.opts.clock.now();
      if (isBinary) {
        this.stats.badFrames++;
        this.opts.log.warn("ignoring a binary frame from the coordinator");
        return;
      }
      void this.onFrame(ws, data.toString());
    });
    ws.on("error", (err) => {
      this.opts.log.debug("link error", { error: errorText(err) });
    });
    ws.on("close", (code, reason) => {
      if (this.ws !== ws) return;
      this.ws = null;
      const wasWelcomed = this.welcomed;
      this.welcomed = false;
      this.cancelHeartbeat?.();
      this.cancelWelcomeWait?.();
      if (wasWelcomed) this.stats.disconnects++;
      if (this.stopped) return;
      const text = reason.toString();
      const silenced = this.silenced;
      this.silenced = false;
      if (!wasWelcomed || silenced) {
        this.current = this.nextUrl(code, text);
        this.misses++;
      }
      // Backoff grows once per as many failures as there are URLs: moving on to another coordinator
      // (or to the leader a standby named) is quick, but a list where none answers is not hammered.
      // A standby's refusal means leadership is changing hands: try again within 2 s (model), not later.
      const random = this.opts.random ?? Math.random;
      const refused = code === NOT_LEADER_CLOSE_CODE;
      const wrapped = !refused && (wasWelcomed || this.misses % this.opts.urls.length === 0);
      if (wrapped) this.attempt++;
      const delay = refused
        ? this.opts.scale(2000) * random()
        : wrapped
          ? (nextDelay(this.backoff, this.attempt, this.opts.random) ?? this.backoff.maxMs)
          : this.backoff.initialMs * random();
      this.opts.log.info("link closed; reconnecting", {
        code,
        reason: text,
        next: this.opts.urls[this.current],
        attempt: this.attempt,
        delayMs: Math.round(delay),
        pending: this.opts.store.outbox.length,
      });
      this.cancelReconnect = this.opts.clock.setTimer(delay, () => this.connect());
    });
  }

  /**
   * The URL to try after a connection that ended before its welcome: the leader a standby named
   * (close code NOT_LEADER_CLOSE_CODE, reason `… leader: URL`) when it is on the list, else the next one.
   */
  private nextUrl(code: number, reason: string): number {
    const urls = this.opts.urls;
    if (code === NOT_LEADER_CLOSE_CODE) {
      const named = /leader: (https?|wss?):\/\/([^\s/]+)/.exec(reason);
      const at = named ? urls.findIndex((u, i) => i !== this.current && new URL(u).host === named[2]) : -1;
      if (at >= 0) return at;
    }
    return (this.current + 1) % urls.length;
  }

  private async sendHello(ws: WebSocket): Promise<void> {
    try {
      const hello = await this.opts.hello();
      const msg = {
        v: 1,
        id: newMessageId("a"),
        ts: new Date().toISOString(),
        type: "hello",
        ...hello,
        lastSeen: this.opts.store.recentCommands(),
      } as AgentMessage;
      if (this.ws === ws && ws.readyState === WebSocket.OPEN) ws.send(encodeAgentFrame(msg));
    } catch (err) {
      this.opts.log.warn("could not build hello; closing and retrying", { error: errorText(err) });
      ws.terminate();
    }
  }

  private async onFrame(ws: WebSocket, text: string): Promise<void> {
    const parsed = parseCoordinatorFrame(text);
    if (!parsed.ok) {
      this.stats.badFrames++;
      this.opts.log.warn("ignoring an invalid frame from the coordinator", { error: parsed.error.message });
      return;
    }
    const msg = parsed.message as CoordinatorMessage;
    if (msg.type === "ack") {
      this.opts.store.ack(msg.ref);
      for (const w of [...this.ackWaiters]) w();
      return;
    }
    // Ack first (even duplicates: the first ack may have been lost).
    if (ws.readyState === WebSocket.OPEN) ws.send(encodeAgentFrame({ v: 1, id: newMessageId("a"), type: "ack", ref: msg.id }));
    if (msg.type === "welcome") {
      this.onWelcome(msg);
      return;
    }
    if (!this.opts.store.firstSeen(msg.id)) {
      this.stats.duplicates++;
      this.opts.log.debug("dropping a duplicate command", { id: msg.id, type: msg.type });
      return;
    }
    try {
      await this.opts.onCommand(msg);
    } catch (err) {
      this.opts.log.error("command failed", { id: msg.id, type: msg.type, error: errorText(err) });
    }
  }

  private onWelcome(msg: Welcome): void {
    this.welcome = msg;
    this.welcomed = true;
    this.lastHeardAt = this.opts.clock.now();
    this.attempt = 0;
    this.misses = 0;
    this.cancelWelcomeWait?.();
    this.heartbeatMs = this.opts.scale(msg.config.heartbeatMs);
    this.opts.log.info("connected to the coordinator", {
      statefulInstance: msg.statefulInstance,
      generation: msg.generation,
      pending: this.opts.store.outbox.length,
    });
    // Everything not yet acked goes again, oldest first, with its original id.
    this.resend(true);
    this.scheduleHeartbeat();
    for (const w of this.waiters.splice(0)) w();
    void Promise.resolve(this.opts.onWelcome?.(msg)).catch((err) =>
      this.opts.log.error("welcome handling failed", { error: errorText(err) }),
    );
  }

  private resend(all: boolean): void {
    const now = this.opts.clock.now();
    const ackTimeout = this.opts.ackTimeoutMs ?? Math.max(200, this.opts.scale(5_000));
    for (const entry of [...this.opts.store.outbox]) {
      if (!all && entry.sentAt !== 0 && now - entry.sentAt < ackTimeout) continue;
      if (entry.sentAt !== 0) this.stats.resent++;
      this.write(entry.message.id, JSON.stringify(entry.message));
    }
  }

  private scheduleHeartbeat(): void {
    this.cancelHeartbeat?.();
    this.cancelHeartbeat = this.opts.clock.setTimer(this.heartbeatMs, () => {
      if (!this.connected) return;
      // The coordinator acks every heartbeat at once. Silence for three intervals on an open
      // socket is a coordinator that stopped (SIGSTOP, a frozen VM): its TCP stack still accepts
      // what is sent, so nothing would ever fail. Drop it and try the next coordinator.
      const silentMs = this.opts.clock.now() - this.lastHeardAt;
      if (silentMs > 3 * this.heartbeatMs) {
        this.opts.log.warn("the coordinator has not answered for three heartbeats; moving on", {
          url: this.opts.urls[this.current],
          silentMs: Math.round(silentMs),
        });
        this.silenced = true;
        this.ws?.terminate();
        return;
      }
      this.send({
        type: "heartbeat",
        seq: this.seq++,
        uptimeMs: Math.max(0, Math.round(this.opts.clock.now() - this.startedAt)),
        ...this.opts.heartbeatExtras?.(),
      });
      this.resend(false);
      this.scheduleHeartbeat();
    });
  }
}
