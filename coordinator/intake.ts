/**
 * Agent-message intake: the one place that turns what agents say into decisions. Everything an
 * agent sends is a claim from a machine that may be compromised, so:
 *  - a spot-interruption notice starts a replacement only after EC2 confirms it (`confirm.ts`: the
 *    spot request is marked for termination/stop/hibernation, or the instance is no longer running); an
 *    unconfirmed notice is an event on the timeline and terminates nothing;
 *  - a notice's deadline is clamped to what EC2 gives (at most two minutes from now);
 *  - replies (`quiesced`, `restored`, `volume-changed`) are recorded only with the id of the command they answer;
 *  - a scheduled-event notice is checked against EC2's DescribeInstanceStatus and, when EC2 lists
 *    the event, leads to a recycle ahead of its NotBefore (coordinator/health.ts);
 *  - an inventory is recorded for the session's own generation only (its instance id must be the
 *    session's); what it shows (usage, unexpected or unmounted volumes, `inventory.ts`) becomes
 *    events and a gauge, never an attach, detach or delete.
 * What a notice leads to is decided in `events/decisions.ts`, shared with the EventBridge queue.
 */
import type { Regions } from "./cloud/regions.js";
import type { AgentMessage } from "../shared/protocol.js";
import type { AgentSession } from "./agents/hub.js";
import type { Ec2Gateway } from "./cloud/gateway.js";
import type { Store } from "./db/store.js";
import type { Metrics } from "./metrics.js";
import type { Operations } from "./operations.js";
import type { ScaledClock } from "../shared/clock.js";
import { NoticeDecisions } from "./events/decisions.js";
import type { RefusalEvents } from "./refusal-events.js";
import { confirmWithEc2 } from "./confirm.js";
import { readInventory } from "./inventory.js";

export interface IntakeDeps {
  store: Store;
  ec2: Ec2Gateway;
  /** The regions managed: a notice is confirmed with the EC2 of the instance's region. */
  regions?: Regions;
  operations: Operations;
  metrics: Metrics;
  clock: ScaledClock;
  log: (line: string) => void;
  /** How often (and how far apart, model ms) EC2 is asked before a notice counts as unconfirmed. */
  confirmAttempts?: number;
  confirmIntervalMs?: number;
  /** Scheduled-event notices: checked with EC2 and acted on ahead of NotBefore (coordinator/health.ts). */
  maintenance?: { maintenanceNotice(name: string, instanceId: string, code: string | undefined): Promise<string | null> };
  /** The decision path shared with the EventBridge queue; built from the deps above when absent. */
  decisions?: NoticeDecisions;
  /** Where refusals go on the timeline, rate-limited per instance and reason; each is its own event when absent. */
  refusals?: Pick<RefusalEvents, "record">;
}

export class AgentIntake {
  private readonly decisions: NoticeDecisions;

  constructor(private readonly d: IntakeDeps) {
    this.decisions = d.decisions ?? new NoticeDecisions(d);
  }

  /** Handle one message of a verified session (deduplicated by the hub, which acks it once this resolves). */
  async handle(session: AgentSession, msg: AgentMessage): Promise<void> {
    const name = session.statefulInstance;
    const { store } = this.d;
    switch (msg.type) {
      case "notice": {
        if (!(await store.agentReports.record(session.instanceId, "notice", msg.noticeId, msg))) return;
        this.d.metrics.interruptions.inc({ kind: msg.kind });
        const deadline = msg.deadline ? `, deadline ${msg.deadline}` : "";
        await store.events.add(name, "notice", `${msg.kind}${msg.action ? ` (${msg.action})` : ""} on ${session.instanceId}${deadline}`);
        const first = await this.decisions.arrival("agent", name, session.instanceId, msg.kind);
        // The same recommendation from the queue (or an earlier notice) already acted.
        if (msg.kind === "rebalance") return first ? this.decisions.rebalance(name) : undefined;
        if (msg.kind === "scheduled-event") {
          // EC2 must list the event too (DescribeInstanceStatus) before it moves anything.
          if (this.d.maintenance) return void (await this.d.maintenance.maintenanceNotice(name, session.instanceId, msg.action));
          return store.events.add(
            name,
            "scheduled-event",
            `scheduled event ${msg.action ?? "(no code)"} on ${session.instanceId} is recorded but not acted on by this coordinator`,
          );
        }
        if (msg.kind === "spot-interruption") return this.spotInterruption(session, msg.action, msg.deadline);
        return;
      }
      case "quiesced":
      case "restored":
      case "volume-changed": {
        if (!msg.ref) {
          await this.refuse(
            name,
            "agent-report-dropped",
            "no-ref",
            `${session.instanceId} sent ${msg.type} without the id of a command; ignored`,
          );
          return;
        }
        if (!(await store.agentReports.record(session.instanceId, msg.type, msg.ref, msg))) return;
        const detail = msg.type === "quiesced" ? `clean: ${msg.clean}` : `ok: ${msg.ok}`;
        if (msg.type === "volume-changed") {
          const where = msg.mountPoint ? ` at ${msg.mountPoint}` : "";
          const size = msg.filesystemBytes !== undefined ? `, filesystem ${(msg.filesystemBytes / 2 ** 30).toFixed(2)} GiB` : "";
          const why = msg.ok ? "" : `: ${(msg.reason ?? "no reason given").slice(0, 500)}`;
          await store.events.add(name, msg.type, `${session.instanceId} ${msg.volumeId}${where} (${detail}${size})${why}`);
          return;
        }
        await store.events.add(name, msg.type, `${session.instanceId} ${msg.type} (${detail})`);
        return;
      }
      case "ready":
        if (await store.agentReports.record(session.instanceId, "ready", "", msg))
          await store.events.add(name, "agent-ready", `${session.instanceId} reported ready`);
        return;
      case "inventory":
        return this.inventory(session, msg);
      case "error":
        await store.events.add(name, "agent-error", `${session.instanceId}: ${msg.code}: ${msg.message.slice(0, 500)}`);
        return;
      default:
        return;
    }
  }

  /**
   * Record the generation's latest inventory and raise what it shows. The checks run only while
   * the session's generation serves (the instance running on it): during a bring-up or a
   * replacement, volumes are still being attached and mounted, and the inventory is only recorded.
   */
  private async inventory(session: AgentSession, msg: Extract<AgentMessage, { type: "inventory" }>): Promise<void> {
    const name = session.statefulInstance;
    const { store, metrics } = this.d;
    if (msg.instanceId !== session.instanceId) {
      metrics.agentRejections.inc({ reason: "inventory-instance-mismatch" });
      await this.refuse(
        name,
        "agent-report-dropped",
        "inventory-instance-mismatch",
        `${session.instanceId} sent an inventory for ${msg.instanceId}; ignored`,
      );
      return;
    }
    const { v: _v, id: _id, ts: _ts, ...data } = msg;
    const [inst, volumes, root, prev] = await Promise.all([
      store.instances.get(name),
      store.volumes.list(name),
      store.root.get(name),
      store.generations.inventory(name, session.generation),
    ]);
    const before = new Set(prev?.raised ?? []);
    const serving = inst !== null && inst.generation === session.generation && inst.state === "running";
    if (!serving) {
      await store.generations.recordInventory(name, session.generation, session.instanceId, data, [...before]);
      return;
    }
    const reading = readInventory(data, volumes, root?.rootDeviceName ?? null);
    const now = new Set(reading.conditions.map((c) => c.key));
    await store.tx(async (t) => {
      await t.generations.recordInventory(name, session.generation, session.instanceId, data, [...now]);
      for (const c of reading.conditions) if (!before.has(c.key)) await t.events.add(name, c.kind, `${session.instanceId}: ${c.message}`);
      for (const key of before) {
        if (now.has(key) || !key.startsWith("usage:")) continue;
        const device = key.slice("usage:".length);
        const ratio = reading.usage.find((u) => u.device === device)?.ratio;
        const detail = ratio === undefined ? "is no longer reported" : `is ${Math.round(ratio * 1000) / 10}% full`;
        await t.events.add(name, "volume-usage-normal", `${session.instanceId}: ${device} ${detail}, below the threshold again`);
      }
    });
    metrics.setVolumeUsage(name, reading.usage);
  }

  private async ec2Of(name: string): Promise<Ec2Gateway> {
    if (!this.d.regions) return this.d.ec2;
    return this.d.regions.ec2(this.d.regions.of((await this.d.store.instances.get(name))?.spec));
  }

  /** A refusal on the timeline: through the rate limit when there is one. */
  private async refuse(name: string, kind: string, reason: string, detail: string): Promise<void> {
    if (this.d.refusals) return this.d.refusals.record(name, kind, reason, detail);
    await this.d.store.events.add(name, kind, detail);
  }

  private async spotInterruption(session: AgentSession, action: string | undefined, deadline: string | undefined): Promise<void> {
    const name = session.statefulInstance;
    const confirmed = await confirmWithEc2(
      { ec2: await this.ec2Of(name), clock: this.d.clock, attempts: this.d.confirmAttempts, intervalMs: this.d.confirmIntervalMs },
      session.instanceId,
      "interruption",
    );
    if (!confirmed.ok) {
      this.d.metrics.agentRejections.inc({ reason: "unconfirmed-notice" });
      await this.refuse(
        name,
        "notice-unconfirmed",
        "unconfirmed-notice",
        `EC2 does not confirm the spot interruption notice from ${session.instanceId} (${confirmed.why}); nothing is terminated`,
      );
      this.d.log(`${name}: spot interruption notice from ${session.instanceId} not confirmed by EC2 (${confirmed.why})`);
      return;
    }
    await this.decisions.spotInterruption(
      {
        name,
        instanceId: session.instanceId,
        fromGeneration: session.generation,
        trigger: "spot-interruption",
        deadline: this.decisions.clampDeadline(deadline),
      },
      `spot interruption notice (${action ?? "terminate"}), confirmed by EC2: ${confirmed.why}`,
    );
  }
}
