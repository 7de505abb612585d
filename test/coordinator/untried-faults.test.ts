/**
 * localcloud answering 5xx and throttling while runbooks move resources: group scale and update,
 * import, and the make-before-break cutover. Two kinds of injected failure: "before" (the call
 * fails and changes nothing: RequestLimitExceeded, InternalError, Unavailable) and "after" (the
 * call takes effect and still answers 500, as AWS sometimes does: a retry must not act twice).
 * Each runbook must finish, and every resource EC2 holds for the stateful instance must be one the
 * store knows (nothing orphaned). In process: localcloud with no runtime and in-process agents.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import type { Coordinator } from "../../coordinator/service.js";
import type { WorkflowRecord } from "../../coordinator/db/store.js";
import { parseGroupSpec } from "../../shared/group-spec.js";
import { parseSpec } from "../../shared/spec.js";
import { watchAgents } from "./fake-agent.js";
import { COORDINATOR_POLICY, type Env, ensureAgentBundle, inProcessCoordinator, startEnv, until } from "./harness.js";

let dir: string;
let env: Env;
let coord: Coordinator;
let agents: ReturnType<typeof watchAgents> | undefined;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-faults-untried-"));
  env = await startEnv(dir, 1, { runtime: "none", profile: "instant" });
  coord = await inProcessCoordinator(env, join(dir, "coord"), 1, { lostCheckIntervalMs: 2000 });
  agents = watchAgents(env, coord);
});

afterAll(async () => {
  await agents?.stop();
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

type Fault = { action: string; code: string; count?: number; when?: "before" | "after" };
const inject = (failNext: Fault[]) => env.control("PUT", "faults", { failNext });
const clearFaults = () => env.control("PUT", "faults", { clear: true });
/** What is still waiting to fire (a fault left over means the runbook never made that call). */
const pendingFaults = async () => ((await env.control("PUT", "faults", {})) as { faults: Fault[] }).faults;

async function finished(id: string): Promise<WorkflowRecord> {
  const wf = await coord.engine.wait(id);
  if (wf.status !== "succeeded") throw new Error(`${wf.kind} ${wf.id} ${wf.status}: ${wf.error}`);
  return wf;
}

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${coord.url}/api/v1/${path}`, {
    method,
    headers: { authorization: `Bearer ${coord.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

/**
 * Every live resource EC2 holds tagged for `name` that the store does not know: instances other
 * than the current generation, volumes other than its data volumes and kept roots in flight, ENIs
 * other than its stable ENI, snapshots and images that are not recorded artifacts.
 */
async function orphans(name: string): Promise<string[]> {
  const w = env.lc.world;
  const d = (await coord.views.getInstance(name))!;
  const volumes = new Set((await coord.store.volumes.list(name)).map((v) => v.volumeId));
  const eni = (await coord.store.network.get(name))?.eniId ?? null;
  const artifacts = new Set(
    (await Promise.all((["data-snapshot", "root-snapshot", "image"] as const).map((k) => coord.store.artifacts.list(name, k)))).flatMap(
      (l) => l.map((a) => a.id),
    ),
  );
  const root = (await coord.store.root.get(name)) ?? null;
  const mine = (t: Map<string, string>) => t.get("spotkeep:instance") === name;
  const out: string[] = [];
  for (const i of w.instances.values())
    if (mine(i.tags) && i.state !== "terminated" && i.state !== "shutting-down" && i.id !== d.instanceId)
      out.push(`instance ${i.id} (${i.state})`);
  for (const v of w.volumes.values()) {
    if (!mine(v.tags) || volumes.has(v.id)) continue;
    // A generation's root volume: attached to the current instance, or DeleteOnTermination false and kept for a snapshot.
    if (v.attachment?.instanceId === d.instanceId) continue;
    out.push(`volume ${v.id} (${v.state}, step ${v.tags.get("spotkeep:step") ?? "?"})`);
  }
  for (const e of w.enis.values()) {
    if (!mine(e.tags) || e.id === eni) continue;
    if (e.attachment?.instanceId === d.instanceId && e.attachment.deviceIndex === 0) continue;
    out.push(`eni ${e.id} (${e.status}, step ${e.tags.get("spotkeep:step") ?? "?"})`);
  }
  for (const s of w.snapshots.values())
    if (mine(s.tags) && !artifacts.has(s.id) && s.id !== root?.snapshotId)
      out.push(`snapshot ${s.id} (step ${s.tags.get("spotkeep:step") ?? "?"})`);
  for (const im of w.images.values())
    if (mine(im.tags) && im.state !== "failed" && !artifacts.has(im.id) && im.id !== root?.imageId) out.push(`image ${im.id}`);
  return out;
}

const SERVER_ERRORS = ["InternalError", "Unavailable", "ServiceUnavailable"] as const;

describe("5xx and throttling during group scale and update", () => {
  const pool = ["172.31.0.210", "172.31.0.211", "172.31.16.210", "172.31.16.211"];
  function groupSpec(size: number, tags: Record<string, string> = {}) {
    const { name: _n, ...template } = env.spec("x", { volumes: 1, root: false, workload: false });
    template.launch.subnetIds = env.subnets.slice(0, 2).map((s) => s.id);
    template.launch.tags = tags;
    return parseGroupSpec({ kind: "group", name: "flaky", size, ipPool: pool, template });
  }
  const members = (n: number) => Array.from({ length: n }, (_, i) => `flaky-${i}`);

  it("scales 1 → 3 while creates answer 500 after acting and throttle: one volume, one ENI, one instance per member", async () => {
    const r = await api("POST", "groups", groupSpec(1));
    expect(r.status).toBe(201);
    await finished(r.body.workflowId);
    await inject([
      { action: "CreateVolume", code: "InternalError", count: 2, when: "after" },
      { action: "CreateNetworkInterface", code: "InternalError", count: 2, when: "after" },
      { action: "RunInstances", code: "InternalError", count: 2, when: "after" },
      { action: "AttachVolume", code: "RequestLimitExceeded", count: 3 },
      { action: "CreateTags", code: "Unavailable", count: 2 },
      { action: "DescribeInstances", code: "RequestLimitExceeded", count: 3 },
    ]);
    try {
      const up = await api("POST", "groups/flaky/scale", { size: 3 });
      expect({ status: up.status, error: up.body.error?.message }).toEqual({ status: 202, error: undefined });
      await finished(up.body.workflowId);
      expect(await pendingFaults()).toEqual([]);
    } finally {
      await clearFaults();
    }
    for (const m of members(3)) {
      expect((await coord.views.getInstance(m))?.state).toBe("running");
      expect(await orphans(m)).toEqual([]);
    }
  }, 120_000);

  it("rolls a new template through 5xx and throttled terminate, detach, attach and launch: every member recycled, nothing orphaned", async () => {
    const faults: Fault[] = [
      { action: "TerminateInstances", code: "InternalError", count: 2, when: "after" },
      { action: "DetachVolume", code: "InternalError", count: 2, when: "after" },
      { action: "AttachVolume", code: "ServiceUnavailable", count: 2 },
      { action: "RunInstances", code: "RequestLimitExceeded", count: 3 },
      { action: "RunInstances", code: "InternalError", count: 1, when: "after" },
      { action: "AttachNetworkInterface", code: "Unavailable", count: 1 },
      { action: "DetachNetworkInterface", code: "InternalError", count: 1 },
    ];
    await inject(faults);
    try {
      const r = await api("PUT", "groups/flaky", groupSpec(3, { rev: "2" }));
      expect({ status: r.status, error: r.body.error?.message }).toEqual({ status: 200, error: undefined });
      await finished(r.body.workflowId);
    } finally {
      await clearFaults();
    }
    for (const m of members(3)) {
      const d = (await coord.views.getInstance(m))!;
      expect(d.state).toBe("running");
      expect(d.generation).toBeGreaterThanOrEqual(2);
      const [inst] = await env.ec2.describeInstances([d.instanceId!]);
      expect(inst!.tags.rev).toBe("2");
      expect(await orphans(m)).toEqual([]);
    }
  }, 180_000);
});

describe("5xx and throttling during import", () => {
  it("imports through 500s after acting (stop, snapshot, image, terminate, launch) and throttling: one generation, nothing orphaned", async () => {
    const sdk = new EC2Client({ endpoint: env.lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "x" } });
    let original: string;
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
      original = out.Instances![0]!.InstanceId!;
    } finally {
      await env.control("PUT", "iam/policy", JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")));
      sdk.destroy();
    }
    await until("the original running", async () => (await env.ec2.describeInstances([original]))[0]?.state === "running");
    await inject([
      { action: "StopInstances", code: "InternalError", count: 1, when: "after" },
      { action: "ModifyInstanceAttribute", code: "Unavailable", count: 2 },
      { action: "CreateSnapshot", code: "InternalError", count: 1, when: "after" },
      { action: "RegisterImage", code: "InternalError", count: 1, when: "after" },
      { action: "TerminateInstances", code: "InternalError", count: 1, when: "after" },
      { action: "RunInstances", code: "InternalError", count: 1, when: "after" },
      { action: "RunInstances", code: "RequestLimitExceeded", count: 2 },
      { action: "CreateTags", code: "RequestLimitExceeded", count: 3 },
    ]);
    try {
      const started = await api("POST", "import", {
        instanceId: original,
        name: "imported",
        overrides: { persistence: { volumes: [{ device: "/dev/sdf", mountPoint: "/data" }] }, launch: { instanceTypes: ["m5.large"] } },
      });
      expect(started.status).toBe(202);
      await finished(started.body.workflowId);
    } finally {
      await clearFaults();
    }
    const d = (await coord.views.getInstance("imported"))!;
    expect(d).toMatchObject({ state: "running", generation: 1 });
    expect((await env.ec2.describeInstances([original]))[0]?.state).toBe("terminated");
    expect(await orphans("imported")).toEqual([]);
  }, 120_000);
});

describe("5xx and throttling during the make-before-break cutover", () => {
  it("recycles an attach: secondary instance through 500s after acting on launch, ENI and volume moves: same ENI and IP, nothing orphaned", async () => {
    const spec = env.spec("mbb-flaky", { root: false, workload: false });
    spec.persistence!.network = { privateIp: "same-eni", attach: "secondary" };
    const { workflowId } = await coord.views.createInstance(parseSpec(spec));
    await finished(workflowId);
    const before = (await coord.views.getInstance("mbb-flaky"))!;
    await inject([
      { action: "RunInstances", code: "InternalError", count: 1, when: "after" },
      { action: "DetachNetworkInterface", code: "InternalError", count: 1, when: "after" },
      { action: "AttachNetworkInterface", code: "InternalError", count: 1, when: "after" },
      { action: "DetachVolume", code: "Unavailable", count: 1, when: "after" },
      { action: "AttachVolume", code: "InternalError", count: 1, when: "after" },
      { action: "TerminateInstances", code: "RequestLimitExceeded", count: 2 },
      ...SERVER_ERRORS.map((code) => ({ action: "DescribeNetworkInterfaces", code, count: 1 })),
    ]);
    try {
      const { workflowId: recycle } = await coord.operations.run("mbb-flaky", "recycle");
      const wf = await finished(recycle);
      const steps = (await coord.store.steps.list(wf.id)).map((s) => s.name);
      expect(steps).toContain("mbb-launch");
    } finally {
      await clearFaults();
    }
    const d = (await coord.views.getInstance("mbb-flaky"))!;
    expect(d).toMatchObject({ state: "running", generation: 2, privateIp: before.privateIp });
    expect(d.resources.network.eniId).toBe(before.resources.network.eniId);
    expect(d.resources.volumes[0]!.volumeId).toBe(before.resources.volumes[0]!.volumeId);
    const [inst] = await env.ec2.describeInstances([d.instanceId!]);
    expect(inst!.enis.find((e) => e.deviceIndex === 1)?.eniId).toBe(before.resources.network.eniId);
    expect((await env.ec2.describeInstances([before.instanceId!]))[0]?.state).toBe("terminated");
    expect(await orphans("mbb-flaky")).toEqual([]);
  }, 120_000);
});
