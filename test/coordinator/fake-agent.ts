/**
 * An in-process stand-in for the agent that speaks the real protocol: its identity comes from the
 * instance's own IMDS on localcloud, it answers restore-plan with restored + ready and quiesce with
 * quiesced, and it can send notices. Used where hundreds of agents must run on one machine (the
 * burst bench), where a test plays a misbehaving agent, and by the in-process harness
 * (test/support/in-process.ts), where with `live` it also heartbeats and relays IMDS spot notices as
 * the real agent does.
 */
import { createHash } from "node:crypto";
import WebSocket from "ws";
import type { Coordinator } from "../../coordinator/service.js";
import { newMessageId } from "../../shared/protocol.js";
import type { Env } from "./harness.js";

const FAKE_SECRET = "fake-agent-session-secret-0123456789abcdefghijk";

/** What an agent that lives on (the in-process harness's) does beyond answering commands. */
export interface LiveAgent {
  /** real ms = model ms × timeScale, as the real agent scales the welcome's intervals. */
  timeScale: number;
  /**
   * The application's HTTP health as the agent's probe would report it, when the welcome asks for a
   * probe (default healthy, "HTTP 200"); the probe itself is agent/monitors/health-probe.test.ts's.
   */
  health?: (instanceId: string) => { ok: boolean; detail: string };
  /**
   * An instance whose bootstrap cannot start the agent: no agent connects for it; its boot report
   * (stage and reason, with the instance's identity from localcloud's IMDS) is POSTed instead.
   */
  bootFailure?: (instanceId: string) => { stage: "runtime" | "agent"; reason: string } | undefined;
}

/** The instance's IMDSv2 identity document and signature, from localcloud's IMDS. */
export async function identityOf(env: Env, instanceId: string): Promise<{ document: string; signature: string }> {
  const { endpoint } = await env.control("GET", `instances/${instanceId}/imds`);
  const token = await (
    await fetch(`${endpoint}/latest/api/token`, { method: "PUT", headers: { "x-aws-ec2-metadata-token-ttl-seconds": "21600" } })
  ).text();
  const get = async (p: string) => (await fetch(`${endpoint}${p}`, { headers: { "x-aws-ec2-metadata-token": token } })).text();
  return {
    document: await get("/latest/dynamic/instance-identity/document"),
    signature: await get("/latest/dynamic/instance-identity/signature"),
  };
}

/** POST a boot report as the bootstrap does (the document base64, the signature as IMDS serves it). */
export async function postBootReport(
  coordUrl: string,
  id: { document: string; signature: string },
  r: { stage: string; reason: string },
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${coordUrl}/agent/v1/boot-report`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...r, document: Buffer.from(id.document).toString("base64"), signature: id.signature.replace(/\s+/g, "") }),
  });
  return { status: res.status, body: await res.json() };
}

export class FakeAgent {
  private ws!: WebSocket;
  /** Every message the coordinator sent, in order (acks included). */
  readonly received: Array<{ id: string; type: string; [k: string]: unknown }> = [];
  /** Resolves with the close code when the coordinator closes the session. */
  closed!: Promise<number>;
  private timers: Array<ReturnType<typeof setInterval>> = [];
  private silent = false;
  private readonly startedAt = Date.now();

  constructor(
    readonly instanceId: string,
    private readonly env: Env,
    /** The coordinator it talks to: in process, or a child's ws://…/agent/v1/ws. */
    private readonly coord: Pick<Coordinator, "wsUrl">,
    /**
     * mode: the hello's mode (default restore; run is an agent restarted on a serving instance).
     * localAddress: the loopback address to connect from (127.0.0.0/8), so thousands of fake
     * agents come from distinct sources as instances do.
     */
    private readonly opts: {
      sessionSecret?: string;
      answerCommands?: boolean;
      mode?: "restore" | "run";
      localAddress?: string;
      live?: LiveAgent;
    } = {},
  ) {}

  send(body: Record<string, unknown>): void {
    if (!this.silent && this.ws.readyState === WebSocket.OPEN)
      this.ws.send(JSON.stringify({ v: 1, id: newMessageId("f"), ts: new Date().toISOString(), ...body }));
  }

  async start(): Promise<void> {
    const { endpoint } = await this.env.control("GET", `instances/${this.instanceId}/imds`);
    const token = await (
      await fetch(`${endpoint}/latest/api/token`, { method: "PUT", headers: { "x-aws-ec2-metadata-token-ttl-seconds": "21600" } })
    ).text();
    const imds = (p: string) => fetch(`${endpoint}${p}`, { headers: { "x-aws-ec2-metadata-token": token } });
    const get = async (p: string) => (await imds(p)).text();
    const document = await get("/latest/dynamic/instance-identity/document");
    const signature = await get("/latest/dynamic/instance-identity/signature");
    this.ws = new WebSocket(this.coord.wsUrl, this.opts.localAddress ? { localAddress: this.opts.localAddress } : {});
    await new Promise<void>((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
    this.ws.on("error", () => undefined);
    this.closed = new Promise<number>((r) => this.ws.on("close", (code) => r(code)));
    this.ws.on("message", (data) => {
      if (this.silent) return;
      const m = JSON.parse(String(data)) as { id: string; type: string };
      this.received.push(m);
      if (m.type === "ack") return;
      if (m.type === "welcome" && this.opts.live) this.live(this.opts.live, m as unknown as WelcomeConfig, imds);
      this.send({ type: "ack", ref: m.id });
      if (this.opts.answerCommands === false) return;
      if (m.type === "restore-plan") {
        // A live agent reports each planned volume found at the plan's device (mounted where the plan says).
        const plan = (m as unknown as { volumes?: Array<{ volumeId: string; device: string; mountPoint?: string }> }).volumes ?? [];
        const volumes = this.opts.live
          ? plan.map((v) => ({
              volumeId: v.volumeId,
              device: v.device,
              ...(v.mountPoint ? { mountPoint: v.mountPoint } : {}),
              checked: false,
              ms: 0,
            }))
          : [];
        this.send({ type: "restored", ref: m.id, ok: true, volumes, steps: [] });
        this.send({ type: "ready", instanceId: this.instanceId, steps: [] });
      } else if (m.type === "quiesce") {
        this.send({ type: "quiesced", ref: m.id, clean: true, steps: [], filesystems: [] });
      }
    });
    this.send({
      type: "hello",
      identity: { document, signature },
      agentVersion: "bench",
      mode: this.opts.mode ?? "restore",
      sessionSecret: this.opts.sessionSecret ?? FAKE_SECRET,
      // Every fake agent has the same secret, so the one a persisted root carries is that one too.
      ...(this.opts.live ? { carriedSecret: this.opts.sessionSecret ?? FAKE_SECRET } : {}),
    });
  }

  /**
   * The welcome's rhythm: a heartbeat every heartbeatMs (with the probe's result when the welcome
   * asks for one), and IMDS's spot/instance-action polled every pollIntervalMs, relayed once.
   */
  private live(o: LiveAgent, welcome: WelcomeConfig, imds: (p: string) => Promise<Response>): void {
    const { heartbeatMs, pollIntervalMs, healthCheck } = welcome.config;
    let seq = 0;
    this.timers.push(
      setInterval(
        () => {
          const h = healthCheck && (o.health?.(this.instanceId) ?? { ok: true, detail: "HTTP 200" });
          this.send({
            type: "heartbeat",
            seq: seq++,
            uptimeMs: Date.now() - this.startedAt,
            ...(h ? { health: { ...h, checkedAt: new Date().toISOString() } } : {}),
          });
        },
        Math.max(1, heartbeatMs * o.timeScale),
      ),
    );
    let noticed = false;
    this.timers.push(
      setInterval(
        () => {
          if (noticed || this.silent) return;
          imds("/latest/meta-data/spot/instance-action")
            .then(async (r) => {
              if (r.status !== 200 || noticed) return;
              const { action, time } = (await r.json()) as { action: string; time: string };
              noticed = true;
              this.notice(action, time);
            })
            .catch(() => undefined);
        },
        Math.max(1, pollIntervalMs * o.timeScale),
      ),
    );
  }

  /** A hung instance's agent: the connection stays open, nothing is sent or answered any more. */
  silence(): void {
    this.silent = true;
    for (const t of this.timers) clearInterval(t);
  }

  notice(action: string, time: string): void {
    const raw = JSON.stringify({ action, time });
    this.send({
      type: "notice",
      noticeId: createHash("sha256").update(raw).digest("hex").slice(0, 32),
      kind: "spot-interruption",
      action,
      deadline: time,
      observedAt: new Date().toISOString(),
      raw,
    });
  }

  close(): void {
    for (const t of this.timers) clearInterval(t);
    this.ws?.terminate();
  }
}

type WelcomeConfig = { config: { heartbeatMs: number; pollIntervalMs: number; healthCheck?: { port: number; path: string } } };

/**
 * Plays the agents of localcloud's runtime-less instances: every 50 ms, a FakeAgent for each
 * running spotkeep-tagged instance whose agent is not connected (as a booted instance's agent
 * would), retried at most every 300 ms. `stop()` ends the watch and closes every agent.
 */
export function watchAgents(
  env: Env,
  /** The coordinator, or a getter for the current one (a test that restarts its coordinator). */
  coordinator: Coordinator | (() => Coordinator),
  live?: LiveAgent,
): { agents: Map<string, FakeAgent>; stop(): Promise<void> } {
  const current = typeof coordinator === "function" ? coordinator : () => coordinator;
  const agents = new Map<string, FakeAgent>();
  const started = new Map<string, number>();
  let watching = true;
  const loop = (async () => {
    while (watching) {
      for (const inst of [...env.lc.worlds.values()].flatMap((w) => [...w.instances.values()])) {
        if (inst.state !== "running" || !inst.tags.get("spotkeep:instance")) continue;
        const coord = current();
        if (coord.hub.isConnected(inst.id)) continue;
        if (Date.now() - (started.get(inst.id) ?? 0) < 300) continue;
        const failure = live?.bootFailure?.(inst.id);
        if (failure) {
          if (!started.has(inst.id)) {
            started.set(inst.id, Date.now());
            await postBootReport(coord.url, await identityOf(env, inst.id), failure).catch(() => undefined);
          }
          continue;
        }
        const before = agents.get(inst.id);
        before?.close();
        // An agent that reconnects after its restore (the coordinator restarted) says hello in run mode, as the real one does.
        const mode = before?.received.some((m) => m.type === "restore-plan") ? "run" : "restore";
        const a = new FakeAgent(inst.id, env, coord, { live, mode });
        agents.set(inst.id, a);
        started.set(inst.id, Date.now());
        await a.start().catch(() => undefined);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    agents,
    async stop() {
      watching = false;
      await loop;
      for (const a of agents.values()) a.close();
    },
  };
}
