/**
 * localcloud's ELBv2 endpoint through the unmodified `@aws-sdk/client-elastic-load-balancing-v2`:
 * target groups, registering and deregistering instance targets, target health (initial → healthy,
 * draining, unused), ELBv2's error codes, strict parameters, and IAM authorisation (AccessDenied).
 */
import {
  CreateTargetGroupCommand,
  DeregisterTargetsCommand,
  DescribeTargetGroupsCommand,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
  RegisterTargetsCommand,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { RunInstancesCommand, TerminateInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ELB_AUTHORIZATION } from "../../localcloud/elbv2/authz.js";
import { ELBV2_ACTIONS } from "../../localcloud/elbv2/query.js";
import { type Env, startEnv } from "./helpers.js";

// 1 model second = 1 real ms: the 10 s of health checks and the 300 s deregistration delay pass quickly.
const SCALE = 0.001;
let env: Env;
let elb: ElasticLoadBalancingV2Client;
let vpcId: string;

async function failure(p: Promise<unknown>): Promise<{ name: string; code: string; status: number | undefined; message: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as { name: string; Code?: string; message: string; $metadata?: { httpStatusCode?: number } };
    return { name: err.name, code: err.Code ?? err.name, status: err.$metadata?.httpStatusCode, message: err.message };
  }
  throw new Error("expected the call to fail");
}

async function runInstance(): Promise<string> {
  const r = await env.ec2.send(
    new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, InstanceType: "m5.large", MinCount: 1, MaxCount: 1 }),
  );
  const id = r.Instances![0]!.InstanceId!;
  for (let i = 0; i < 200 && env.cloud.world.instances.get(id)?.state !== "running"; i++) await new Promise((res) => setTimeout(res, 5));
  return id;
}

async function group(name: string): Promise<string> {
  const out = await elb.send(
    new CreateTargetGroupCommand({
      Name: name,
      Protocol: "HTTP",
      Port: 8080,
      VpcId: vpcId,
      // initial lasts interval × threshold = 600 model s (0.6 s here): long enough to be seen on a loaded machine.
      HealthCheckIntervalSeconds: 60,
      HealthyThresholdCount: 10,
    }),
  );
  return out.TargetGroups![0]!.TargetGroupArn!;
}

const health = async (arn: string, id?: string) =>
  (
    await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn, ...(id ? { Targets: [{ Id: id }] } : {}) }))
  ).TargetHealthDescriptions!.map((d) => ({
    id: d.Target?.Id,
    port: d.Target?.Port,
    state: d.TargetHealth?.State,
    reason: d.TargetHealth?.Reason,
  }));

async function until<T>(what: string, f: () => Promise<T | null | undefined | false>): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = await f();
    if (v) return v;
    await new Promise((res) => setTimeout(res, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

beforeAll(async () => {
  env = await startEnv({ timeScale: SCALE });
  elb = new ElasticLoadBalancingV2Client({
    endpoint: env.cloud.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "x", secretAccessKey: "x" },
    maxAttempts: 1,
  });
  vpcId = env.cloud.world.defaultVpc().id;
});
afterAll(async () => {
  elb?.destroy();
  await env?.stop();
});

describe("localcloud ELBv2 (unmodified SDK)", () => {
  it("registers an instance target: initial, then healthy; deregistered it drains, then is gone", async () => {
    const arn = await group("web");
    expect(arn).toMatch(/^arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup\/web\/[0-9a-f]{16}$/);
    const id = await runInstance();
    await elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: id }] }));
    // Registering again changes nothing.
    await elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: id }] }));
    expect(await health(arn)).toEqual([{ id, port: 8080, state: "initial", reason: "Elb.RegistrationInProgress" }]);
    await until("healthy", async () => (await health(arn, id))[0]?.state === "healthy");
    await elb.send(new DeregisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: id }] }));
    expect(await health(arn, id)).toEqual([{ id, port: 8080, state: "draining", reason: "Target.DeregistrationInProgress" }]);
    await until("drained", async () => (await health(arn)).length === 0);
    expect(await health(arn, id)).toEqual([{ id, port: 8080, state: "unused", reason: "Target.NotRegistered" }]);
  });

  it("a registered instance that stops running is unused; one that does not run cannot be registered", async () => {
    const arn = await group("stops");
    const id = await runInstance();
    await elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: id, Port: 9000 }] }));
    await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    await until("unused", async () => (await health(arn))[0]?.state === "unused");
    expect((await health(arn))[0]).toMatchObject({ port: 9000, reason: "Target.InvalidState" });
    const f = await failure(elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: id }] })));
    expect(f).toMatchObject({ name: "InvalidTargetException", code: "InvalidTarget", status: 400 });
    expect(f.message).toContain(`not in a running state and cannot be registered: '${id}'`);
  });

  it("answers with ELBv2's error codes and changes nothing on a bad request", async () => {
    const arn = await group("errors");
    const id = await runInstance();
    const unknownArn = arn.replace("/errors/", "/nope/");
    expect(await failure(elb.send(new RegisterTargetsCommand({ TargetGroupArn: unknownArn, Targets: [{ Id: id }] })))).toMatchObject({
      name: "TargetGroupNotFoundException",
      code: "TargetGroupNotFound",
      status: 400,
    });
    expect(await failure(elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: unknownArn })))).toMatchObject({
      code: "TargetGroupNotFound",
    });
    expect(await failure(elb.send(new DescribeTargetGroupsCommand({ Names: ["missing"] })))).toMatchObject({ code: "TargetGroupNotFound" });
    // One unknown instance among good ones: none is registered.
    const bad = await failure(
      elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: id }, { Id: "i-0123456789abcdef0" }] })),
    );
    expect(bad).toMatchObject({ name: "InvalidTargetException", code: "InvalidTarget" });
    expect(bad.message).toContain("'i-0123456789abcdef0'");
    expect(await health(arn)).toEqual([]);
    expect(await failure(elb.send(new DeregisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: id }] })))).toMatchObject({
      code: "InvalidTarget",
    });
    expect(await failure(elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [] })))).toMatchObject({
      code: "ValidationError",
      status: 400,
    });
    expect(await failure(elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: id, Port: 70000 }] })))).toMatchObject({
      code: "ValidationError",
    });
    expect(
      await failure(elb.send(new CreateTargetGroupCommand({ Name: "-bad-", Protocol: "HTTP", Port: 80, VpcId: vpcId }))),
    ).toMatchObject({ code: "ValidationError" });
    expect(
      await failure(elb.send(new CreateTargetGroupCommand({ Name: "errors", Protocol: "TCP", Port: 80, VpcId: vpcId }))),
    ).toMatchObject({ name: "DuplicateTargetGroupNameException", code: "DuplicateTargetGroupName" });
    expect(await health(arn)).toEqual([]);
  });

  it("describes target groups by ARN, by name and page by page", async () => {
    const a = await group("page-a");
    const byArn = await elb.send(new DescribeTargetGroupsCommand({ TargetGroupArns: [a] }));
    expect(byArn.TargetGroups?.[0]).toMatchObject({
      TargetGroupArn: a,
      TargetGroupName: "page-a",
      TargetType: "instance",
      Port: 8080,
      VpcId: vpcId,
      HealthCheckIntervalSeconds: 60,
      HealthyThresholdCount: 10,
    });
    const names: string[] = [];
    let marker: string | undefined;
    do {
      const page = await elb.send(new DescribeTargetGroupsCommand({ PageSize: 2, Marker: marker }));
      expect(page.TargetGroups!.length).toBeLessThanOrEqual(2);
      names.push(...page.TargetGroups!.map((g) => g.TargetGroupName!));
      marker = page.NextMarker;
    } while (marker);
    expect(names).toEqual([...env.cloud.elbv2.groups.values()].map((g) => g.name).sort());
  });

  it("refuses unknown parameters and a wrong version; EC2 requests on the same port are unaffected", async () => {
    const post = (body: string) =>
      fetch(env.cloud.endpoint, {
        method: "POST",
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          authorization:
            "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/elasticloadbalancing/aws4_request, SignedHeaders=host, Signature=00",
        },
        body,
      });
    const unknown = await post("Action=DescribeTargetGroups&Version=2015-12-01&Bogus=1");
    expect(unknown.status).toBe(400);
    expect(await unknown.text()).toMatch(/<Code>ValidationError<\/Code><Message>Unknown or unsupported parameter: Bogus<\/Message>/);
    const version = await post("Action=DescribeTargetGroups&Version=2016-11-15");
    expect(await version.text()).toContain("<Code>ValidationError</Code>");
    const action = await post("Action=CreateLoadBalancer&Version=2015-12-01");
    expect(await action.text()).toContain("<Code>InvalidAction</Code>");
    expect(await runInstance()).toMatch(/^i-/);
  });

  it("authorises every action against the IAM policy: AccessDenied names the action and the target group", async () => {
    const arn = await group("iam");
    const id = await runInstance();
    const policy = {
      Version: "2012-10-17",
      Statement: [
        { Sid: "Read", Effect: "Allow", Action: ["elasticloadbalancing:Describe*"], Resource: "*" },
        { Sid: "OnlyOther", Effect: "Allow", Action: ["elasticloadbalancing:RegisterTargets"], Resource: arn.replace("/iam/", "/other/") },
      ],
    };
    const { enforcerFor } = await import("../../localcloud/iam/enforcer.js");
    enforcerFor(env.cloud.world).set(policy);
    try {
      const denied = await failure(elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: [{ Id: id }] })));
      expect(denied).toMatchObject({ code: "AccessDenied", status: 403 });
      expect(denied.message).toContain(`elasticloadbalancing:RegisterTargets on resource: ${arn}`);
      expect(await health(arn)).toEqual([]);
      expect(await failure(elb.send(new CreateTargetGroupCommand({ Name: "x", Protocol: "HTTP", Port: 80, VpcId: vpcId })))).toMatchObject({
        code: "AccessDenied",
      });
    } finally {
      enforcerFor(env.cloud.world).clear();
    }
    expect(Object.keys(ELB_AUTHORIZATION).sort()).toEqual(ELBV2_ACTIONS);
  });
});
