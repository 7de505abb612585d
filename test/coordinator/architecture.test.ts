/**
 * The spec's instance types against the image's architecture, in process (test/support/in-process.ts:
 * localcloud without a runtime, the coordinator in this process, fake agents): a create, an update and
 * a group create whose types cannot boot the image are refused naming the field and change nothing;
 * an arm64 instance (arm64 image, Graviton types) is created and runs; an import checks the types
 * against the imported instance's own architecture.
 */
import { readFileSync } from "node:fs";
import { EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseGroupSpec } from "../../shared/group-spec.js";
import { parseSpec } from "../../shared/spec.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { COORDINATOR_POLICY, until } from "./harness.js";

let h: InProcess;
beforeAll(async () => {
  h = await startInProcess({ prefix: "spotkeep-inproc-arch-" });
});
afterAll(async () => {
  await h?.stop();
});

/** DescribeInstances' count of instances EC2 holds (any state): nothing launched means it does not move. */
const ec2Instances = () => h.env.lc.world.instances.size;

describe("instance types against the image's architecture", () => {
  it("refuses a create with an arm64 type and an x86_64 image, naming the field; nothing is recorded or launched", async () => {
    const before = await h.coord.store.counts();
    const launched = ec2Instances();
    const spec = h.spec("arch-mix", { instanceTypes: ["m6i.large", "m7g.large"] });
    const r = await h.api("POST", "instances", spec);
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error.message).toBe(`launch.instanceTypes[1]: m7g.large is arm64 but image ${h.env.lc.world.baseImageId} is x86_64`);
    expect(await h.coord.store.counts()).toEqual(before);
    expect((await h.api("GET", "instances/arch-mix")).status).toBe(404);
    expect(ec2Instances()).toBe(launched);
  });

  it("creates an arm64 instance from the arm64 image, then refuses an update to x86_64 types against its root", async () => {
    const spec = { ...h.spec("graviton", { instanceTypes: ["t4g.small", "m7g.large"] }) };
    spec.launch = { ...spec.launch, imageId: h.env.lc.world.baseImageIds.arm64 };
    const { workflowId } = await h.coord.views.createInstance(parseSpec(spec));
    const wf = await h.coord.engine.wait(workflowId);
    expect(wf.error).toBeNull();
    const d = (await h.api("GET", "instances/graviton")).body;
    const inst = h.env.lc.world.instances.get(d.instanceId);
    expect({ state: inst?.state, architecture: inst?.architecture }).toEqual({ state: "running", architecture: "arm64" });

    const before = await h.coord.store.counts();
    const changed = { ...spec, launch: { ...spec.launch, instanceTypes: ["t4g.small", "m6i.large"] } };
    const r = await h.api("PUT", "instances/graviton", changed);
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error.message).toMatch(
      /^launch\.instanceTypes\[1\]: m6i\.large is x86_64 but the root of graviton \(ami-[0-9a-f]+\) is arm64$/,
    );
    expect(await h.coord.store.counts()).toEqual(before);
    expect((await h.coord.store.instances.get("graviton"))!.spec.launch.instanceTypes).toEqual(["t4g.small", "m7g.large"]);
  });

  it("refuses a group whose template types cannot boot its image, naming the template field", async () => {
    const before = await h.coord.store.counts();
    const { name: _n, ...template } = h.spec("x", { volumes: 1, root: false, instanceTypes: ["c7g.large"] });
    const group = parseGroupSpec({ kind: "group", name: "mixed", size: 1, ipPool: ["172.31.0.210"], template });
    const r = await h.api("POST", "groups", group);
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error.message).toBe(
      `template.launch.instanceTypes[0]: c7g.large is arm64 but image ${h.env.lc.world.baseImageId} is x86_64`,
    );
    expect(await h.coord.store.counts()).toEqual(before);
  });

  it("refuses an import whose instance types cannot boot the imported instance's own (arm64) root, dry run or not", async () => {
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
          ImageId: h.env.lc.world.baseImageIds.arm64,
          InstanceType: "t4g.small",
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
      const r = await h.api("POST", "import", {
        instanceId: id,
        name: "imported-arm",
        dryRun,
        overrides: { launch: { instanceTypes: ["t4g.small", "m6i.large"] } },
      });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.error.message).toBe(`launch.instanceTypes[1]: m6i.large is x86_64 but the root of ${id} is arm64`);
    }
    expect(await h.coord.store.counts()).toEqual(before);
    expect((await h.api("POST", "import", { instanceId: id, name: "imported-arm", dryRun: true })).status).toBe(200);
  });
});
