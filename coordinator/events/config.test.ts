import { describe, expect, it } from "vitest";
import { parseConfig } from "../config.js";
import { ValidationError } from "../../shared/errors.js";

const reasons = (input: unknown): string => {
  try {
    parseConfig(input);
  } catch (err) {
    if (err instanceof ValidationError) return err.message;
    throw err;
  }
  return "accepted";
};

describe("config events", () => {
  it("takes an SQS queue URL, with the region defaulting to the coordinator's", () => {
    const c = parseConfig({
      region: "eu-west-1",
      events: { queueUrl: "https://sqs.eu-west-1.amazonaws.com/123456789012/spotkeep-events" },
    });
    expect(c.events).toEqual({
      queueUrl: "https://sqs.eu-west-1.amazonaws.com/123456789012/spotkeep-events",
      pollers: 2,
      visibilityTimeoutSeconds: 30,
    });
    expect(parseConfig({}).events).toBeUndefined();
  });

  it.each([
    [{ queueUrl: "spotkeep-events" }, /events\.queueUrl.*SQS queue URL/],
    [{ queueUrl: "https://sqs.us-east-1.amazonaws.com/123456789012/q", region: "mars" }, /events\.region.*not an AWS region/],
    [{ queueUrl: "https://sqs.us-east-1.amazonaws.com/123456789012/q", pollers: 50 }, /events\.pollers/],
    [{ queueUrl: "https://sqs.us-east-1.amazonaws.com/123456789012/q", visibilityTimeoutSeconds: 1 }, /events\.visibilityTimeoutSeconds/],
    [{ queueUrl: "https://sqs.us-east-1.amazonaws.com/123456789012/q", queue: "x" }, /events.*queue/],
    [{}, /events\.queueUrl/],
  ])("refuses %j naming the field", (events, reason) => {
    expect(reasons({ events })).toMatch(reason);
  });
});
