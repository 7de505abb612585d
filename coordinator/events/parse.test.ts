import { describe, expect, it } from "vitest";
import { MAX_EVENT_BYTES, parseEventMessage } from "./parse.js";

const ec2 = (detailType: string, detail: Record<string, unknown>, over: Record<string, unknown> = {}) =>
  JSON.stringify({
    version: "0",
    id: "7bf73129-1428-4cd3-a780-95db273d1602",
    "detail-type": detailType,
    source: "aws.ec2",
    account: "123456789012",
    time: "2024-01-02T03:04:05Z",
    region: "us-east-1",
    resources: ["arn:aws:ec2:us-east-1a:instance/i-1234567890abcdef0"],
    detail,
    ...over,
  });

describe("parseEventMessage", () => {
  it("reads EC2's spot interruption warning, rebalance recommendation and state change", () => {
    expect(
      parseEventMessage(ec2("EC2 Spot Instance Interruption Warning", { "instance-id": "i-1234567890abcdef0", "instance-action": "stop" })),
    ).toEqual({
      ok: true,
      events: [
        {
          id: "7bf73129-1428-4cd3-a780-95db273d1602",
          kind: "spot-interruption",
          detailType: "EC2 Spot Instance Interruption Warning",
          instanceId: "i-1234567890abcdef0",
          time: Date.parse("2024-01-02T03:04:05Z"),
          action: "stop",
          // Carried for the intake's origin check.
          account: "123456789012",
          region: "us-east-1",
          resources: ["arn:aws:ec2:us-east-1a:instance/i-1234567890abcdef0"],
        },
      ],
    });
    const r = parseEventMessage(ec2("EC2 Instance Rebalance Recommendation", { "instance-id": "i-1234567890abcdef0" }));
    expect(r.ok && r.events[0]!.kind).toBe("rebalance");
    const s = parseEventMessage(
      ec2("EC2 Instance State-change Notification", { "instance-id": "i-1234567890abcdef0", state: "shutting-down" }),
    );
    expect(s.ok && s.events[0]).toMatchObject({ kind: "state-change", state: "shutting-down" });
  });

  it("reads an AWS Health scheduled change, one event per EC2 instance it names", () => {
    const body = JSON.stringify({
      version: "0",
      id: "h-1",
      "detail-type": "AWS Health Event",
      source: "aws.health",
      account: "123456789012",
      time: "2024-01-02T03:04:05Z",
      region: "us-east-1",
      resources: ["i-1234567890abcdef0", "i-0fedcba0987654321"],
      detail: {
        eventArn: "arn:aws:health:us-east-1::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/x",
        service: "EC2",
        eventTypeCode: "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
        eventTypeCategory: "scheduledChange",
        affectedEntities: [{ entityValue: "i-1234567890abcdef0" }, { entityValue: "i-0fedcba0987654321" }],
      },
    });
    const r = parseEventMessage(body);
    expect(r.ok && r.events.map((e) => [e.id, e.kind, e.instanceId, e.eventTypeCode])).toEqual([
      ["h-1/i-1234567890abcdef0", "scheduled-change", "i-1234567890abcdef0", "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"],
      ["h-1/i-0fedcba0987654321", "scheduled-change", "i-0fedcba0987654321", "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED"],
    ]);
  });

  it.each([
    ["not JSON", "{", /not JSON/],
    ["too large", "x".repeat(MAX_EVENT_BYTES + 1), /larger than/],
    ["not an event", JSON.stringify({ hello: 1 }), /not an EventBridge event/],
    ["a bad instance id", ec2("EC2 Instance Rebalance Recommendation", { "instance-id": "i-nope" }), /not an EC2 instance id/],
    [
      "an unknown action",
      ec2("EC2 Spot Instance Interruption Warning", { "instance-id": "i-1234567890abcdef0", "instance-action": "x" }),
      /instance-action/,
    ],
    [
      "a bad time",
      ec2("EC2 Instance Rebalance Recommendation", { "instance-id": "i-1234567890abcdef0" }, { time: "yesterday" }),
      /not a timestamp/,
    ],
    ["another event", ec2("EC2 AMI State Change", { "instance-id": "i-1234567890abcdef0" }), /not an event spotkeep handles/],
    ["another source", ec2("EC2 Spot Instance Interruption Warning", {}, { source: "custom.app" }), /not an event spotkeep handles/],
  ])("refuses %s with a specific reason", (_what, body, reason) => {
    const r = parseEventMessage(body);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.reason).toMatch(reason);
  });
});
