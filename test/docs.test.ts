import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { QUEUE_ACTIONS } from "../coordinator/events/sqs.js";
import { GATEWAY_ACTIONS } from "../coordinator/cloud/aws.js";
import { ELB_ACTIONS } from "../coordinator/elb/elbv2.js";
import { KMS_ACTIONS } from "../coordinator/kms/kms.js";
import { renderSpecReference } from "../scripts/spec-doc.js";
import { parseConfig } from "../coordinator/config.js";
import { existsSync, readdirSync } from "node:fs";
import { COMMANDS } from "../cli/main.js";

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
  it("the coordinator's IAM policy grants the KMS actions it calls, and EC2's use of a key only through EC2", () => {
    const policy = JSON.parse(readFileSync(join(root, "docs", "iam", "coordinator-policy.json"), "utf8")) as {
      Statement: Array<{ Action: string | string[]; Condition?: Record<string, Record<string, string>> }>;
    };
    const kms = policy.Statement.filter((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]).some((a) => a.startsWith("kms:")));
    const direct = kms.filter((s) => !s.Condition).flatMap((s) => s.Action);
    expect([...direct].sort()).toEqual(KMS_ACTIONS.map((a) => `kms:${a}`).sort());
    for (const s of kms.filter((x) => x.Condition)) expect(s.Condition?.StringLike?.["kms:ViaService"]).toBe("ec2.*.amazonaws.com");
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

  it("the README's quick start and Using it sections name only files, subcommands and ids that exist", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const section = (title: string) => {
      const start = readme.indexOf(`## ${title}\n`);
      expect(start, title).toBeGreaterThanOrEqual(0);
      const end = readme.indexOf("\n## ", start + 1);
      return readme.slice(start, end < 0 ? undefined : end);
    };
    const text = section("Quick start") + section("Using it");
    const shell = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split("\n")).map((l) => l.replace(/\s+#.*$/, ""));
    const examples = readdirSync(join(root, "examples"));
    // A bare name given to -f is an example filled by the sed line (`examples/X > X`).
    for (const l of shell) {
      for (const m of l.matchAll(/(?:^|\s)(?:-f|--config|--iam-policy)\s+(\S+)/g)) {
        const file = m[1]!;
        if (file.includes("/")) expect(existsSync(join(root, file)), file).toBe(true);
        else expect(examples, file).toContain(file);
      }
      for (const m of l.matchAll(/\b((?:examples|docs)\/[\w./-]+)/g)) expect(existsSync(join(root, m[1]!)), m[1]).toBe(true);
      const sub = /^npx spotkeep (\S+)/.exec(l)?.[1];
      if (sub)
        expect(
          COMMANDS.map((c) => c.name),
          l,
        ).toContain(sub);
    }
    // Ids are the examples' placeholders (or elided with …), never ids of some other set-up.
    for (const id of text.match(/\b(?:subnet|sg|ami|i|vol|eni)-[0-9a-f]{8,17}\b/g) ?? [])
      expect(
        examples.some((f) => readFileSync(join(root, "examples", f), "utf8").includes(id)),
        id,
      ).toBe(true);
  });
});
