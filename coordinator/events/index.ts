/**
 * The EventBridge → SQS source of notices, built from the `events` config: the queue, the intake
 * (shared decisions with the agents' notices) and the consumer. `service.ts` starts and stops it.
 * Genuine events come from the coordinator's own account: it is asked of STS at start (and again,
 * with backoff, until STS answers; events wait in the queue meanwhile).
 */
import type { AgentHub } from "../agents/hub.js";
import type { Ec2Gateway } from "../cloud/gateway.js";
import type { CallerIdentity } from "../cloud/identity.js";
import type { Store } from "../db/store.js";
import type { Metrics } from "../metrics.js";
import type { Operations } from "../operations.js";
import type { ScaledClock } from "../../shared/clock.js";
import { EventConsumer } from "./consumer.js";
import type { NoticeDecisions } from "./decisions.js";
import { type EventOrigin, QueueIntake } from "./intake.js";
import { createSqsQueue, type EventQueue } from "./sqs.js";

/** An agent silent for this long (model ms; it heartbeats every 5 s) cannot be counted on to quiesce. */
const AGENT_SILENT_MS = 15_000;

export interface QueueEventsOptions {
  queueUrl: string;
  region: string;
  /** The coordinator's EC2 region: genuine events name it. */
  ec2Region: string;
  ec2: Pick<Ec2Gateway, "spotRequestStatus" | "describeInstances">;
  /** Who the coordinator's credentials are (STS GetCallerIdentity). */
  identity: () => Promise<CallerIdentity>;
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
  /** Instrumentation (tests): called right after an event is recorded, before its message is deleted. */
  afterRecord?: (eventId: string) => void;
}

export function startQueueEvents(o: QueueEventsOptions): EventConsumer {
  const queue = o.queue ?? createSqsQueue({ queueUrl: o.queueUrl, region: o.region });
  let origin: EventOrigin | null = null;
  const stopped = new AbortController();
  void (async () => {
    for (let attempt = 1; !stopped.signal.aborted; attempt++) {
      try {
        const id = await o.identity();
        origin = { account: id.account, region: o.ec2Region };
        o.log(`events queue: accepting events from account ${id.account} (${id.arn}), region ${o.ec2Region}`);
        return;
      } catch (err) {
        if (attempt === 1 || attempt % 10 === 0)
          o.log(`events queue: asking STS who this coordinator is failed (events wait in the queue): ${(err as Error).message}`);
        // 1 s, 2 s, 4 s … up to 60 s (model time) between attempts.
        await o.clock.sleep(Math.min(60_000, 1000 * 2 ** Math.min(attempt - 1, 6)), stopped.signal).catch(() => undefined);
      }
    }
  })();
  const intake = new QueueIntake({
    ec2: o.ec2,
    origin: () => origin,
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
    afterRecord: o.afterRecord ? (e) => o.afterRecord?.(e.id) : undefined,
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
  const stop = consumer.stop.bind(consumer);
  consumer.stop = async () => {
    stopped.abort();
    await stop();
  };
  queue.attributes().then(
    (a) => o.log(`events queue ${a.QueueArn ?? queue.url}: consuming`),
    (err: Error) => o.log(`events queue ${queue.url}: ${err.name}: ${err.message} (polling goes on)`),
  );
  return consumer;
}
