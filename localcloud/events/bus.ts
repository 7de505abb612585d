/**
 * An EventBridge-style bus for what EC2 does to instances: rules send matching events, in AWS's
 * JSON shape (`version`, `id`, `detail-type`, `source`, `account`, `time`, `region`, `resources`,
 * `detail`), to an SQS queue of localcloud, as an EventBridge rule with an SQS target does.
 */
import { randomUUID } from "node:crypto";
import { ACCOUNT_ID } from "../world/catalog.js";
import { DETAIL_TYPES, type DetailType, type EventPublisher } from "../world/events.js";
import type { SqsService } from "../sqs/queues.js";

export interface Rule {
  name: string;
  /** The target queue's name. */
  queue: string;
  /** Which detail types the rule matches; every EC2 one when empty. */
  detailTypes: DetailType[];
}

export interface BusEvent {
  version: "0";
  id: string;
  "detail-type": DetailType;
  source: "aws.ec2";
  account: string;
  time: string;
  region: string;
  resources: string[];
  detail: Record<string, string>;
}

const MAX_RULES = 100;

export class EventBus implements EventPublisher {
  readonly rules = new Map<string, Rule>();
  /** How many events were sent to queues, and how many found no queue (the target was deleted). */
  delivered = 0;
  undeliverable = 0;

  constructor(private readonly sqs: SqsService) {}

  /** The region of this bus: its rules send to that region's queues, about that region's instances. */
  get region(): string {
    return this.sqs.region;
  }

  /** Add or replace a rule; its queue must exist. */
  putRule(rule: Rule): Rule {
    this.sqs.byName(rule.queue);
    if (!this.rules.has(rule.name) && this.rules.size >= MAX_RULES) throw new RangeError(`at most ${MAX_RULES} rules`);
    this.rules.set(rule.name, rule);
    return rule;
  }

  deleteRule(name: string): boolean {
    return this.rules.delete(name);
  }

  /** An event about one instance, sent to the queue of every matching rule. */
  publish(detailType: DetailType, instanceId: string, availabilityZone: string, detail: Record<string, string>): BusEvent {
    const event: BusEvent = {
      version: "0",
      id: randomUUID(),
      "detail-type": detailType,
      source: "aws.ec2",
      account: ACCOUNT_ID,
      time: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
      region: this.region,
      // The spot warning's resource ARN names the AZ where EC2's other events name the region and account.
      resources: [
        detailType === DETAIL_TYPES.spotInterruption
          ? `arn:aws:ec2:${availabilityZone}:instance/${instanceId}`
          : `arn:aws:ec2:${this.region}:${ACCOUNT_ID}:instance/${instanceId}`,
      ],
      detail: { "instance-id": instanceId, ...detail },
    };
    const body = JSON.stringify(event);
    for (const rule of this.rules.values()) {
      if (rule.detailTypes.length > 0 && !rule.detailTypes.includes(detailType)) continue;
      const q = this.sqs.queues.get(rule.queue);
      if (!q) {
        this.undeliverable += 1;
        continue;
      }
      this.sqs.send(q, body);
      this.delivered += 1;
    }
    return event;
  }
}
