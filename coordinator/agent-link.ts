/**
 * The coordinator's side of its agents, in one place: which sessions the hub accepts (a managed,
 * not-ended generation), the settings an agent is welcomed with, what a hello, a heartbeat, a
 * report and a refusal lead to, the commands runbooks send, and the signal a step waiting on an
 * agent's report wakes on. The hub (agents/hub.ts) checks and carries the messages; the decisions
 * they lead to are intake's (intake.ts) and the health monitor's (health.ts).
 *
 * Built before the decision makers exist (runbooks need `send` and `onReport` first) and
 * `serve`d once they do; no session is accepted before that, as the API is not listening yet.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Clock } from "../shared/clock.js";
import { BootReport } from "../shared/protocol.js";
import { AgentHub, BootReportRefused, type CommandBody, type WelcomeConfig } from "./agents/hub.js";
import type { IdentityKeys } from "./agents/identity.js";
import { ReportSignal } from "./agents/report-signal.js";
import type { DataVolume, StatefulInstance, Store, WorkflowRecord } from "./db/store.js";
import { AGENT_HEARTBEAT_MS, AGENT_POLL_MS, type HealthMonitor } from "./health.js";
import type { AgentIntake } from "./intake.js";
import type { Metrics } from "./metrics.js";
import type { RefusalEvents } from "./refusal-events.js";
import type { ReplaceInput } from "./workflow/runbooks/replace.js";
import { Refusal } from "./refusal.js";

/** How often the agent's HTTP health probe runs, and how long one may take (ms). */
const HEALTH_PROBE_MS = 5000;
/** A refusal is logged once per reason in this window (ms); every one is counted in metrics. */
const REFUSAL_LOG_MS = 60_000;

export interface AgentLinkDeps {
  clock: Clock;
  publicKey: IdentityKeys;
  store: Store;
  metrics: Metrics;
  /** Require a session's source address to be one of its instance's private addresses. */
  checkSourceAddress: boolean;
  trustProxy: string[] | undefined;
  log: (line: string) => void;
}

/** What the agents' messages lead to, once the coordinator has built it. */
export interface AgentHandlers {
  health: Pick<HealthMonitor, "heard" | "heartbeat">;
  intake: Pick<AgentIntake, "handle">;
  refusals: Pick<RefusalEvents, "record">;
}

/** The settings an agent of `inst` is welcomed with: its hooks, its volumes' mounts, its poll and heartbeat periods, its health probe. */
export function welcomeFor(inst: StatefulInstance | null, volumes: readonly DataVolume[]): WelcomeConfig {
  const hooks = inst?.spec.hooks;
  const http = inst?.spec.health?.type === "http" ? inst.spec.health.http : undefined;
  return {
    hooks: { preStop: hooks?.preStop, postRestore: hooks?.postRestore, timeoutSeconds: hooks?.timeoutSeconds ?? 60 },
    mounts: volumes.flatMap((v) =>
      v.volumeId
        ? [{ volumeId: v.volumeId, device: v.device, ...(v.mountPoint ? { mountPoint: v.mountPoint } : {}), fsType: v.fsType }]
        : [],
    ),
    pollIntervalMs: AGENT_POLL_MS,
    heartbeatMs: AGENT_HEARTBEAT_MS,
    ...(http ? { healthCheck: { port: http.port, path: http.path, intervalMs: HEALTH_PROBE_MS, timeoutMs: HEALTH_PROBE_MS } } : {}),
  };
}

export class AgentLink {
  /** Wakes a step waiting on an agent's report as soon as intake has recorded one. */
  private readonly reports = new ReportSignal();
  private hub: AgentHub | null = null;
  private readonly refusalLogged = new Map<string, number>();

  constructor(private readonly d: AgentLinkDeps) {}

  /** Start accepting agents, with what their messages lead to. */
  serve(h: AgentHandlers): AgentHub {
    const { d } = this;
    const { store } = d;
    this.hub = new AgentHub({
      clock: d.clock,
      publicKey: d.publicKey,
      checkSourceAddress: d.checkSourceAddress,
      trustProxy: d.trustProxy,
      lookup: async (instanceId) => {
        const g = await store.generations.byEc2InstanceId(instanceId);
        if (!g || g.status === "ended") return null;
        return {
          statefulInstance: g.instance,
          generation: g.generation,
          privateIps: g.privateIp ? [g.privateIp] : [],
          sessionSecretHash: g.sessionSecretHash,
          carriedSecret: g.carriedSecret,
        };
      },
      registerSessionSecret: (instanceId, hash) => store.generations.registerSessionSecret(instanceId, hash),
      welcome: async (session) =>
        welcomeFor(await store.instances.get(session.statefulInstance), await store.volumes.list(session.statefulInstance)),
      onHello: async (s) => {
        h.health.heard(s.instanceId);
        d.log(`agent ${s.instanceId} (${s.statefulInstance} g${s.generation}, ${s.mode}) connected`);
        // A make-before-break cutover waits for this: the replacement booted and its agent waits in restore mode.
        await store.agentReports.record(s.instanceId, "hello", s.mode, { mode: s.mode, generation: s.generation });
        this.reports.notify(s.instanceId);
      },
      onHeartbeat: (s, msg) => h.health.heartbeat(s.instanceId, msg.health),
      onMessage: async (session, msg) => {
        h.health.heard(session.instanceId);
        await h.intake.handle(session, msg);
        this.reports.notify(session.instanceId);
      },
      onRejected: (reason, detail, context) => {
        d.metrics.agentRejections.inc({ reason });
        const now = d.clock.now();
        const last = this.refusalLogged.get(reason);
        if (last === undefined || now - last >= REFUSAL_LOG_MS) {
          this.refusalLogged.set(reason, now);
          d.log(`agent refused (${reason}): ${detail}`);
        }
        // A session that claims an instance without its secret or address is an impostor: the instance's timeline says so.
        if (
          context?.statefulInstance &&
          (reason === "session-secret-mismatch" || reason === "carried-secret-mismatch" || reason === "source-address-mismatch")
        )
          h.refusals.record(context.statefulInstance, "agent-impostor", reason, detail);
      },
      onConnectionCount: (n) => d.metrics.agentsConnected.set(n),
      log: d.log,
    });
    return this.hub;
  }

  /**
   * A bootstrap that could not start the agent says why (POST /agent/v1/boot-report): checked by
   * the hub as a hello is, recorded once per instance as its `boot-failed` report (the step waiting
   * on that instance's agent ends at once with the reason) and as an event on the instance.
   * Throws a Refusal (invalid body) or BootReportRefused (the proof does not hold).
   */
  readonly bootReport = async (body: unknown, req: IncomingMessage): Promise<void> => {
    const hub = this.hub;
    if (!hub) throw new Refusal("unavailable", "the coordinator is not accepting agents yet");
    const parsed = BootReport.safeParse(body);
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      throw new Refusal("invalid", `boot report: ${i?.path.join(".") || "body"}: ${i?.message ?? "invalid"}`);
    }
    const r = parsed.data;
    const who = await hub.verifyBootReport(req, Buffer.from(r.document, "base64").toString("utf8"), r.signature);
    const { store } = this.d;
    const reason = r.reason.replace(/[^\x20-\x7e]/g, "?");
    if (!(await store.agentReports.record(who.instanceId, "boot-failed", "", { stage: r.stage, reason, generation: who.generation })))
      return;
    await store.events.add(
      who.statefulInstance,
      "agent-boot-failed",
      `${who.instanceId} (generation ${who.generation}) could not start the agent (${r.stage}): ${reason}`,
    );
    this.d.metrics.agentBootFailures.inc({ stage: r.stage });
    this.d.log(`agent ${who.instanceId} (${who.statefulInstance} g${who.generation}): boot failed (${r.stage}): ${reason}`);
    this.reports.notify(who.instanceId);
  };

  /** A command to an instance's agent (resent until acknowledged); dropped before `serve`. */
  readonly send = (instanceId: string, body: CommandBody, id?: string): void => {
    this.hub?.send(instanceId, body, id);
  };

  /** Call `fn` whenever `instanceId`'s agent reported something; returns the unsubscribe. */
  readonly onReport = (instanceId: string, fn: () => void): (() => void) => this.reports.subscribe(instanceId, fn);

  /** The WebSocket upgrade at /agent/v1/ws. */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (this.hub) this.hub.handleUpgrade(req, socket, head);
    else socket.destroy();
  };

  /** A replacement or recycle ended: the old instance is gone (a move back to spot without capacity leaves it serving). */
  workflowEnded(wf: WorkflowRecord, ok: boolean, result: unknown): void {
    if (!ok || (wf.kind !== "replace" && wf.kind !== "recycle")) return;
    if ((result as { reverted?: boolean } | null)?.reverted === false) return;
    this.hub?.forget((wf.input as ReplaceInput).instanceId);
  }

  get connected(): number {
    return this.hub?.connected ?? 0;
  }

  get preHello(): number {
    return this.hub?.preHello ?? 0;
  }

  async close(): Promise<void> {
    await this.hub?.close();
  }
}
