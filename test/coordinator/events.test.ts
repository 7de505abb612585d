/**
 * The EventBridge → SQS source of notices in process (test/support/in-process.ts: localcloud
 * without a runtime, the coordinator in this process, a fake agent per instance that relays IMDS
 * spot notices, time-scaled) with the unmodified @aws-sdk/client-sqs: a notice from the queue alone
 * handles an interruption when the agent is silent; with both sources alive one workflow starts;
 * duplicated, reordered and redelivered messages change nothing; malformed and unmanaged messages
 * are counted and deleted.
 *
 * That every acknowledged record survives a replacement whose quiesce was skipped (crash-consistent
 * capture) is test/coordinator/health-crash.test.ts's (a hung instance's recycle, quiesce skipped,
 * acks ⊆ records); the queue's message handled once across a coordinator killed mid-way is
 * test/coordinator/events-crash.test.ts's.
 */
import { GetQueueAttributesCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSpec } from "../../shared/spec.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { liveInstances, until } from "./harness.js";

let h: InProcess;
let sqs: SQSClient;
let queueUrl: string;

beforeAll(async () => {
  h = await startInProcess({
    prefix: "spotkeep-inproc-events-",
    eventsQueue: "spotkeep-events",
    // 300 model s is 3 s real at the harness's time scale: a message handled on a loaded machine is
    // deleted before it becomes visible again (redelivery after a crash is events-crash.test.ts's).
    config: (env) => ({ events: { queueUrl: env.lc.eventsQueueUrl, visibilityTimeoutSeconds: 300 } }),
  });
  queueUrl = h.env.lc.eventsQueueUrl!;
  sqs = new SQSClient({ region: "us-east-1", endpoint: h.env.lc.endpoint, credentials: { accessKeyId: "x", secretAccessKey: "y" } });
});
afterAll(async () => {
  sqs?.destroy();
  await h?.stop();
});

async function create(name: string) {
  const { workflowId } = await h.coord.views.createInstance(parseSpec(h.spec(name)));
  const created = await h.coord.engine.wait(workflowId);
  expect(created.error).toBeNull();
  const d = (await h.coord.views.getInstance(name))!;
  return { instanceId: d.instanceId! };
}
const replaces = async (name: string) => (await h.coord.store.workflows.listFor(name)).filter((w) => w.kind === "replace");
const timeline = async (name: string) => h.coord.store.events.list(name, 1000);
const metric = async (outcome: string) => {
  const m = new RegExp(`^spotkeep_queue_messages_total\\{outcome="${outcome}"\\} (\\d+)`, "m").exec(await h.coord.metrics.text());
  return m ? Number(m[1]) : 0;
};
const queueEmpty = async () => {
  const a = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }),
  );
  return a.Attributes?.ApproximateNumberOfMessages === "0" && a.Attributes?.ApproximateNumberOfMessagesNotVisible === "0";
};
const send = (body: unknown) =>
  sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: typeof body === "string" ? body : JSON.stringify(body) }));
const ec2Event = (id: string, detailType: string, instanceId: string, detail: Record<string, string>) => ({
  version: "0",
  id,
  "detail-type": detailType,
  source: "aws.ec2",
  account: "123456789012",
  time: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
  region: "us-east-1",
  resources: [`arn:aws:ec2:us-east-1:123456789012:instance/${instanceId}`],
  detail: { "instance-id": instanceId, ...detail },
});

describe("interruption notices from the EventBridge queue", () => {
  it("with the agent stopped, handles the interruption from the queue's notice: quiesce skipped, capture while the instance exists, replacement ready", async () => {
    const name = "ev-agent-stopped";
    const { instanceId } = await create(name);
    // Its processes stopped: the agent's connection stays open and says nothing more.
    h.hang(instanceId);
    // The hub stops hearing from it (heartbeats every 5 model s).
    await until("the agent to fall silent", () => {
      const s = h.coord.hub.session(instanceId);
      return !s || Date.now() - s.lastSeenAt > 16_000 * h.timeScale;
    });
    await h.env.control("POST", `instances/${instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await until("a replace workflow", async () => (await replaces(name))[0]);
    expect(wf.trigger).toBe("spot-interruption");
    expect((wf.input as { skipQuiesce?: string }).skipQuiesce).toMatch(/not answering/);
    const done = await h.coord.engine.wait(wf.id);
    expect(done.error).toBeNull();
    expect(done.status).toBe("succeeded");

    const events = await timeline(name);
    const kinds = events.map((e) => e.kind);
    expect(kinds).toContain("queue-event");
    expect(kinds).toContain("quiesce-skipped");
    expect(kinds).not.toContain("quiesce-timeout");
    expect(events.find((e) => e.kind === "notice-arrival")?.message).toMatch(/arrived first from the EventBridge queue/);
    // The root was captured while the old instance still existed (not "root-lost"), so the new generation boots from it.
    expect(kinds).not.toContain("root-lost");
    const rootStep = (await h.coord.store.steps.list(wf.id)).find((s) => s.name === "snapshot-root");
    expect((rootStep?.result as { snapshotId: string | null } | undefined)?.snapshotId).toMatch(/^snap-/);
    const after = (await h.coord.views.getInstance(name))!;
    expect(after.state).toBe("running");
    expect(after.generation).toBe(2);
    expect(after.resources.root.imageId).not.toBe(h.env.lc.world.baseImageId);
    expect((await liveInstances(h.env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
  });

  it("with both paths alive, one workflow per interruption; the timeline records both arrivals and their delay", async () => {
    const name = "ev-both";
    const { instanceId } = await create(name);
    await h.env.control("POST", `instances/${instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await until("a replace workflow", async () => (await replaces(name))[0]);
    await until(
      "both sources to report the notice",
      async () => (await h.coord.store.noticeArrivals.list(instanceId, "spot-interruption")).length === 2,
    );
    const done = await h.coord.engine.wait(wf.id);
    expect(done.status).toBe("succeeded");
    expect((wf.input as { skipQuiesce?: string }).skipQuiesce).toBeUndefined();
    expect(await replaces(name)).toHaveLength(1);
    const arrivals = (await timeline(name)).filter((e) => e.kind === "notice-arrival").map((e) => e.message);
    expect(arrivals).toHaveLength(2);
    expect(arrivals[1]).toMatch(/arrived from the (agent|EventBridge queue) \d+\.\d\d s after the (agent|EventBridge queue)/);
    expect((await timeline(name)).filter((e) => e.kind === "replace-started")).toHaveLength(1);
  });

  it("duplicated, reordered and redelivered messages change nothing", async () => {
    const name = "ev-both";
    const before = await h.coord.store.counts();
    const oldId = (await h.coord.store.generations.get(name, 1))!.ec2InstanceId!;
    const newId = (await h.coord.views.getInstance(name))!.instanceId!;
    const ids = (await timeline(name)).flatMap((e) => (e.kind === "queue-event" ? [/\(event ([^,]+),/.exec(e.message)![1]!] : []));
    expect(ids.length).toBeGreaterThan(0);
    const duplicates0 = await metric("duplicate");
    const stale0 = await metric("stale");
    // The same events again (same ids: redeliveries or EventBridge's duplicates), newest first.
    const warning = ec2Event(ids[0]!, "EC2 Spot Instance Interruption Warning", oldId, { "instance-action": "terminate" });
    for (const id of [...ids].reverse()) await send({ ...warning, id });
    // Late and out-of-order news of the old generation (new ids): its end, then its warning.
    await send(ec2Event("late-terminated", "EC2 Instance State-change Notification", oldId, { state: "terminated" }));
    await send(ec2Event("late-shutting-down", "EC2 Instance State-change Notification", oldId, { state: "shutting-down" }));
    await send(ec2Event("late-warning", "EC2 Spot Instance Interruption Warning", oldId, { "instance-action": "terminate" }));
    await until("the queue to drain", queueEmpty);
    await until(
      "every message to be counted",
      async () => (await metric("duplicate")) - duplicates0 + (await metric("stale")) - stale0 >= ids.length + 3,
    );
    expect(await metric("duplicate")).toBe(duplicates0 + ids.length);
    expect(await metric("stale")).toBe(stale0 + 3);
    expect(await replaces(name)).toHaveLength(1);
    const after = await h.coord.store.counts();
    expect(after.workflows).toBe(before.workflows);
    expect(after.generations).toBe(before.generations);
    expect((await h.coord.views.getInstance(name))!.instanceId).toBe(newId);
  });

  it("counts and deletes malformed messages and events for unmanaged instances", async () => {
    const before = await h.coord.store.counts();
    const malformed0 = await metric("malformed");
    const unmanaged0 = await metric("unmanaged");
    await send("not json at all");
    await send({ version: "0", id: "x" });
    await send(ec2Event("bad-detail", "EC2 Spot Instance Interruption Warning", "i-0123456789abcdef0", { "instance-action": "explode" }));
    await send(
      ec2Event("unmanaged-1", "EC2 Spot Instance Interruption Warning", "i-0123456789abcdef0", { "instance-action": "terminate" }),
    );
    await until("the queue to drain", queueEmpty);
    await until(
      "every message to be counted",
      async () => (await metric("malformed")) - malformed0 === 3 && (await metric("unmanaged")) - unmanaged0 === 1,
    );
    const after = await h.coord.store.counts();
    expect(after.queue_events).toBe(before.queue_events);
    expect(after.workflows).toBe(before.workflows);
  });
});
