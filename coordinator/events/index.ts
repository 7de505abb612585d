/**
 * The EventBridge → SQS source of notices, built from the `events` config: the queue, the intake
 * (shared decisions with the agents' notices) and the consumer. `service.ts` starts and stops it.
 */
import type { AgentHub } from "../agents/hub.js";
import type { Store } from "../db/store.js";
import type { Metrics } from "../metrics.js";
import type { Operations } from "../operations.js";
import type { ScaledClock } from "../time.js";
import { EventConsumer } from "./consumer.js";
import type { NoticeDecisions } from "./decisions.js";
import { QueueIntake } from "./intake.js";
import { createSqsQueue, type EventQueue } from "./sqs.js";

/** An agent silent for this long (model ms; it heartbeats every 5 s) cannot be counted on to quiesce. */
const AGENT_SILENT_MS = 15_000;

export interface QueueEventsOptions {
  queueUrl: string;
  region: string;
  pollers: number;
  visibilityTimeoutSeconds: number;
  store: Store;
  operations: Operations;
  decisions: NoticeDecisions;
  metrics: Metrics;
  clock: ScaledClock;
  hub: AgentHub;
  log: (line: string) => void;
  /** Tests: the queue to use instead of SQS. */
  queue?: EventQueue;
  /** Crash test only: SIGKILL this process right after an event is recorded, before its message is deleted. */
  crashAfterRecord?: boolean;
}

export function startQueueEvents(o: QueueEventsOptions): EventConsumer {
  const queue = o.queue ?? createSqsQueue({ queueUrl: o.queueUrl, region: o.region });
  const intake = new QueueIntake({
    store: o.store,
    operations: o.operations,
    decisions: o.decisions,
    metrics: o.metrics,
    clock: o.clock,
    log: o.log,
    agentAnswering: (id) => {
      const s = o.hub.session(id);
      return !!s && o.clock.modelMsSince(s.lastSeenAt) < AGENT_SILENT_MS;
    },
    afterRecord: o.crashAfterRecord
      ? (e) => {
          o.log(`crash hook: killing myself after recording event ${e.id}`);
          process.kill(process.pid, "SIGKILL");
        }
      : undefined,
  });
  const consumer = new EventConsumer({
    queue,
    handle: (e) => intake.handle(e),
    metrics: o.metrics,
    clock: o.clock,
    log: o.log,
    pollers: o.pollers,
    visibilitySeconds: o.visibilityTimeoutSeconds,
  });
  consumer.start();
  queue.attributes().then(
    (a) => o.log(`events queue ${a.QueueArn ?? queue.url}: consuming`),
    (err: Error) => o.log(`events queue ${queue.url}: ${err.name}: ${err.message} (polling goes on)`),
  );
  return consumer;
}
