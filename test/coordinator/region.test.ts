/**
 * A spec's `region` against the coordinator's own, in process (test/support/in-process.ts:
 * localcloud without a runtime, the coordinator in this process for us-east-1 alone, fake agents):
 * a coordinator manages only the regions of its config, so create (and `create --dry-run`), update, import and group
 * create/update refuse a spec naming another region, with the field named, and change nothing; a
 * dry run of a spec the coordinator accepts prints it and records nothing.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSpec } from "../../shared/spec.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { COORDINATOR_POLICY, until } from "./harness.js";

let h: InProcess;
beforeAll(async () => {
  h = await startInProcess({ prefix: "spotkeep-inproc-region-" });
});
afterAll(async () => {
  await h?.stop();
});

const REFUSED =
  "region: eu-west-1 is not a region this coordinator manages (us-east-1); add it to the coordinator's config regions to launch there";
/** EC2 instances localcloud holds (any state): nothing launched means it does not move. */
const ec2Instances = () => h.env.lc.world.instances.size;

describe("a spec's region", () => {
  it("create refuses another region naming the field, recording and launching nothing; so does create --dry-run", async () => {
    const before = await h.coord.store.counts();
    const launched = ec2Instances();
    const spec = { ...h.spec("elsewhere"), region: "eu-west-1" };
    const r = await h.api("POST", "instances", spec);
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error.message).toBe(REFUSED);

    const file = join(h.dir, "elsewhere.json");
    writeFileSync(file, JSON.stringify(spec));
    const dry = await h.cli("create", "-f", file, "--dry-run");
    expect(dry.code).toBe(1);
    expect(dry.stderr).toContain(REFUSED);
    expect(dry.stdout).toBe("");

    expect(await h.coord.store.counts()).toEqual(before);
    expect((await h.api("GET", "instances/elsewhere")).status).toBe(404);
    expect(ec2Instances()).toBe(launched);
  });

  it("create --dry-run of a spec the coordinator accepts prints it with its defaults and creates nothing", async () => {
    const before = await h.coord.store.counts();
    const file = join(h.dir, "here.json");
    writeFileSync(file, JSON.stringify(h.spec("here")));
    const dry = await h.cli("create", "-f", file, "--dry-run");
    expect(dry.stderr).toBe("");
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^# spec for here, checked by the coordinator; nothing was created\n/);
    expect(dry.stdout).toContain("region: us-east-1\n");
    const json = await h.cli("create", "-f", file, "--dry-run", "--json");
    expect(JSON.parse(json.stdout)).toMatchObject({ name: "here", dryRun: true, spec: { name: "here", region: "us-east-1" } });
    expect((await h.cli("create", "-f", file, "--dry-run", "--wait")).code).toBe(2);
    expect(await h.coord.store.counts()).toEqual(before);
    expect((await h.api("GET", "instances/here")).status).toBe(404);
    const bad = await h.api("POST", "instances?dryRun=yes", h.spec("here"));
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toBe('dryRun: must be true or false, got "yes"');
  });

  it("update refuses a change to another region naming the field; the stored spec stays", async () => {
    const { workflowId } = await h.coord.views.createInstance(parseSpec(h.spec("homebody")));
    expect((await h.coord.engine.wait(workflowId)).error).toBeNull();
    const before = await h.coord.store.counts();
    const r = await h.api("PUT", "instances/homebody", { ...h.spec("homebody"), region: "eu-west-1" });
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error.message).toBe(REFUSED);
    expect(await h.coord.store.counts()).toEqual(before);
    expect((await h.coord.store.instances.get("homebody"))!.spec.region).toBe("us-east-1");
  });

  it("group create and group update refuse a template in another region, naming the template field", async () => {
    const { name: _n, ...template } = h.spec("x", { volumes: 1, root: false });
    const group = (region?: string) => ({
      kind: "group",
      name: "regional",
      size: 0,
      ipPool: ["172.31.0.220"],
      template: region ? { ...template, region } : template,
    });
    const before = await h.coord.store.counts();
    const r = await h.api("POST", "groups", group("eu-west-1"));
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error.message).toBe(`template.${REFUSED}`);
    expect(await h.coord.store.counts()).toEqual(before);

    const created = await h.api("POST", "groups", group());
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect((await h.coord.engine.wait(created.body.workflowId)).error).toBeNull();
    const stored = await h.coord.store.counts();
    const u = await h.api("PUT", "groups/regional", group("eu-west-1"));
    expect(u.status, JSON.stringify(u.body)).toBe(400);
    expect(u.body.error.message).toBe(`template.${REFUSED}`);
    expect(await h.coord.store.counts()).toEqual(stored);
  });

  it("import takes the coordinator's region and refuses an override naming another, dry run or not", async () => {
    // Launched by hand, as an operator's instance is: untagged, so without the coordinator's IAM policy.
    await h.env.control("DELETE", "iam/policy");
    let id: string;
    try {
      const sdk = new EC2Client({
        endpoint: h.env.lc.endpoint,
        region: "us-east-1",
        credentials: { accessKeyId: "x", secretAccessKey: "x" },
      });
      const out = await sdk.send(
        new RunInstancesCommand({
          ImageId: h.env.lc.world.baseImageId,
          InstanceType: "m5.large",
          MinCount: 1,
          MaxCount: 1,
          SubnetId: h.env.subnets[0]!.id,
        }),
      );
      sdk.destroy();
      id = out.Instances![0]!.InstanceId!;
    } finally {
      await h.env.control("PUT", "iam/policy", JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")));
    }
    await until(`${id} running`, async () => (await h.env.ec2.describeInstances([id]))[0]?.state === "running", 60_000);
    const before = await h.coord.store.counts();
    for (const dryRun of [true, false]) {
      const r = await h.api("POST", "import", { instanceId: id, name: "moved", dryRun, overrides: { region: "eu-west-1" } });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.error.message).toContain("overrides.region: comes from the instance being imported and cannot be overridden");
    }
    // An import names the region its instance is in; one this coordinator does not manage is refused.
    const away = await h.api("POST", "import", { instanceId: id, name: "moved", dryRun: true, region: "eu-west-1" });
    expect(away.status, JSON.stringify(away.body)).toBe(400);
    expect(away.body.error.message).toBe("region: eu-west-1 is not a region this coordinator manages (us-east-1)");
    expect(await h.coord.store.counts()).toEqual(before);
    const plan = await h.api("POST", "import", { instanceId: id, name: "moved", dryRun: true });
    expect(plan.status, JSON.stringify(plan.body)).toBe(200);
    expect(plan.body.spec.region).toBe("us-east-1");
  });
});
