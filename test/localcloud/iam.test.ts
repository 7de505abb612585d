/**
 * localcloud's IAM enforcement over the wire (the unmodified SDK) and its parts: the policy
 * evaluator, the per-action resource table, the control API routes.
 */
import {
  AttachVolumeCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTIONS } from "../../localcloud/ec2/actions/index.js";
import { AUTHORIZATION, checksFor } from "../../localcloud/ec2/authz.js";
import { conditionHolds, contextOf, evaluate, parsePolicy, PolicyError } from "../../localcloud/iam/policy.js";
import { expectEc2Error, startEnv, type Env } from "./helpers.js";

let env: Env;
const control = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${env.cloud.controlUrl}/${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
};
const decode = async (err: Error) => {
  const encoded = /Encoded authorization failure message: (\S+)/.exec(err.message)?.[1];
  expect(encoded, err.message).toBeTruthy();
  const r = await control("POST", "iam/decode-authorization-message", { encodedMessage: encoded });
  expect(r.status).toBe(200);
  expect(JSON.parse(r.body.decodedMessage)).toEqual(r.body.message);
  return r.body.message;
};
const TAGGED = { Null: { "aws:RequestTag/team": "false" } };

beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  await env?.stop();
});

describe("IAM enforcement on the EC2 endpoint", () => {
  it("is off by default: every request is allowed", async () => {
    expect((await control("GET", "iam/policy")).body).toEqual({ enforced: false, policy: null });
    await env.ec2.send(new DescribeInstancesCommand({}));
  });

  it("a request no Allow statement matches gets 403 UnauthorizedOperation with a decodable message", async () => {
    const r = await control("PUT", "iam/policy", {
      Version: "2012-10-17",
      Statement: [{ Sid: "Read", Effect: "Allow", Action: "ec2:Describe*", Resource: "*" }],
    });
    expect(r).toEqual({ status: 200, body: { enforced: true, statements: ["Read"] } });
    await env.ec2.send(new DescribeVolumesCommand({}));
    const err = await expectEc2Error(
      env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 })),
      "UnauthorizedOperation",
      403,
    );
    expect(err.message).toMatch(/not authorized to perform: ec2:CreateVolume .*because no identity-based policy allows/);
    const m = await decode(err);
    expect(m).toMatchObject({ allowed: false, explicitDeny: false, context: { action: "ec2:CreateVolume" } });
    expect([...env.cloud.world.volumes.values()].filter((v) => v.size === 1)).toEqual([]);
  });

  it("an explicit Deny wins over an Allow, and the message names the statement", async () => {
    await control("PUT", "iam/policy", {
      Version: "2012-10-17",
      Statement: [
        { Sid: "All", Effect: "Allow", Action: "ec2:*", Resource: "*" },
        {
          Sid: "NoUntaggedVolumes",
          Effect: "Deny",
          Action: "ec2:CreateVolume",
          Resource: "arn:aws:ec2:*:*:volume/*",
          Condition: { Null: { "aws:RequestTag/team": "true" } },
        },
      ],
    });
    const err = await expectEc2Error(
      env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 2 })),
      "UnauthorizedOperation",
      403,
    );
    const m = await decode(err);
    expect(m).toMatchObject({
      allowed: false,
      explicitDeny: true,
      matchedStatements: { items: [{ statementId: "NoUntaggedVolumes", effect: "Deny" }] },
      context: { action: "ec2:CreateVolume", resource: "arn:aws:ec2:us-east-1:123456789012:volume/*" },
    });
    const ok = await env.ec2.send(
      new CreateVolumeCommand({
        AvailabilityZone: "us-east-1a",
        Size: 2,
        TagSpecifications: [{ ResourceType: "volume", Tags: [{ Key: "team", Value: "a" }] }],
      }),
    );
    expect(ok.VolumeId).toMatch(/^vol-/);
  });

  it("DryRun answers 412 DryRunOperation only when allowed, 403 when not", async () => {
    await control("PUT", "iam/policy", {
      Statement: [{ Effect: "Allow", Action: ["ec2:CreateVolume", "ec2:CreateTags"], Resource: "*", Condition: TAGGED }],
    });
    const tagged = { ResourceType: "volume" as const, Tags: [{ Key: "team", Value: "a" }] };
    await expectEc2Error(
      env.ec2.send(new CreateVolumeCommand({ DryRun: true, AvailabilityZone: "us-east-1a", Size: 3, TagSpecifications: [tagged] })),
      "DryRunOperation",
      412,
    );
    const err = await expectEc2Error(
      env.ec2.send(new CreateVolumeCommand({ DryRun: true, AvailabilityZone: "us-east-1a", Size: 3 })),
      "UnauthorizedOperation",
      403,
    );
    const m = await decode(err);
    expect(m.failures.items[0]).toMatchObject({
      statementId: "#1",
      failedConditions: [{ operator: "Null", key: "aws:RequestTag/team", requestValues: null }],
    });
    // An action the policy names nowhere is refused before its parameters are even looked at.
    await expectEc2Error(
      env.ec2.send(new TerminateInstancesCommand({ DryRun: true, InstanceIds: ["i-00000000000000000"] })),
      "UnauthorizedOperation",
      403,
    );
  });

  it("tag-on-create needs ec2:CreateTags with ec2:CreateAction; CreateTags on its own does not get it", async () => {
    await control("DELETE", "iam/policy");
    const vol = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 4 }));
    await control("PUT", "iam/policy", {
      Statement: [
        { Sid: "Create", Effect: "Allow", Action: "ec2:CreateVolume", Resource: "*" },
        {
          Sid: "TagOnCreate",
          Effect: "Allow",
          Action: "ec2:CreateTags",
          Resource: "*",
          Condition: { StringEquals: { "ec2:CreateAction": "CreateVolume" } },
        },
      ],
    });
    const tagged = { ResourceType: "volume" as const, Tags: [{ Key: "team", Value: "a" }] };
    await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 4, TagSpecifications: [tagged] }));
    const err = await expectEc2Error(
      env.ec2.send(new CreateTagsCommand({ Resources: [vol.VolumeId!], Tags: [{ Key: "team", Value: "b" }] })),
      "UnauthorizedOperation",
      403,
    );
    expect((await decode(err)).context.resource).toBe(`arn:aws:ec2:us-east-1:123456789012:volume/${vol.VolumeId}`);
    expect(env.cloud.world.volumes.get(vol.VolumeId!)!.tags.size).toBe(0);
    await control("PUT", "iam/policy", { Statement: [{ Sid: "Create", Effect: "Allow", Action: "ec2:CreateVolume", Resource: "*" }] });
    const denied = await expectEc2Error(
      env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 4, TagSpecifications: [tagged] })),
      "UnauthorizedOperation",
      403,
    );
    expect((await decode(denied)).context.action).toBe("ec2:CreateTags");
  });

  it("AttachVolume is authorised on the instance and the volume, each with its own tags", async () => {
    await control("DELETE", "iam/policy");
    const run = await env.ec2.send(
      new RunInstancesCommand({
        ImageId: env.cloud.world.baseImageId,
        MinCount: 1,
        MaxCount: 1,
        TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "team", Value: "a" }] }],
      }),
    );
    const instanceId = run.Instances![0]!.InstanceId!;
    // AttachVolume checks the instance's state before it authorises: wait until it runs (and the volume exists).
    for (let i = 0; i < 250 && env.cloud.world.instances.get(instanceId)?.state !== "running"; i++)
      await new Promise((r) => setTimeout(r, 20));
    const vol = await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: run.Instances![0]!.Placement!.AvailabilityZone!, Size: 5 }));
    for (let i = 0; i < 250 && env.cloud.world.volumes.get(vol.VolumeId!)?.state !== "available"; i++)
      await new Promise((r) => setTimeout(r, 20));
    await control("PUT", "iam/policy", {
      Statement: [
        { Effect: "Allow", Action: "ec2:AttachVolume", Resource: "*", Condition: { StringEquals: { "ec2:ResourceTag/team": "a" } } },
      ],
    });
    const err = await expectEc2Error(
      env.ec2.send(new AttachVolumeCommand({ DryRun: true, InstanceId: instanceId, VolumeId: vol.VolumeId!, Device: "/dev/sdf" })),
      "UnauthorizedOperation",
      403,
    );
    expect((await decode(err)).context.resource).toBe(`arn:aws:ec2:us-east-1:123456789012:volume/${vol.VolumeId}`);
    env.cloud.world.volumes.get(vol.VolumeId!)!.tags.set("team", "a");
    await expectEc2Error(
      env.ec2.send(new AttachVolumeCommand({ DryRun: true, InstanceId: instanceId, VolumeId: vol.VolumeId!, Device: "/dev/sdf" })),
      "DryRunOperation",
      412,
    );
  });
});

describe("the IAM control API", () => {
  it("refuses a bad policy with the reason and keeps the one in force", async () => {
    await control("PUT", "iam/policy", { Statement: [{ Sid: "A", Effect: "Allow", Action: "ec2:*", Resource: "*" }] });
    for (const [bad, why] of [
      [{ Statement: [{ Effect: "Permit", Action: "ec2:*", Resource: "*" }] }, /Effect must be Allow or Deny/],
      [
        { Statement: [{ Effect: "Allow", Action: "ec2:*", Resource: "*", Condition: { StringSortOf: { k: "v" } } }] },
        /unsupported condition operator/,
      ],
      [{ Statement: [{ Effect: "Allow", Action: "ec2:*" }] }, /needs Resource or NotResource/],
      [{ Statement: [{ Effect: "Allow", Principal: "*", Action: "ec2:*", Resource: "*" }] }, /names no principal/],
    ] as const) {
      const r = await control("PUT", "iam/policy", bad);
      expect(r.status).toBe(400);
      expect(r.body.error).toMatch(why);
    }
    expect((await control("GET", "iam/policy")).body.policy.Statement[0].Sid).toBe("A");
    expect((await control("DELETE", "iam/policy")).body).toEqual({ enforced: false });
  });

  it("refuses to decode a message localcloud did not issue", async () => {
    for (const encodedMessage of ["not base64!", "AAAA", ""]) {
      const r = await control("POST", "iam/decode-authorization-message", { encodedMessage });
      expect(r.status).toBe(400);
    }
  });
});

describe("the per-action resource table", () => {
  it("has exactly one row per action localcloud implements", () => {
    expect(Object.keys(AUTHORIZATION).sort()).toEqual(Object.keys(ACTIONS).sort());
  });

  it("RunInstances is authorised on image, snapshot, subnet, security group, ENI, instance, volume, spot request, key pair and role", () => {
    const w = env.cloud.world;
    const subnet = w.defaultSubnet("us-east-1a")!;
    const targets = AUTHORIZATION.RunInstances!(w, {
      ImageId: w.baseImageId,
      MinCount: 1,
      MaxCount: 1,
      SubnetId: subnet.id,
      KeyName: "ops",
      IamInstanceProfile: { Name: "spotkeep-workload-db" },
      InstanceMarketOptions: { MarketType: "spot" },
      TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "a", Value: "1" }] }],
    });
    const types = targets.map((t) => (t.action ?? "") + t.arn.replace(/^arn:aws:(ec2|iam):[^:]*:[^:]*:/, "").split("/")[0]);
    expect(new Set(types)).toEqual(
      new Set([
        "image",
        "snapshot",
        "network-interface",
        "subnet",
        "security-group",
        "instance",
        "volume",
        "spot-instances-request",
        "key-pair",
        "iam:PassRolerole",
      ]),
    );
    const checks = checksFor("RunInstances", targets, "us-east-1");
    const tagOnCreate = checks.filter((c) => c.action === "ec2:CreateTags");
    expect(tagOnCreate.map((c) => c.resource)).toEqual(["arn:aws:ec2:us-east-1:123456789012:instance/*"]);
    expect(tagOnCreate[0]!.context.get("ec2:createaction")).toEqual(["RunInstances"]);
    expect(checks.find((c) => c.action === "iam:PassRole")!.context.get("iam:passedtoservice")).toEqual(["ec2.amazonaws.com"]);
  });

  it("RegisterImage is authorised on the new image and the snapshots it uses", () => {
    const w = env.cloud.world;
    const snap = w.images.get(w.baseImageId)!.blockDeviceMappings[0]!.snapshotId!;
    const arns = AUTHORIZATION.RegisterImage!(w, { BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snap } }] }).map(
      (t) => t.arn,
    );
    expect(arns).toEqual(["arn:aws:ec2:us-east-1::image/*", `arn:aws:ec2:us-east-1::snapshot/${snap}`]);
  });
});

describe("the policy evaluator", () => {
  const ctx = contextOf({ "aws:TagKeys": ["team", "env"], "aws:RequestTag/team": "orders", "ec2:Region": "us-east-1" });
  const holds = (operator: string, key: string, values: string[]) => conditionHolds({ operator, key, values }, ctx);

  it("implements the condition operators least-privilege policies use", () => {
    expect(holds("StringEquals", "aws:RequestTag/team", ["orders"])).toBe(true);
    expect(holds("StringEquals", "aws:requesttag/team", ["Orders"])).toBe(false);
    expect(holds("StringEqualsIgnoreCase", "aws:RequestTag/team", ["Orders"])).toBe(true);
    expect(holds("StringLike", "aws:RequestTag/team", ["ord*"])).toBe(true);
    expect(holds("StringNotEquals", "aws:RequestTag/absent", ["x"])).toBe(true);
    expect(holds("StringEquals", "aws:RequestTag/absent", ["x"])).toBe(false);
    expect(holds("StringEqualsIfExists", "aws:RequestTag/absent", ["x"])).toBe(true);
    expect(holds("Null", "aws:RequestTag/absent", ["true"])).toBe(true);
    expect(holds("Null", "aws:RequestTag/team", ["false"])).toBe(true);
    expect(holds("ForAllValues:StringEquals", "aws:TagKeys", ["team", "env", "owner"])).toBe(true);
    expect(holds("ForAllValues:StringEquals", "aws:TagKeys", ["team"])).toBe(false);
    expect(holds("ForAllValues:StringEquals", "aws:Absent", ["team"])).toBe(true);
    expect(holds("ForAnyValue:StringEquals", "aws:TagKeys", ["env"])).toBe(true);
    expect(holds("ForAnyValue:StringEquals", "aws:TagKeys", ["owner"])).toBe(false);
    expect(holds("StringEquals", "ec2:Region", ["us-east-1"])).toBe(true);
    expect(
      conditionHolds({ operator: "Bool", key: "aws:SecureTransport", values: ["false"] }, contextOf({ "aws:SecureTransport": "false" })),
    ).toBe(true);
    expect(
      conditionHolds(
        { operator: "ArnLike", key: "k", values: ["arn:aws:iam::*:role/spotkeep-*"] },
        contextOf({ k: "arn:aws:iam::1:role/spotkeep-a" }),
      ),
    ).toBe(true);
    expect(conditionHolds({ operator: "NumericLessThanEquals", key: "n", values: ["10"] }, contextOf({ n: "8" }))).toBe(true);
  });

  it("matches Action/NotAction and Resource/NotResource with wildcards; explicit deny wins", () => {
    const p = parsePolicy({
      Version: "2012-10-17",
      Statement: [
        { Sid: "NotTerminate", Effect: "Allow", NotAction: "ec2:Terminate*", Resource: "*" },
        {
          Sid: "OnlyImages",
          Effect: "Deny",
          Action: "ec2:RunInstances",
          NotResource: ["arn:aws:ec2:*::image/ami-1*", "arn:aws:ec2:*:*:instance/*"],
        },
      ],
    });
    const req = (action: string, resource: string) => evaluate(p, { action, resource, context: contextOf({}) });
    expect(req("ec2:terminateinstances", "*").allowed).toBe(false);
    expect(req("ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-123").allowed).toBe(true);
    expect(req("ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-999")).toMatchObject({ allowed: false, explicitDeny: true });
    expect(req("ec2:RunInstances", "arn:aws:ec2:us-east-1:1:instance/*").allowed).toBe(true);
  });

  it("names what is wrong with a bad document", () => {
    expect(() => parsePolicy("{")).toThrow(PolicyError);
    expect(() => parsePolicy({ Statement: [{ Effect: "Allow", Action: "RunInstances", Resource: "*" }] })).toThrow(/not service:Action/);
    expect(() => parsePolicy({ Version: "2020-01-01", Statement: [] })).toThrow(/Version/);
  });
});
