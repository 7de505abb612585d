/**
 * deploy/spotkeep.cfn.yaml, checked by AWS's own offline CloudFormation validator
 * (@aws/cloudformation-validate: every resource against the bundled CloudFormation resource
 * provider schemas, plus its template rules), and proven to carry the shipped IAM policy as it is.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse, type Tags } from "yaml";
import { RegoEngine, SchemaValidator, TemplateFile } from "@aws/cloudformation-validate";

const ROOT = join(import.meta.dirname, "..", "..");
const TEMPLATE = join(ROOT, "deploy", "spotkeep.cfn.yaml");

/** CloudFormation's short-form intrinsics as plain objects ({"Ref": …}, {"Fn::GetAtt": […]}). */
const INTRINSICS: Tags = [
  "Ref",
  "Condition",
  "Base64",
  "GetAtt",
  "Sub",
  "Join",
  "If",
  "Equals",
  "Not",
  "And",
  "Or",
  "Select",
  "GetAZs",
  "FindInMap",
].flatMap((name) => {
  const key = name === "Ref" || name === "Condition" ? name : `Fn::${name}`;
  const resolve = (value: unknown) => ({ [key]: name === "GetAtt" && typeof value === "string" ? value.split(".") : value });
  return (["scalar", "seq", "map"] as const).map((collection) => ({
    tag: `!${name}`,
    collection: collection === "scalar" ? undefined : collection,
    resolve: (v: unknown) => resolve(collection === "scalar" ? v : (v as { toJSON(): unknown }).toJSON()),
  })) as Tags;
});

const template = parse(readFileSync(TEMPLATE, "utf8"), { customTags: INTRINSICS }) as {
  Parameters: Record<string, unknown>;
  Resources: Record<string, { Type: string; Condition?: string; Properties: Record<string, any> }>;
  Outputs: Record<string, unknown>;
};

describe("deploy/spotkeep.cfn.yaml", () => {
  it("passes AWS's CloudFormation schema validation with nothing above INFO", () => {
    const validator = new SchemaValidator();
    try {
      expect(validator.schemaCount()).toBeGreaterThan(1000);
      const findings = validator.validate(new TemplateFile(TEMPLATE), "us-east-1").filter((d) => d.severity !== "INFO");
      expect(findings.map((d) => `${d.ruleId} ${d.entity?.logicalId ?? ""} ${d.message}`)).toEqual([]);
    } finally {
      validator.free();
    }
  });

  it("passes the validator's template rules (references, conditions, best practice) with nothing above INFO", () => {
    const engine = new RegoEngine();
    try {
      const report = engine.validateStandard(new TemplateFile(TEMPLATE));
      expect(report.diagnostics.filter((d) => d.severity !== "INFO").map((d) => `${d.ruleId} ${d.message}`)).toEqual([]);
    } finally {
      engine.free();
    }
  });

  it("the validator does catch a broken template (a misspelt property, a dangling reference)", () => {
    const text = readFileSync(TEMPLATE, "utf8")
      .replace("SqsManagedSseEnabled: true", "SqsManagedSseEnable: true")
      .replace("!GetAtt RebalanceRule.Arn", "!GetAtt RebalanceRul.Arn");
    const dir = mkdtempSync(join(tmpdir(), "spotkeep-cfn-"));
    const file = join(dir, "broken.cfn.yaml");
    writeFileSync(file, text);
    const engine = new RegoEngine();
    try {
      const ids = engine
        .validateStandard(new TemplateFile(file))
        .diagnostics.filter((d) => d.severity === "FATAL" || d.severity === "ERROR");
      expect(ids.map((d) => d.ruleId).sort()).toEqual(["F1020", "F3002"]);
    } finally {
      engine.free();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("gives the coordinator's role exactly docs/iam/coordinator-policy.json", () => {
    const shipped = JSON.parse(readFileSync(join(ROOT, "docs", "iam", "coordinator-policy.json"), "utf8"));
    const role = template.Resources.CoordinatorRole!;
    expect(role.Type).toBe("AWS::IAM::Role");
    expect(role.Properties.Policies).toHaveLength(1);
    expect(role.Properties.Policies[0].PolicyDocument).toEqual(shipped);
    expect(role.Properties.AssumeRolePolicyDocument.Statement).toEqual([
      { Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" },
    ]);
    expect(template.Resources.CoordinatorInstanceProfile!.Properties.Roles).toEqual([{ Ref: "CoordinatorRole" }]);
  });

  it("lets agents reach the coordinator on its port only, from the agents' group", () => {
    const sg = template.Resources.CoordinatorSecurityGroup!.Properties;
    expect(sg.SecurityGroupIngress).toEqual([
      {
        Description: "agents to the coordinator",
        IpProtocol: "tcp",
        FromPort: { Ref: "CoordinatorPort" },
        ToPort: { Ref: "CoordinatorPort" },
        SourceSecurityGroupId: { Ref: "AgentSecurityGroup" },
      },
    ]);
    expect(template.Resources.AgentSecurityGroup!.Properties.SecurityGroupIngress).toBeUndefined();
  });

  it("lets only events.amazonaws.com send to the queue, from its own four rules, each targeting the queue", () => {
    const rules = Object.entries(template.Resources).filter(([, r]) => r.Type === "AWS::Events::Rule");
    expect(rules.map(([id]) => id).sort()).toEqual(["RebalanceRule", "ScheduledChangeRule", "SpotInterruptionRule", "StateChangeRule"]);
    for (const [, r] of rules) expect(r.Properties.Targets).toEqual([{ Id: "spotkeep", Arn: { "Fn::GetAtt": ["EventsQueue", "Arn"] } }]);
    const policy = template.Resources.EventsQueuePolicy!.Properties;
    expect(policy.Queues).toEqual([{ Ref: "EventsQueue" }]);
    expect(policy.PolicyDocument.Statement).toHaveLength(1);
    const [st] = policy.PolicyDocument.Statement;
    expect(st).toMatchObject({ Effect: "Allow", Principal: { Service: "events.amazonaws.com" }, Action: "sqs:SendMessage" });
    expect(st.Condition.ArnEquals["aws:SourceArn"].map((a: { "Fn::GetAtt": string[] }) => a["Fn::GetAtt"][0]).sort()).toEqual(
      rules.map(([id]) => id).sort(),
    );
    // The queue name keeps to the policy's ConsumeInterruptionQueue resource (spotkeep-*).
    expect((template.Parameters.EventsQueueName as { AllowedPattern: string }).AllowedPattern).toBe("^spotkeep-[A-Za-z0-9_-]{1,71}$");
  });

  it("optionally creates the host: the spotkeep user, the shipped unit, the data volume at /var/lib/spotkeep, TLS from a parameter", () => {
    const instance = template.Resources.CoordinatorInstance!;
    expect(instance.Condition).toBe("CreateInstance");
    const userData = instance.Properties.UserData["Fn::Base64"]["Fn::Sub"][0] as string;
    expect(userData).toContain("useradd --system --home-dir /var/lib/spotkeep --shell /sbin/nologin spotkeep");
    expect(userData).toContain("cp /opt/spotkeep/docs/systemd/spotkeep-coordinator.service /etc/systemd/system/");
    expect(userData).toMatch(/UUID=\$UUID \/var\/lib\/spotkeep xfs/);
    expect(userData).toContain("secretsmanager get-secret-value");
    // The unit the host installs runs as that user with that data directory.
    const unit = readFileSync(join(ROOT, "docs", "systemd", "spotkeep-coordinator.service"), "utf8");
    expect(unit).toMatch(/^User=spotkeep$/m);
    expect(unit).toMatch(/^ReadWritePaths=\/var\/lib\/spotkeep$/m);
    expect(template.Resources.DataVolumeAttachment!.Properties).toEqual({
      InstanceId: { Ref: "CoordinatorInstance" },
      VolumeId: { Ref: "DataVolume" },
      Device: "/dev/sdf",
    });
    expect(template.Resources.DataVolume).toMatchObject({ DeletionPolicy: "Snapshot" });
    // Asked for the host without a subnet, CloudFormation refuses the stack naming the parameter.
    expect(
      (template as unknown as { Rules: Record<string, { Assertions: Array<{ AssertDescription: string }> }> }).Rules.HostNeedsASubnet!
        .Assertions[0]!.AssertDescription,
    ).toBe("CoordinatorSubnetId is required when CreateCoordinatorInstance is true");
  });

  it("documents every parameter and output in docs/deploy-aws.md", () => {
    const doc = readFileSync(join(ROOT, "docs", "deploy-aws.md"), "utf8");
    for (const name of [...Object.keys(template.Parameters), ...Object.keys(template.Outputs)]) expect(doc, name).toContain(`\`${name}\``);
  });
});
