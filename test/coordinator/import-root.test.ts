/**
 * What an import carries on the instance itself, on localcloud (process runtime, real agent, the
 * shipped IAM policy): an on-demand instance launched by hand with its own user-data and a data
 * volume with known content is imported; generation 1 has the content, boots from an image of the
 * original's root (its boot records are there) and its own user-data ran again after spotkeep's
 * bootstrap; after an interruption generation 2 still has the content. A one-time spot instance,
 * captured after its termination, carries its root the same way. The import's decisions (plan,
 * refusals, rollback, steps, resources) are test/coordinator/import.test.ts's, in process.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import type { Coordinator } from "../../coordinator/service.js";
import { COORDINATOR_POLICY, ensureAgentBundle, inProcessCoordinator, startEnv, until, type Env } from "./harness.js";

const SCALE = 0.03;
const NAME = "adopted";
let dir: string;
let env: Env;
let coord: Coordinator;
let sdk: EC2Client;

/** Runs on every boot of the original and of every generation (after the agent restored storage). */
const USER_DATA = `R="\${SPOTKEEP_ROOT_DIR:-}"
mkdir -p "$R/etc"
echo "$SPOTKEEP_INSTANCE_ID" >> "$R/etc/user-data-runs"
`;

const overrides = {
  persistence: { volumes: [{ device: "/dev/sdf", mountPoint: "/data" }] },
  launch: { instanceTypes: ["m5.large", "m6i.large"] },
};

async function importAndWait(instanceId: string, name: string, withOverrides: boolean) {
  const res = await fetch(`${coord.url}/api/v1/import`, {
    method: "POST",
    headers: { authorization: `Bearer ${coord.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ instanceId, name, ...(withOverrides ? { overrides } : {}) }),
  });
  const body = (await res.json()) as { workflowId: string };
  expect(res.status, JSON.stringify(body)).toBe(202);
  const wf = await coord.engine.wait(body.workflowId);
  expect(wf.error).toBeNull();
  return (await coord.views.getInstance(name))!;
}

/** Launch the way a user does, outside spotkeep: no spotkeep tags, nothing of spotkeep's policy in the way. */
async function launchByHand(o: { spot?: boolean }): Promise<string> {
  await env.control("DELETE", "iam/policy");
  try {
    const out = await sdk.send(
      new RunInstancesCommand({
        ImageId: env.lc.world.baseImageId,
        InstanceType: "m5.large",
        MinCount: 1,
        MaxCount: 1,
        SubnetId: env.subnets[0]!.id,
        UserData: Buffer.from(USER_DATA).toString("base64"),
        BlockDeviceMappings: [{ DeviceName: "/dev/sdf", Ebs: { VolumeSize: 2, VolumeType: "gp3", DeleteOnTermination: true } }],
        InstanceMarketOptions: o.spot ? { MarketType: "spot" } : undefined,
      }),
    );
    const id = out.Instances![0]!.InstanceId!;
    await until(`${id} running`, async () => (await env.ec2.describeInstances([id]))[0]?.state === "running", 60_000);
    return id;
  } finally {
    await env.control("PUT", "iam/policy", JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")));
  }
}

const runs = (instanceId: string) =>
  readFileSync(join(env.rootDir(instanceId), "etc", "user-data-runs"), "utf8")
    .split("\n")
    .filter(Boolean);
const known = (instanceId: string) => readFileSync(join(env.rootDir(instanceId), "data", "known.txt"), "utf8");

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-import-root-"));
  env = await startEnv(dir, SCALE);
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE);
  sdk = new EC2Client({ endpoint: env.lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "x" } });
}, 120_000);

afterAll(async () => {
  sdk?.destroy();
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("what an import carries on the instance", () => {
  it("generation 1 has the volume's content and the original's root, and its own user-data ran; generation 2 keeps the content", async () => {
    const original = await launchByHand({});
    // The data volume's known content, written through the instance's device link (no agent runs on it yet).
    const dev = join(env.rootDir(original), "..", "dev", "sdf");
    await until("the data volume visible on the instance (after boot)", () => existsSync(dev), 30_000);
    writeFileSync(join(dev, "known.txt"), "rows that must survive\n");
    await until("the original's user-data", () => existsSync(join(env.rootDir(original), "etc", "user-data-runs")), 30_000);

    const d = await importAndWait(original, NAME, true);
    expect(known(d.instanceId!)).toBe("rows that must survive\n");
    // The root came over as an image: the original's boot record is there, then generation 1's: its
    // own user-data ran after spotkeep's bootstrap.
    const r = runs(d.instanceId!);
    expect(r[0]).toBe(original);
    expect(r.at(-1)).toBe(d.instanceId);
    expect(new Set(r)).toEqual(new Set([original, d.instanceId]));

    await env.control("POST", `instances/${d.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await until(
      "the replacement",
      async () => (await coord.store.workflows.listFor(NAME)).find((w) => w.kind === "replace"),
      60_000,
    );
    expect((await coord.engine.wait(wf.id)).error).toBeNull();
    const g2 = (await coord.views.getInstance(NAME))!;
    expect(g2.generation).toBe(2);
    expect(known(g2.instanceId!)).toBe("rows that must survive\n");
  });

  it("a one-time spot instance, captured after its termination, carries its root: its user-data records, then generation 1's", async () => {
    const id = await launchByHand({ spot: true });
    // Its user-data ran (running comes before the boot finishes).
    await until("the original's user-data", () => existsSync(join(env.rootDir(id), "etc", "user-data-runs")), 30_000);
    const d = await importAndWait(id, "spotty", false);
    expect(runs(d.instanceId!)).toEqual([id, d.instanceId]);
  });
});
