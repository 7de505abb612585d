/**
 * The one bring-up sequence registers every new generation in the spec's target groups, whatever
 * runbook brings it up, on both stores (localcloud process runtime, real agent):
 *  - an import whose spec has `loadBalancers`: generation 1 is registered after `finish` and waited
 *    for until healthy (before, the import's own copy of the sequence never registered it);
 *  - a make-before-break cutover (`attach: secondary`, a recycle): the old generation is
 *    deregistered and drained before the cutover's quiesce, the new one registered after `finish`
 *    and healthy, and the old one is no longer a target (before, the cutover did neither).
 */
import { readFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DescribeTargetHealthCommand, ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Coordinator } from "../../coordinator/service.js";
import { PROFILES } from "../../localcloud/profiles.js";
import { parseSpec } from "../../shared/spec.js";
import { budget, runbookModel, runbookSteps } from "../support/budgets.js";
import { type PostgresServer, postgresUnavailable, startPostgres } from "../support/pg-server.js";
import {
  COORDINATOR_POLICY,
  ensureAgentBundle,
  type Env,
  inProcessCoordinator,
  liveInstances,
  readAcks,
  startEnv,
  until,
} from "./harness.js";

const SCALE = 0.03;
const P = PROFILES.realistic;
/** Health checks every 5 s, healthy after 2: a registered target turns healthy 10 model s after it registered. */
const HEALTH = { intervalSeconds: 5, healthyThreshold: 2 };
/** The old target drains for this long (model s) before it is gone; the spec allows longer. */
const DEREGISTRATION_DELAY_S = 10;

const IMPORT = budget({
  scale: SCALE,
  model: { ...runbookModel("import", { hooksTimeoutSeconds: 30, root: true }), "turn healthy": 10_000 },
  steps: runbookSteps("import"),
  starts: { agent: 1 },
});
const CUTOVER = budget({
  scale: SCALE,
  model: {
    "launch call": P.runInstancesCall,
    "pending → running": P.pendingToRunning,
    boot: P.bootToUserData,
    drain: DEREGISTRATION_DELAY_S * 1000,
    "detach and attach": P.detachVolume + P.attachVolume + P.attachEni,
    "turn healthy": 10_000,
    terminate: P.shuttingDownToTerminated,
  },
  steps: runbookSteps("replace-mbb"),
  starts: { agent: 1, hook: 1, workload: 1 },
});

let dir: string;
let env: Env;
let sdk: EC2Client;
let elb: ElasticLoadBalancingV2Client;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-bringup-"));
  env = await startEnv(dir, SCALE);
  const creds = { endpoint: env.lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "x" } };
  sdk = new EC2Client(creds);
  elb = new ElasticLoadBalancingV2Client({ ...creds, maxAttempts: 1 });
});
afterAll(async () => {
  sdk?.destroy();
  elb?.destroy();
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function targetGroup(name: string) {
  const g = env.lc.elbv2.createTargetGroup({
    name,
    protocol: "HTTP",
    port: 8080,
    vpcId: env.lc.world.defaultVpc().id,
    targetType: "instance",
    healthCheck: HEALTH,
  });
  g.deregistrationDelaySeconds = DEREGISTRATION_DELAY_S;
  return g;
}

async function health(arn: string): Promise<Array<[string | undefined, string | undefined]>> {
  const out = await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn }));
  return (out.TargetHealthDescriptions ?? []).map((d) => [d.Target?.Id, d.TargetHealth?.State]);
}

/** An on-demand instance launched the way a user does, outside spotkeep, with a 2 GiB data volume. */
async function launchByHand(): Promise<string> {
  await env.control("DELETE", "iam/policy");
  try {
    const out = await sdk.send(
      new RunInstancesCommand({
        ImageId: env.lc.world.baseImageId,
        InstanceType: "m5.large",
        MinCount: 1,
        MaxCount: 1,
        SubnetId: env.subnets[0]!.id,
        BlockDeviceMappings: [{ DeviceName: "/dev/sdf", Ebs: { VolumeSize: 2, VolumeType: "gp3", DeleteOnTermination: true } }],
      }),
    );
    const id = out.Instances![0]!.InstanceId!;
    await until(`${id} running`, async () => (await env.ec2.describeInstances([id]))[0]?.state === "running", 60_000);
    return id;
  } finally {
    await env.control("PUT", "iam/policy", JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")));
  }
}

const pgWhy = postgresUnavailable();
const STORES: Array<{ store: "SQLite" | "PostgreSQL"; skip: string | null }> = [
  { store: "SQLite", skip: null },
  { store: "PostgreSQL", skip: pgWhy },
];

for (const { store, skip } of STORES) {
  const tag = store === "SQLite" ? "sq" : "pg";
  describe.skipIf(skip !== null)(`the bring-up joins the target groups, ${store} store${skip ? ` (skipped: ${skip})` : ""}`, () => {
    let coord: Coordinator;
    let pg: PostgresServer | undefined;

    beforeAll(async () => {
      const extra: Record<string, unknown> = { acceptEmptyStore: true };
      if (store === "PostgreSQL") {
        pg = await startPostgres();
        extra.store = { url: pg.createDatabase("coordinator") };
      }
      coord = await inProcessCoordinator(env, join(dir, `coord-${tag}`), SCALE, extra);
    });
    afterAll(async () => {
      await coord?.stop();
      pg?.stop();
    });

    it("an import with loadBalancers registers generation 1 after finish and waits until it is healthy", {
      timeout: IMPORT.ms + 60_000,
    }, async () => {
      const name = `imp-${tag}`;
      const group = targetGroup(`imp-${tag}-web`);
      const original = await launchByHand();
      const res = await fetch(`${coord.url}/api/v1/import`, {
        method: "POST",
        headers: { authorization: `Bearer ${coord.adminToken}`, "content-type": "application/json" },
        body: JSON.stringify({
          instanceId: original,
          name,
          overrides: {
            persistence: { volumes: [{ device: "/dev/sdf", mountPoint: "/data" }] },
            loadBalancers: { targetGroupArns: [group.arn], drainingSeconds: 30 },
          },
        }),
      });
      const body = (await res.json()) as { workflowId?: string };
      expect(res.status, JSON.stringify(body)).toBe(202);
      const wf = await until(
        "the import to end",
        async () => {
          const w = await coord.store.workflows.get(body.workflowId!);
          return w && w.status !== "running" ? w : null;
        },
        IMPORT,
      );
      expect(wf.error).toBeNull();
      const d = (await coord.views.getInstance(name))!;
      expect(d.state).toBe("running");
      // Registered once it served, and healthy before the workflow went on.
      const steps = (await coord.store.steps.list(wf.id)).map((s) => s.name);
      expect(steps.slice(steps.indexOf("finish"))).toEqual([
        "finish",
        "register-targets",
        "wait-targets-healthy",
        "delete-old-root",
        "retention",
      ]);
      expect(await health(group.arn)).toEqual([[d.instanceId, "healthy"]]);
      const kinds = (await coord.views.getEvents(name))!.events.filter((e) => e.workflowId === wf.id).map((e) => e.kind);
      expect(kinds).toContain("targets-registered");
      expect(kinds).not.toContain("targets-unhealthy");
    });

    it("a make-before-break cutover deregisters and drains the old generation before its quiesce, and registers the new one", {
      timeout: CUTOVER.ms * 2 + 60_000,
    }, async () => {
      const name = `mbb-${tag}`;
      const group = targetGroup(`mbb-${tag}-web`);
      const acks = join(dir, `${name}.acks`);
      const base = env.spec(name, { root: false, acks });
      const spec = parseSpec({
        ...base,
        persistence: { ...base.persistence, network: { privateIp: "same-eni", attach: "secondary" } },
        loadBalancers: { targetGroupArns: [group.arn], drainingSeconds: 60 },
      });
      const created = await coord.engine.wait((await coord.views.createInstance(spec)).workflowId);
      expect(created.error).toBeNull();
      const before = (await coord.views.getInstance(name))!;
      expect(await health(group.arn)).toEqual([[before.instanceId, "healthy"]]);
      await until("the workload to acknowledge records", () => readAcks(acks).length > 20, CUTOVER);

      const { workflowId } = await coord.operations.run(name, "recycle");
      const wf = await until(
        "the recycle to end",
        async () => {
          const w = await coord.store.workflows.get(workflowId);
          return w && w.status !== "running" ? w : null;
        },
        CUTOVER,
      );
      expect(wf.error).toBeNull();
      const after = (await coord.views.getInstance(name))!;
      expect(after.generation).toBe(2);
      expect(after.privateIp).toBe(before.privateIp);

      // The cutover, not a fallback: ready first, then out of the group and drained, then quiesced.
      const steps = (await coord.views.getWorkflow(workflowId))!.steps;
      const names = steps.map((s) => s.name);
      const at = (n: string) => steps.find((s) => s.name === n)!;
      expect(names).not.toContain("quiesce");
      expect(names.slice(names.indexOf("mbb-wait-ready"), names.indexOf("mbb-wait-ready") + 4)).toEqual([
        "mbb-wait-ready",
        "deregister-targets",
        "drain-targets",
        "cutover-quiesce",
      ]);
      expect(Date.parse(at("drain-targets").endedAt!)).toBeLessThanOrEqual(Date.parse(at("cutover-quiesce").startedAt!));
      expect(names.slice(names.indexOf("finish"), names.indexOf("finish") + 4)).toEqual([
        "finish",
        "register-targets",
        "wait-targets-healthy",
        "terminate-old",
      ]);
      const kinds = (await coord.views.getEvents(name))!.events.filter((e) => e.workflowId === workflowId).map((e) => e.kind);
      expect(kinds).toContain("make-before-break");
      expect(kinds.indexOf("targets-deregistered")).toBeLessThan(kinds.indexOf("targets-registered"));
      // Drained within its delay, not cut short.
      expect(kinds).not.toContain("drain-cut-short");

      // Only the new generation is a target, and it is healthy; the old one drained out.
      await until("the old target to be gone", async () => (await health(group.arn)).length === 1, CUTOVER);
      expect(await health(group.arn)).toEqual([[after.instanceId, "healthy"]]);
      await until("the old instance to terminate", async () => (await liveInstances(env, name)).length === 1, CUTOVER);
    });
  });
}
