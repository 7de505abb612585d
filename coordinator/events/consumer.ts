/**
 * The interruption-queue consumer: a few long polls in flight, batches of ten, each message's
 * visibility extended while it is being recorded, deleted only after its event is recorded
 * durably. Nothing a message says can stop it: a malformed message or one about an unmanaged
 * instance is counted and deleted; a failure to record leaves the message for redelivery (and a
 * message that keeps failing is dropped after MAX_RECEIVES with a count, so it never blocks the
 * queue). Every delay is clamped and model time.
 */
import { Counter } from "prom-client";
import type { Metrics } from "../metrics.js";
import type { ScaledClock } from "../../shared/clock.js";
import type { EventOutcome } from "./intake.js";
import { type CloudEvent, parseEventMessage } from "./parse.js";
import type { EventQueue, QueueMessage } from "./sqs.js";

/** A message handed out this many times without being recorded is dropped (counted as failed). */
export const MAX_RECEIVES = 10;

export interface ConsumerOptions {
  queue: EventQueue;
  handle: (event: CloudEvent) => Promise<EventOutcome>;
  metrics: Metrics;
  clock: ScaledClock;
  log: (line: string) => void;
  /** Long polls in flight (1–10). */
  pollers?: number;
  /** Seconds a received message stays hidden; extended at half of it while the message is handled. */
  visibilitySeconds?: number;
  /** Long-poll wait, seconds (0–20). */
  waitSeconds?: number;
}

/** The long-poll wait (seconds) unless given: SQS's longest, so a poll holds at most this long before it answers empty. */
export const LONG_POLL_SECONDS = 20;

export class EventConsumer {
  private readonly abort = new AbortController();
  private loops: Promise<void>[] = [];
  private readonly messages: Counter<"outcome">;
  private readonly errors: Counter<"call">;
  private readonly pollers: number;
  private readonly visibility: number;
  private readonly wait: number;

  constructor(private readonly o: ConsumerOptions) {
    this.pollers = clamp(o.pollers ?? 2, 1, 10);
    this.visibility = clamp(o.visibilitySeconds ?? 30, 5, 43_200);
    this.wait = clamp(o.waitSeconds ?? LONG_POLL_SECONDS, 0, LONG_POLL_SECONDS);
    this.messages = new Counter({
      name: "spotkeep_queue_messages_total",
      help: "Interruption-queue messages by outcome (acted, recorded, duplicate, unmanaged, stale, refused, unconfirmed, malformed, failed)",
      labelNames: ["outcome"] as const,
      registers: [o.metrics.registry],
    });
    this.errors = new Counter({
      name: "spotkeep_queue_errors_total",
      help: "Failed interruption-queue calls (receive, delete, change-visibility) and failures to record an event",
      labelNames: ["call"] as const,
      registers: [o.metrics.registry],
    });
  }

  start(): void {
    for (let i = 0; i < this.pollers; i++) this.loops.push(this.loop());
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.loops);
    this.o.queue.close();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      let batch: QueueMessage[];
      try {
        batch = await this.o.queue.receive({ max: 10, waitSeconds: this.wait, visibilitySeconds: this.visibility }, signal);
        failures = 0;
      } catch (err) {
        if (signal.aborted) return;
        this.errors.inc({ call: "receive" });
        failures += 1;
        if (failures === 1 || failures % 20 === 0) this.o.log(`events queue: receiving: ${(err as Error).message}`);
        // 1 s, 2 s, 4 s … up to 30 s (model time) between failing polls.
        await this.o.clock.sleep(Math.min(30_000, 1000 * 2 ** Math.min(failures - 1, 5)), signal).catch(() => undefined);
        continue;
      }
      await Promise.all(batch.map((m) => this.process(m)));
    }
  }

  /** One message: parse, record (visibility extended meanwhile), delete. Never throws. */
  async process(m: QueueMessage): Promise<void> {
    const parsed = parseEventMessage(m.body);
    if (!parsed.ok) {
      this.messages.inc({ outcome: "malformed" });
      this.o.log(`events queue: dropping message ${m.messageId}: ${parsed.reason}`);
      return this.delete(m);
    }
    const cancel = this.keepHidden(m);
    try {
      for (const e of parsed.events) this.messages.inc({ outcome: await this.o.handle(e) });
    } catch (err) {
      this.errors.inc({ call: "record" });
      if (m.receiveCount < MAX_RECEIVES) {
        this.o.log(`events queue: recording message ${m.messageId} failed (left for redelivery): ${(err as Error).message}`);
        return;
      }
      this.messages.inc({ outcome: "failed" });
      this.o.log(`events queue: dropping message ${m.messageId} after ${m.receiveCount} failed attempts: ${(err as Error).message}`);
    } finally {
      cancel();
    }
    await this.delete(m);
  }

  /** Extend the message's visibility every half timeout while it is handled. */
  private keepHidden(m: QueueMessage): () => void {
    let done = false;
    let cancel = () => {};
    const schedule = () => {
      if (done) return;
      cancel = this.o.clock.setTimer(this.visibility * 500, () => {
        this.o.queue.changeVisibility(m.receiptHandle, this.visibility).then(
          () => schedule(),
          () => this.errors.inc({ call: "change-visibility" }),
        );
      });
    };
    schedule();
    return () => {
      done = true;
      cancel();
    };
  }

  private async delete(m: QueueMessage): Promise<void> {
    try {
      await this.o.queue.delete(m.receiptHandle);
    } catch (err) {
      // Recorded already: the redelivery is a duplicate and is deleted then.
      this.errors.inc({ call: "delete" });
      this.o.log(`events queue: deleting message ${m.messageId}: ${(err as Error).message}`);
    }
  }
}

function clamp(n: number, min: number, max: number): number {
  return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : min;
}
