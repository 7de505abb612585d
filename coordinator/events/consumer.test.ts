import { describe, expect, it } from "vitest";
import { FakeClock, scaledClock } from "../../shared/clock.js";
import { Metrics } from "../metrics.js";
import { EventConsumer, MAX_RECEIVES } from "./consumer.js";
import type { EventOutcome } from "./intake.js";
import type { CloudEvent } from "./parse.js";
import type { EventQueue, QueueMessage } from "./sqs.js";

const WARNING = JSON.stringify({
  version: "0",
  id: "e-1",
  "detail-type": "EC2 Spot Instance Interruption Warning",
  source: "aws.ec2",
  account: "123456789012",
  time: "2024-01-02T03:04:05Z",
  region: "us-east-1",
  resources: [],
  detail: { "instance-id": "i-1234567890abcdef0", "instance-action": "terminate" },
});

function fakeQueue() {
  const calls: string[] = [];
  const q: EventQueue & { calls: string[]; failReceive: number } = {
    url: "http://q",
    calls,
    failReceive: 0,
    async receive(_o, signal) {
      if (q.failReceive > 0) {
        q.failReceive -= 1;
        throw new Error("connection refused");
      }
      // Nothing more to hand out: wait to be stopped.
      await new Promise((_r, reject) => signal.addEventListener("abort", () => reject(new Error("aborted"))));
      return [];
    },
    async delete(h) {
      calls.push(`delete ${h}`);
    },
    async changeVisibility(h, s) {
      calls.push(`visibility ${h} ${s}`);
    },
    async attributes() {
      return {};
    },
    close() {},
  };
  return q;
}

function setup(handle: (e: CloudEvent) => Promise<EventOutcome>) {
  const fake = new FakeClock();
  const metrics = new Metrics({ defaultMetrics: false });
  const queue = fakeQueue();
  const consumer = new EventConsumer({ queue, handle, metrics, clock: scaledClock(1, fake), log: () => undefined, visibilitySeconds: 30 });
  const count = async (outcome: string) =>
    Number(new RegExp(`spotkeep_queue_messages_total\\{outcome="${outcome}"\\} (\\d+)`).exec(await metrics.text())?.[1] ?? 0);
  return { fake, queue, consumer, count, metrics };
}

const msg = (body: string, receiveCount = 1): QueueMessage => ({ messageId: "m-1", receiptHandle: "r-1", body, receiveCount });

describe("EventConsumer", () => {
  it("counts and deletes a malformed message without handing it on", async () => {
    let handled = 0;
    const { queue, consumer, count } = setup(async () => {
      handled++;
      return "acted";
    });
    await consumer.process(msg("{not json"));
    expect(handled).toBe(0);
    expect(queue.calls).toEqual(["delete r-1"]);
    expect(await count("malformed")).toBe(1);
  });

  it("deletes a message only after its event is recorded, extending its visibility meanwhile", async () => {
    let finish!: (o: EventOutcome) => void;
    const { fake, queue, consumer, count } = setup(() => new Promise((r) => (finish = r)));
    const done = consumer.process(msg(WARNING));
    await fake.advance(16_000);
    await fake.advance(16_000);
    expect(queue.calls).toEqual(["visibility r-1 30", "visibility r-1 30"]);
    finish("acted");
    await done;
    expect(queue.calls.at(-1)).toBe("delete r-1");
    expect(await count("acted")).toBe(1);
    // No extension after the message is done.
    await fake.advance(60_000);
    expect(queue.calls.filter((c) => c.startsWith("visibility"))).toHaveLength(2);
  });

  it("leaves a message it could not record for redelivery, and drops one that keeps failing", async () => {
    const { queue, consumer, count } = setup(async () => {
      throw new Error("database is locked");
    });
    await consumer.process(msg(WARNING, 1));
    expect(queue.calls).toEqual([]);
    await consumer.process(msg(WARNING, MAX_RECEIVES));
    expect(queue.calls).toEqual(["delete r-1"]);
    expect(await count("failed")).toBe(1);
  });

  it("backs off when receiving fails and stops when asked", async () => {
    const { fake, queue, consumer, metrics } = setup(async () => "acted");
    queue.failReceive = 3;
    consumer.start();
    for (let i = 0; i < 5; i++) await fake.advance(4_000);
    expect(await metrics.text()).toMatch(/spotkeep_queue_errors_total\{call="receive"\} 3/);
    await consumer.stop();
  });
});
