/**
 * An in-process stand-in for the agent that speaks the real protocol: its identity comes from the
 * instance's own IMDS on localcloud, it answers restore-plan with restored + ready and quiesce with
 * quiesced, and it can send notices. Used where hundreds of agents must run on one machine (the
 * burst bench) and where a test plays a misbehaving agent.
 */
import { createHash } from "node:crypto";
import WebSocket from "ws";
import type { Coordinator } from "../../coordinator/service.js";
import { newMessageId } from "../../shared/protocol.js";
import type { Env } from "./harness.js";

export class FakeAgent {
  private ws!: WebSocket;
  /** Every message the coordinator sent, in order (acks included). */
  readonly received: Array<{ id: string; type: string; [k: string]: unknown }> = [];
  /** Resolves with the close code when the coordinator closes the session. */
  closed!: Promise<number>;

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
    private readonly opts: { sessionSecret?: string; answerCommands?: boolean; mode?: "restore" | "run"; localAddress?: string } = {},
  ) {}

  send(body: Record<string, unknown>): void {
    if (this.ws.readyState === WebSocket.OPEN)
      this.ws.send(JSON.stringify({ v: 1, id: newMessageId("f"), ts: new Date().toISOString(), ...body }));
  }

  async start(): Promise<void> {
    const { endpoint } = await this.env.control("GET", `instances/${this.instanceId}/imds`);
    const token = await (
      await fetch(`${endpoint}/latest/api/token`, { method: "PUT", headers: { "x-aws-ec2-metadata-token-ttl-seconds": "21600" } })
    ).text();
    const get = async (p: string) => (await fetch(`${endpoint}${p}`, { headers: { "x-aws-ec2-metadata-token": token } })).text();
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
      const m = JSON.parse(String(data)) as { id: string; type: string };
      this.received.push(m);
      if (m.type === "ack") return;
      this.send({ type: "ack", ref: m.id });
      if (this.opts.answerCommands === false) return;
      if (m.type === "restore-plan") {
        this.send({ type: "restored", ref: m.id, ok: true, volumes: [], steps: [] });
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
      sessionSecret: this.opts.sessionSecret ?? "fake-agent-session-secret-0123456789abcdefghijk",
    });
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
    this.ws?.terminate();
  }
}

/**
 * Plays the agents of localcloud's runtime-less instances: every 50 ms, a FakeAgent for each
 * running spotkeep-tagged instance whose agent is not connected (as a booted instance's agent
 * would), retried at most every 300 ms. `stop()` ends the watch and closes every agent.
 */
export function watchAgents(env: Env, coord: Coordinator): { agents: Map<string, FakeAgent>; stop(): Promise<void> } {
  const agents = new Map<string, FakeAgent>();
  const started = new Map<string, number>();
  let watching = true;
  const loop = (async () => {
    while (watching) {
      for (const inst of env.lc.world.instances.values()) {
        if (inst.state !== "running" || !inst.tags.get("spotkeep:instance")) continue;
        if (coord.hub.isConnected(inst.id)) continue;
        if (Date.now() - (started.get(inst.id) ?? 0) < 300) continue;
        agents.get(inst.id)?.close();
        const a = new FakeAgent(inst.id, env, coord);
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
