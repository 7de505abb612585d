/**
 * The interruption queue: the only code that imports `@aws-sdk/client-sqs`, narrowed to the four
 * calls the consumer makes. Works against SQS and, when the queue URL is not an AWS one, against
 * localcloud's SQS endpoint (the queue URL's origin becomes the endpoint).
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";

/** Every SQS action this module calls: the coordinator's IAM policy grants exactly these on the queue. */
export const QUEUE_ACTIONS = ["ChangeMessageVisibility", "DeleteMessage", "GetQueueAttributes", "ReceiveMessage"] as const;

export interface QueueMessage {
  messageId: string;
  receiptHandle: string;
  body: string;
  /** How many times SQS has handed this message out (1 on first delivery). */
  receiveCount: number;
}

/** Implementations must pass SQS's semantics through: at-least-once delivery, deletes by receipt handle. */
export interface EventQueue {
  readonly url: string;
  /** Long poll for up to `max` messages; resolves empty when the wait ends; rejects when `signal` aborts. */
  receive(o: { max: number; waitSeconds: number; visibilitySeconds: number }, signal: AbortSignal): Promise<QueueMessage[]>;
  delete(receiptHandle: string): Promise<void>;
  changeVisibility(receiptHandle: string, seconds: number): Promise<void>;
  /** The queue's attributes (the start-up check that it exists and is readable). */
  attributes(): Promise<Record<string, string>>;
  close(): void;
}

const AWS_HOST = /(^|\.)amazonaws\.com(\.cn)?$/;

export function createSqsQueue(o: { queueUrl: string; region: string }): EventQueue {
  const url = new URL(o.queueUrl);
  const local = !AWS_HOST.test(url.hostname);
  const client = new SQSClient({
    region: o.region,
    ...(local ? { endpoint: url.origin } : {}),
    ...(local && !process.env.AWS_ACCESS_KEY_ID ? { credentials: { accessKeyId: "spotkeep", secretAccessKey: "spotkeep" } } : {}),
    maxAttempts: 3,
  });
  const QueueUrl = o.queueUrl;
  return {
    url: QueueUrl,
    async receive({ max, waitSeconds, visibilitySeconds }, signal) {
      const r = await client.send(
        new ReceiveMessageCommand({
          QueueUrl,
          MaxNumberOfMessages: max,
          WaitTimeSeconds: waitSeconds,
          VisibilityTimeout: visibilitySeconds,
          MessageSystemAttributeNames: ["ApproximateReceiveCount"],
        }),
        { abortSignal: signal },
      );
      return (r.Messages ?? []).flatMap((m) =>
        m.MessageId && m.ReceiptHandle
          ? [
              {
                messageId: m.MessageId,
                receiptHandle: m.ReceiptHandle,
                body: m.Body ?? "",
                receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? "1") || 1,
              },
            ]
          : [],
      );
    },
    async delete(ReceiptHandle) {
      await client.send(new DeleteMessageCommand({ QueueUrl, ReceiptHandle }));
    },
    async changeVisibility(ReceiptHandle, VisibilityTimeout) {
      await client.send(new ChangeMessageVisibilityCommand({ QueueUrl, ReceiptHandle, VisibilityTimeout }));
    },
    async attributes() {
      const r = await client.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ["QueueArn", "VisibilityTimeout"] }));
      return r.Attributes ?? {};
    },
    close: () => client.destroy(),
  };
}
