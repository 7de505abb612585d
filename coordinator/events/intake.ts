/**
 * Queue intake: EventBridge events (already parsed) → decisions, through the same path as the
 * agent's notices (`decisions.ts`). An event is AWS's own word, so a spot interruption warning
 * needs no further confirmation. Each event is recorded by its id (with its timeline entry) in one
 * transaction before anything acts on it, and marked handled once its decision is recorded: a
 * redelivered, duplicated or replayed message finds the row and changes nothing, and one recorded
 * but not yet handled (the coordinator died in between) is handled on its redelivery, once,
 * because starting a replacement is itself check-and-start.
 */
import type { Store } from "../db/store.js";
import type { Metrics } from "../metrics.js";
import type { Operations } from "../operations.js";
import type { ScaledClock } from "../time.js";
import { MAX_NOTICE_MS } from "../workflow/runbooks/replace.js";
import type { NoticeDecisions } from "./decisions.js";
import type { CloudEvent } from "./parse.js";

/** What became of an event: the consumer counts these and deletes the message for every one of them. */
export type EventOutcome = "acted" | "recorded" | "duplicate" | "unmanaged" | "stale";

export interface QueueIntakeDeps {
  store: Store;
  operations: Operations;
  decisions: NoticeDecisions;
  metrics: Metrics;
  clock: ScaledClock;
  /** The agent of this EC2 instance is connected and was heard from recently (it can quiesce). */
  agentAnswering: (ec2InstanceId: string) => boolean;
  log: (line: string) => void;
  /** Tests only: called right after an event is recorded, before it is handled and its message deleted. */
  afterRecord?: (event: CloudEvent) => void;
}

const DESCRIBE: Record<CloudEvent["kind"], (e: CloudEvent) => string> = {
  "spot-interruption": (e) => `spot interruption warning (${e.action}) for ${e.instanceId}`,
  rebalance: (e) => `rebalance recommendation for ${e.instanceId}`,
  "state-change": (e) => `${e.instanceId} is ${e.state}`,
  "scheduled-change": (e) => `AWS Health scheduled change ${e.eventTypeCode} for ${e.instanceId}`,
};

export class QueueIntake {
  constructor(private readonly d: QueueIntakeDeps) {}

  async handle(e: CloudEvent): Promise<EventOutcome> {
    const { store } = this.d;
    const g = await store.generations.byEc2InstanceId(e.instanceId);
    if (!g) return "unmanaged";
    const name = g.instance;
    const sent = new Date(e.time).toISOString();
    const fresh = await store.tx(async (t) => {
      const recorded = await t.queueEvents.record({ eventId: e.id, kind: e.kind, ec2InstanceId: e.instanceId, instance: name, data: e });
      // Every generation starts pending and running: only the other state changes are news.
      const routine = e.kind === "state-change" && (e.state === "pending" || e.state === "running");
      if (recorded && !routine)
        await t.events.add(name, "queue-event", `EventBridge: ${DESCRIBE[e.kind](e)} (event ${e.id}, sent ${sent})`);
      return recorded;
    });
    if (!fresh && (await store.queueEvents.get(e.id))?.handledAt != null) return "duplicate";
    this.d.afterRecord?.(e);
    const outcome = await this.decide(e, name, g.generation, g.status === "live");
    await store.queueEvents.markHandled(e.id, outcome);
    return outcome;
  }

  private async decide(e: CloudEvent, name: string, generation: number, live: boolean): Promise<EventOutcome> {
    const { store, decisions } = this.d;
    // A generation already ended (or not yet live): the event is late or early news of it, kept on the timeline.
    if (!live) return "stale";
    switch (e.kind) {
      case "spot-interruption": {
        this.d.metrics.interruptions.inc({ kind: "spot-interruption" });
        await decisions.arrival("queue", name, e.instanceId, "spot-interruption");
        const skipQuiesce = this.d.agentAnswering(e.instanceId) ? undefined : `the agent of ${e.instanceId} is not answering`;
        // EC2 takes the instance two minutes after it sent the warning.
        const deadline = decisions.clampDeadline(undefined, e.time + MAX_NOTICE_MS * this.d.clock.timeScale);
        const started = await decisions.spotInterruption(
          { name, instanceId: e.instanceId, fromGeneration: generation, trigger: "spot-interruption", deadline, skipQuiesce },
          `spot interruption warning (${e.action}) from EventBridge`,
        );
        return started ? "acted" : "recorded";
      }
      case "rebalance":
        // One action per recommendation, whichever source reported it first.
        if (!(await decisions.arrival("queue", name, e.instanceId, "rebalance"))) return "recorded";
        await decisions.rebalance(name);
        return "acted";
      case "state-change": {
        if (e.state !== "shutting-down" && e.state !== "terminated") return "recorded";
        // Gone without a replacement under way (startReplace refuses while one runs, or while a
        // pause/recycle/delete terminates it): recover now instead of at the next sweep.
        const started = await this.d.operations.startReplace(
          { name, instanceId: e.instanceId, fromGeneration: generation, trigger: "lost" },
          `EventBridge: ${e.instanceId} is ${e.state} and nothing of spotkeep's terminated it`,
        );
        if (started) this.d.metrics.interruptions.inc({ kind: "lost" });
        return started ? "acted" : "recorded";
      }
      case "scheduled-change":
        this.d.metrics.interruptions.inc({ kind: "scheduled-event" });
        await store.events.add(
          name,
          "scheduled-event",
          `scheduled change ${e.eventTypeCode} for ${e.instanceId} is recorded; ` +
            "the recycle ahead of it follows the event EC2 lists in DescribeInstanceStatus (spec maintenance)",
        );
        return "recorded";
    }
  }
}
