/**
 * Queue intake: EventBridge events (already parsed) → decisions, through the same path as the
 * agent's notices (`decisions.ts`). Anyone allowed to send to the queue can write any event, so an
 * event is checked like an agent's notice before anything acts on it:
 *  - it must come from the coordinator's own account and region (the account its credentials
 *    belong to, from STS at start) and, for EC2's events, name the instance's ARN in `resources`;
 *    otherwise it is refused (a timeline event says why) and not recorded;
 *  - it must be fresh: an event that arrived longer after it was sent than EC2's two-minute notice
 *    window is recorded and not acted on (judged at its first arrival, so one recorded before a
 *    crash is still acted on at its redelivery);
 *  - a spot interruption warning or a shutting-down/terminated state change is acted on only when
 *    EC2 confirms it (`confirm.ts`, the check agent notices pass): the spot request is marked, or
 *    the instance is leaving or gone.
 * Each event that passes the first check is recorded by its id (with its timeline entry) in one
 * transaction before anything acts on it, and marked handled once its decision is recorded, with a
 * timeline entry stating the decision and its reason: a redelivered, duplicated or replayed message
 * finds the row and changes nothing, and one recorded but not yet handled (the coordinator died in
 * between) is handled on its redelivery, once, because starting a replacement is check-and-start.
 */
import type { Ec2Gateway } from "../cloud/gateway.js";
import { confirmWithEc2 } from "../confirm.js";
import type { Store } from "../db/store.js";
import type { Metrics } from "../metrics.js";
import type { Operations } from "../operations.js";
import type { ScaledClock } from "../../shared/clock.js";
import { MAX_NOTICE_MS } from "../workflow/runbooks/replace.js";
import type { NoticeDecisions } from "./decisions.js";
import type { CloudEvent } from "./parse.js";

/** What became of an event: the consumer counts these and deletes the message for every one of them. */
export type EventOutcome = "acted" | "recorded" | "duplicate" | "unmanaged" | "stale" | "refused" | "unconfirmed";

/** Where genuine events come from: the coordinator's account (its credentials') and EC2 region. */
export interface EventOrigin {
  account: string;
  region: string;
}

export interface QueueIntakeDeps {
  store: Store;
  operations: Operations;
  decisions: NoticeDecisions;
  metrics: Metrics;
  clock: ScaledClock;
  ec2: Pick<Ec2Gateway, "spotRequestStatus" | "describeInstances">;
  /** The coordinator's account and region; null until known (an event is then left for redelivery). */
  origin: () => EventOrigin | null;
  /** The agent of this EC2 instance is connected and was heard from recently (it can quiesce). */
  agentAnswering: (ec2InstanceId: string) => boolean;
  log: (line: string) => void;
  /** How often (and how far apart, model ms) EC2 is asked before an event counts as unconfirmed. */
  confirmAttempts?: number;
  confirmIntervalMs?: number;
  /** Tests only: called right after an event is recorded, before it is handled and its message deleted. */
  afterRecord?: (event: CloudEvent) => void;
}

/** An event dated further ahead of this coordinator's clock than this (wall ms) was not sent by EventBridge. */
const MAX_CLOCK_AHEAD_MS = 5 * 60_000;

const DESCRIBE: Record<CloudEvent["kind"], (e: CloudEvent) => string> = {
  "spot-interruption": (e) => `spot interruption warning (${e.action}) for ${e.instanceId}`,
  rebalance: (e) => `rebalance recommendation for ${e.instanceId}`,
  "state-change": (e) => `${e.instanceId} is ${e.state}`,
  "scheduled-change": (e) => `AWS Health scheduled change ${e.eventTypeCode} for ${e.instanceId}`,
};

/**
 * Why an event cannot be from EventBridge for this coordinator (null when it can): another account
 * or region, a time far ahead, or (EC2's events) no resource ARN naming the instance. EC2 names the
 * instance as `arn:aws:ec2:REGION:ACCOUNT:instance/ID`, or, in the spot warning, as
 * `arn:aws:ec2:AZ:instance/ID` (an availability zone of the region, no account).
 */
export function forgery(e: CloudEvent, origin: EventOrigin, nowWall: number): string | null {
  if (e.account !== origin.account) return `account ${JSON.stringify(e.account)} is not this coordinator's (${origin.account})`;
  if (e.region !== origin.region) return `region ${JSON.stringify(e.region)} is not this coordinator's (${origin.region})`;
  if (e.time > nowWall + MAX_CLOCK_AHEAD_MS) return `it is dated ${new Date(e.time).toISOString()}, in the future`;
  if (e.kind === "scheduled-change") return null;
  if (!e.resources.some((arn) => namesInstance(arn, e.instanceId, origin)))
    return `its resources (${e.resources.length ? e.resources.slice(0, 3).join(", ") : "none"}) do not name ${e.instanceId} in ${origin.region}`;
  return null;
}

function namesInstance(arn: string, instanceId: string, origin: EventOrigin): boolean {
  const p = arn.split(":");
  if (p[0] !== "arn" || !/^aws(-[a-z]+)*$/.test(p[1] ?? "") || p[2] !== "ec2") return false;
  const where = p[3] ?? "";
  if (where !== origin.region && !new RegExp(`^${origin.region.replace(/-/g, "\\-")}[a-z]$`).test(where)) return false;
  if (p.length === 5) return p[4] === `instance/${instanceId}`;
  return p.length === 6 && p[4] === origin.account && p[5] === `instance/${instanceId}`;
}

interface Decision {
  outcome: EventOutcome;
  why: string;
}

export class QueueIntake {
  constructor(private readonly d: QueueIntakeDeps) {}

  async handle(e: CloudEvent): Promise<EventOutcome> {
    const { store } = this.d;
    const g = await store.generations.byEc2InstanceId(e.instanceId);
    if (!g) return "unmanaged";
    const name = g.instance;
    const origin = this.d.origin();
    // Thrown: the consumer leaves the message for redelivery, by when STS may have answered.
    if (!origin) throw new Error("this coordinator's AWS account is not known yet (STS GetCallerIdentity has not answered)");
    const sent = new Date(e.time).toISOString();
    const forged = forgery(e, origin, this.d.clock.now());
    if (forged) {
      // Not recorded by its id: a forged event must not take the id of a genuine one.
      this.d.log(`events queue: refused event ${e.id} about ${e.instanceId}: ${forged}`);
      await store.events.add(
        name,
        "queue-event-refused",
        `EventBridge: refused ${e.detailType} event ${e.id.slice(0, 128)} about ${e.instanceId} (sent ${sent}): ${forged}; nothing is done`,
      );
      return "refused";
    }
    const fresh = await store.tx(async (t) => {
      const recorded = await t.queueEvents.record({ eventId: e.id, kind: e.kind, ec2InstanceId: e.instanceId, instance: name, data: e });
      // Every generation starts pending and running: only the other state changes are news.
      const routine = e.kind === "state-change" && (e.state === "pending" || e.state === "running");
      if (recorded && !routine)
        await t.events.add(name, "queue-event", `EventBridge: ${DESCRIBE[e.kind](e)} (event ${e.id}, sent ${sent})`);
      return recorded;
    });
    const row = fresh ? null : await store.queueEvents.get(e.id);
    if (row?.handledAt != null) return "duplicate";
    this.d.afterRecord?.(e);
    // Freshness is judged when the event first arrived: one recorded before a crash and handled on
    // its redelivery was fresh then.
    const receivedAt = row?.receivedAt ?? this.d.clock.now();
    const decision = await this.decide(e, name, g.generation, g.status === "live", receivedAt);
    // Pending/running state changes are routine and say nothing either way.
    if (!(e.kind === "state-change" && decision.outcome === "recorded" && (e.state === "pending" || e.state === "running")))
      await store.events.add(name, "queue-decision", `EventBridge event ${e.id}: ${decision.outcome}: ${decision.why}`);
    await store.queueEvents.markHandled(e.id, decision.outcome);
    return decision.outcome;
  }

  private async decide(e: CloudEvent, name: string, generation: number, live: boolean, receivedAt: number): Promise<Decision> {
    const { store, decisions } = this.d;
    // A generation already ended (or not yet live): the event is late or early news of it, kept on the timeline.
    if (!live) return { outcome: "stale", why: `${e.instanceId} is not the live generation of ${name}; not acted on` };
    const ageMs = (receivedAt - e.time) / this.d.clock.timeScale;
    if (e.kind !== "scheduled-change" && ageMs > MAX_NOTICE_MS)
      return {
        outcome: "stale",
        why: `it arrived ${(ageMs / 1000).toFixed(0)} s after it was sent, later than EC2's ${MAX_NOTICE_MS / 1000} s notice window; not acted on`,
      };
    switch (e.kind) {
      case "spot-interruption": {
        this.d.metrics.interruptions.inc({ kind: "spot-interruption" });
        await decisions.arrival("queue", name, e.instanceId, "spot-interruption");
        const confirmed = await this.confirm(e.instanceId, "interruption");
        if (!confirmed.ok) return { outcome: "unconfirmed", why: `EC2 does not confirm it (${confirmed.why}); nothing is terminated` };
        const skipQuiesce = this.d.agentAnswering(e.instanceId) ? undefined : `the agent of ${e.instanceId} is not answering`;
        // EC2 takes the instance two minutes after it sent the warning.
        const deadline = decisions.clampDeadline(undefined, e.time + MAX_NOTICE_MS * this.d.clock.timeScale);
        const started = await decisions.spotInterruption(
          { name, instanceId: e.instanceId, fromGeneration: generation, trigger: "spot-interruption", deadline, skipQuiesce },
          `spot interruption warning (${e.action}) from EventBridge, confirmed by EC2: ${confirmed.why}`,
        );
        return started
          ? { outcome: "acted", why: `confirmed by EC2 (${confirmed.why}); replacement ${started} started` }
          : { outcome: "recorded", why: `confirmed by EC2 (${confirmed.why}); a workflow already moves ${name}` };
      }
      case "rebalance":
        // One action per recommendation, whichever source reported it first. EC2 exposes no
        // rebalance state to confirm; what follows (a snapshot or a planned recycle) quiesces first.
        if (!(await decisions.arrival("queue", name, e.instanceId, "rebalance")))
          return { outcome: "recorded", why: "the agent reported this recommendation first" };
        await decisions.rebalance(name);
        return { outcome: "acted", why: "onRebalance applied" };
      case "state-change": {
        if (e.state !== "shutting-down" && e.state !== "terminated") return { outcome: "recorded", why: `${e.state} needs no action` };
        const confirmed = await this.confirm(e.instanceId, "gone");
        if (!confirmed.ok) return { outcome: "unconfirmed", why: `EC2 does not confirm it (${confirmed.why}); nothing is replaced` };
        // Gone without a replacement under way (startReplace refuses while one runs, or while a
        // pause/recycle/delete terminates it): recover now instead of at the next sweep.
        const started = await this.d.operations.startReplace(
          { name, instanceId: e.instanceId, fromGeneration: generation, trigger: "lost" },
          `EventBridge: ${e.instanceId} is ${e.state} (EC2 confirms: ${confirmed.why}) and nothing of spotkeep's terminated it`,
        );
        if (started) this.d.metrics.interruptions.inc({ kind: "lost" });
        return started
          ? { outcome: "acted", why: `confirmed by EC2 (${confirmed.why}); recovery ${started} started` }
          : { outcome: "recorded", why: `confirmed by EC2 (${confirmed.why}); a workflow already moves ${name}` };
      }
      case "scheduled-change":
        this.d.metrics.interruptions.inc({ kind: "scheduled-event" });
        await store.events.add(
          name,
          "scheduled-event",
          `scheduled change ${e.eventTypeCode} for ${e.instanceId} is recorded; ` +
            "the recycle ahead of it follows the event EC2 lists in DescribeInstanceStatus (spec maintenance)",
        );
        return { outcome: "recorded", why: "EC2's DescribeInstanceStatus decides the recycle" };
    }
  }

  private confirm(instanceId: string, claim: "interruption" | "gone") {
    return confirmWithEc2(
      { ec2: this.d.ec2, clock: this.d.clock, attempts: this.d.confirmAttempts, intervalMs: this.d.confirmIntervalMs },
      instanceId,
      claim,
    );
  }
}
