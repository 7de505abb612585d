import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { QUEUE_ACTIONS } from "../coordinator/events/sqs.js";
import { GATEWAY_ACTIONS } from "../coordinator/cloud/aws.js";
import { ELB_ACTIONS } from "../coordinator/elb/elbv2.js";
import { renderSpecReference } from "../scripts/spec-doc.js";
import { parseConfig } from "../coordinator/config.js";

const root = join(import.meta.dirname, "..");

describe("docs stay true to the code", () => {
  it("the coordinator's IAM policy lists exactly the EC2 actions the gateway calls", () => {
    const policy = JSON.parse(readFileSync(join(root, "docs", "iam", "coordinator-policy.json"), "utf8")) as {
      Statement: Array<{ Action: string | string[] }>;
    };
    const ec2 = new Set(
      policy.Statement.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]))
        .filter((a) => a.startsWith("ec2:"))
        .map((a) => a.slice(4)),
    );
    const missing = GATEWAY_ACTIONS.filter((a) => !ec2.has(a));
    const extra = [...ec2].filter((a) => !GATEWAY_ACTIONS.includes(a));
    expect({ missing, extra }).toEqual({ missing: [], extra: [] });
  });
  it("the coordinator's IAM policy lists exactly the SQS actions the interruption-queue consumer calls", () => {
    const policy = JSON.parse(readFileSync(join(root, "docs", "iam", "coordinator-policy.json"), "utf8")) as {
      Statement: Array<{ Action: string | string[] }>;
    };
    const sqs = policy.Statement.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]))
      .filter((a) => a.startsWith("sqs:"))
      .map((a) => a.slice(4))
      .sort();
    expect(sqs).toEqual([...QUEUE_ACTIONS].sort());
  });
  it("the coordinator's IAM policy lists exactly the ELBv2 actions the load-balancer gateway calls", () => {
    const policy = JSON.parse(readFileSync(join(root, "docs", "iam", "coordinator-policy.json"), "utf8")) as {
      Statement: Array<{ Action: string | string[] }>;
    };
    const elb = policy.Statement.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]))
      .filter((a) => a.startsWith("elasticloadbalancing:"))
      .map((a) => a.slice("elasticloadbalancing:".length))
      .sort();
    expect(elb).toEqual([...ELB_ACTIONS].sort());
  });
  it("the example coordinator config is valid and shows the defaults it claims", () => {
    const example = readFileSync(join(root, "docs", "coordinator.example.yaml"), "utf8");
    const config = parseConfig(example, "docs/coordinator.example.yaml");
    const defaults = parseConfig({});
    for (const key of ["maxConcurrentWorkflows", "lostCheckIntervalMs", "apiHeadroom", "quiesceMarginSeconds"] as const)
      expect(config[key]).toBe(defaults[key]);
  });
  it("docs/spec-reference.md is what scripts/spec-doc.ts generates from the schema", () => {
    expect(readFileSync(join(root, "docs", "spec-reference.md"), "utf8")).toBe(renderSpecReference());
  });
});
