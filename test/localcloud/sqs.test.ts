/**
 * Contract suite for localcloud's SQS endpoint through the unmodified @aws-sdk/client-sqs (AWS JSON
 * 1.0 protocol): queues, long polling, visibility timeouts and redelivery, batches, attributes,
 * SQS's own errors, and the EventBridge-style rule that sends EC2's instance events to a queue.
 */
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalCloud, startLocalCloud } from "../../localcloud/index.js";

const SCALE = 0.02;
let lc: LocalCloud;
let sqs: SQSClient;

beforeAll(async () => {
  lc = await startLocalCloud({ port: 0, runtime: "none", timeScale: SCALE, eventsQueue: "spotkeep-events", log: () => undefined });
  sqs = new SQSClient({ region: "us-east-1", endpoint: lc.endpoint, credentials: { accessKeyId: "x", secretAccessKey: "y" } });
});
afterAll(async () => {
  sqs?.destroy();
  await lc?.stop();
});

async function errorOf(p: Promise<unknown>): Promise<{ name: string; status?: number; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as Error & { $metadata?: { httpStatusCode?: number } };
    return { name: e.name, status: e.$metadata?.httpStatusCode, message: e.message };
  }
  throw new Error("expected the call to fail");
}

async function queue(name: string, attrs: Record<string, string> = {}): Promise<string> {
  const r = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attrs }));
  return r.QueueUrl!;
}

describe("localcloud SQS through the unmodified SDK", () => {
  it("creates a queue idempotently, finds it by name and refuses a different attribute", async () => {
    const url = await queue("q-create", { VisibilityTimeout: "10" });
    expect(url).toBe(`${lc.endpoint}/123456789012/q-create`);
    expect(await queue("q-create", { VisibilityTimeout: "10" })).toBe(url);
    expect((await sqs.send(new GetQueueUrlCommand({ QueueName: "q-create" }))).QueueUrl).toBe(url);
    expect((await errorOf(sqs.send(new CreateQueueCommand({ QueueName: "q-create", Attributes: { VisibilityTimeout: "11" } })))).name).toBe(
      "QueueNameExists",
    );
    expect((await errorOf(sqs.send(new CreateQueueCommand({ QueueName: "bad name!" })))).name).toBe("InvalidParameterValue");
  });

  it("sends and receives with checked MD5s, batches of up to ten, and deletes", async () => {
    const url = await queue("q-basic");
    for (let i = 0; i < 12; i++) await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: `m${i} ü` }));
    const first = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ["All"] }),
    );
    expect(first.Messages).toHaveLength(10);
    expect(first.Messages![0]!.Attributes?.ApproximateReceiveCount).toBe("1");
    const rest = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }));
    expect(rest.Messages).toHaveLength(2);
    const entries = [...first.Messages!, ...rest.Messages!].slice(0, 10).map((m, i) => ({ Id: `e${i}`, ReceiptHandle: m.ReceiptHandle! }));
    const batch = await sqs.send(
      new DeleteMessageBatchCommand({ QueueUrl: url, Entries: [...entries, { Id: "bogus", ReceiptHandle: "nope" }].slice(-10) }),
    );
    expect(batch.Failed?.map((f) => [f.Id, f.Code])).toEqual([["bogus", "ReceiptHandleIsInvalid"]]);
    for (const m of [...first.Messages!, ...rest.Messages!])
      await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle! }));
    const attrs = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["All"] }));
    expect(attrs.Attributes?.ApproximateNumberOfMessages).toBe("0");
    expect(attrs.Attributes?.ApproximateNumberOfMessagesNotVisible).toBe("0");
    expect(attrs.Attributes?.QueueArn).toBe("arn:aws:sqs:us-east-1:123456789012:q-basic");
  });

  it("long-polls until a message arrives, and returns empty when the wait ends", async () => {
    const url = await queue("q-wait");
    const empty = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 2 }));
    expect(empty.Messages ?? []).toEqual([]);
    const waiting = sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 20 }));
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: "late" }));
    expect((await waiting).Messages?.map((m) => m.Body)).toEqual(["late"]);
  });

  it("redelivers a message whose visibility timeout ran out, with a new receipt handle; the old one deletes nothing", async () => {
    const url = await queue("q-visibility");
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: "again" }));
    const a = (await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, VisibilityTimeout: 5 }))).Messages![0]!;
    expect((await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }))).Messages ?? []).toEqual([]);
    const b = (await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 20, MessageSystemAttributeNames: ["All"] })))
      .Messages![0]!;
    expect(b.MessageId).toBe(a.MessageId);
    expect(b.ReceiptHandle).not.toBe(a.ReceiptHandle);
    expect(b.Attributes?.ApproximateReceiveCount).toBe("2");
    await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: a.ReceiptHandle! }));
    const attrs = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["ApproximateNumberOfMessagesNotVisible"] }),
    );
    expect(attrs.Attributes).toEqual({ ApproximateNumberOfMessagesNotVisible: "1" });
    // Extending the visibility keeps it hidden past its first timeout; 0 makes it visible at once.
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: b.ReceiptHandle!, VisibilityTimeout: 0 }));
    const c = (await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }))).Messages![0]!;
    expect(c.MessageId).toBe(a.MessageId);
    await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: c.ReceiptHandle! }));
    expect(
      (
        await errorOf(
          sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: c.ReceiptHandle!, VisibilityTimeout: 5 })),
        )
      ).name,
    ).toBe("MessageNotInflight");
  });

  it("answers SQS's errors for unknown queues, bad receipt handles and bad parameters", async () => {
    const url = await queue("q-errors");
    const missing = await errorOf(sqs.send(new ReceiveMessageCommand({ QueueUrl: `${lc.endpoint}/123456789012/nope` })));
    expect(missing).toMatchObject({ name: "QueueDoesNotExist", status: 400 });
    expect((await errorOf(sqs.send(new GetQueueUrlCommand({ QueueName: "nope" })))).name).toBe("QueueDoesNotExist");
    expect(await errorOf(sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: "garbage" })))).toMatchObject({
      name: "ReceiptHandleIsInvalid",
      status: 404,
    });
    expect((await errorOf(sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 11 })))).name).toBe(
      "InvalidParameterValue",
    );
    expect((await errorOf(sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 21 })))).name).toBe("InvalidParameterValue");
    expect((await errorOf(sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: [] })))).name).toBe("EmptyBatchRequest");
    const eleven = Array.from({ length: 11 }, (_, i) => ({ Id: `e${i}`, ReceiptHandle: "x" }));
    expect((await errorOf(sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: eleven })))).name).toBe(
      "TooManyEntriesInBatchRequest",
    );
    const twins = [
      { Id: "same", ReceiptHandle: "x" },
      { Id: "same", ReceiptHandle: "y" },
    ];
    expect((await errorOf(sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: twins })))).name).toBe(
      "BatchEntryIdsNotDistinct",
    );
    expect((await errorOf(sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["Bogus" as never] })))).name).toBe(
      "InvalidAttributeName",
    );
  });

  it("delivers EC2's instance events, in AWS's JSON shape, through the rule to the queue", async () => {
    const { RunInstancesCommand, EC2Client } = await import("@aws-sdk/client-ec2");
    const ec2 = new EC2Client({ region: "us-east-1", endpoint: lc.endpoint, credentials: { accessKeyId: "x", secretAccessKey: "y" } });
    const run = await ec2.send(
      new RunInstancesCommand({
        ImageId: lc.world.baseImageId,
        InstanceType: "m5.large",
        MinCount: 1,
        MaxCount: 1,
        InstanceMarketOptions: { MarketType: "spot" },
      }),
    );
    ec2.destroy();
    const id = run.Instances![0]!.InstanceId!;
    const url = lc.eventsQueueUrl!;
    const seen: Array<Record<string, any>> = [];
    const until = async (pred: () => boolean) => {
      for (let i = 0; i < 50 && !pred(); i++) {
        const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 5 }));
        for (const m of r.Messages ?? []) {
          seen.push(JSON.parse(m.Body!));
          await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle! }));
        }
      }
    };
    const states = () => seen.filter((e) => e["detail-type"] === "EC2 Instance State-change Notification").map((e) => e.detail.state);
    await until(() => states().includes("running"));
    const post = (verb: string, body: unknown) =>
      fetch(`${lc.controlUrl}/instances/${id}/${verb}`, { method: "POST", body: JSON.stringify(body) }).then((r) => r.json());
    await post("rebalance", {});
    await post("interrupt", { noticeSeconds: 10 });
    await until(() => states().includes("terminated"));
    expect(states()).toEqual(["pending", "running", "shutting-down", "terminated"]);
    const warning = seen.find((e) => e["detail-type"] === "EC2 Spot Instance Interruption Warning")!;
    expect(Object.keys(warning).sort()).toEqual([
      "account",
      "detail",
      "detail-type",
      "id",
      "region",
      "resources",
      "source",
      "time",
      "version",
    ]);
    expect(warning).toMatchObject({
      version: "0",
      source: "aws.ec2",
      account: "123456789012",
      region: "us-east-1",
      detail: { "instance-id": id, "instance-action": "terminate" },
    });
    expect(warning.resources[0]).toMatch(new RegExp(`^arn:aws:ec2:us-east-1[a-c]:instance/${id}$`));
    expect(warning.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(seen.filter((e) => e["detail-type"] === "EC2 Instance Rebalance Recommendation").map((e) => e.detail)).toEqual([
      { "instance-id": id },
    ]);
    expect(new Set(seen.map((e) => e.id)).size).toBe(seen.length);
  });

  it("instances/{id}/agent: 404 for an unknown instance, 400 for a bad body, 501 where the runtime cannot stop processes", async () => {
    const post = (id: string, body: unknown) =>
      fetch(`${lc.controlUrl}/instances/${id}/agent`, { method: "POST", body: JSON.stringify(body) }).then((r) => r.status);
    expect(await post("i-0000000000000000f", { state: "stopped" })).toBe(404);
    const id = [...lc.world.instances.keys()][0]!;
    expect(await post(id, { state: "frozen" })).toBe(400);
    expect(await post(id, { state: "stopped" })).toBe(501);
  });

  it("adds and removes rules through the control API", async () => {
    await queue("q-rules");
    const put = (name: string, body: unknown) =>
      fetch(`${lc.controlUrl}/events/rules/${name}`, { method: "PUT", body: JSON.stringify(body) }).then(async (r) => [
        r.status,
        await r.json(),
      ]);
    expect((await put("only-spot", { queue: "q-rules", detailTypes: ["EC2 Spot Instance Interruption Warning"] }))[0]).toBe(200);
    expect((await put("x", { queue: "no-such-queue" }))[0]).toBe(400);
    expect((await put("x", { queue: "q-rules", detailTypes: ["Nope"] }))[0]).toBe(400);
    const rules = (await fetch(`${lc.controlUrl}/events/rules`).then((r) => r.json())) as { rules: Array<{ name: string }> };
    expect(rules.rules.map((r) => r.name).sort()).toEqual(["only-spot", "spotkeep-interruptions"]);
    expect((await fetch(`${lc.controlUrl}/events/rules/only-spot`, { method: "DELETE" })).status).toBe(200);
    expect((await fetch(`${lc.controlUrl}/events/rules/only-spot`, { method: "DELETE" })).status).toBe(404);
  });
});
