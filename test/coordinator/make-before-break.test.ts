/**
 * Make-before-break end to end on localcloud (process runtime, realistic profile, time-scaled) with
 * the real agent bundle: an `attach: secondary` instance keeps its stable IP on the same ENI (device
 * index 1, configured by the agent), the same data volume and every acknowledged record across a
 * spot interruption; the replacement is launched before the old instance is quiesced. When the
 * replacement does not come up, the run falls back to break-before-make with nothing lost.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashSessionSecret } from "../../coordinator/agents/session-secret.js";
import type { Coordinator } from "../../coordinator/service.js";
import type { ProcessRuntime } from "../../localcloud/runtime/process.js";
import { EventsResponse } from "../../shared/api.js";
import { parseSpec } from "../../shared/spec.js";
import { ensureAgentBundle, inProcessCoordinator, liveInstances, readAcks, readRecords, startEnv, until, type Env } from "./harness.js";

const SCALE = 0.1;
let dir: string;
let env: Env;
let coord: Coordinator;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-mbb-"));
  env = await startEnv(dir, SCALE);
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE);
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function secondarySpec(name: string) {
  const spec = env.spec(name, { root: false, acks: join(dir, `${name}.acks`) });
  return parseSpec({ ...spec, persistence: { ...spec.persistence, network: { privateIp: "same-eni", attach: "secondary" } } });
}

/** The stable ENI as the instance sees it (process runtime): its link folder, configured by the agent. */
function link(instanceId: string) {
  const d = join((env.lc.runtime as ProcessRuntime).netDir(instanceId), "eth1");
  const read = (f: string) => (existsSync(join(d, f)) ? readFileSync(join(d, f), "utf8").trim() : null);
  return { address: read("address"), operstate: read("operstate"), configured: read("configured") };
}

async function createAndServe(name: string) {
  const { workflowId } = await coord.views.createInstance(secondarySpec(name));
  const created = await coord.engine.wait(workflowId);
  expect(created.error).toBeNull();
  const before = (await coord.views.getInstance(name))!;
  expect(before.state).toBe("running");
  const eni = before.resources.network.eniId!;
  const [inst] = await env.ec2.describeInstances([before.instanceId!]);
  // Generation 1: its own primary ENI at 0, the stable ENI at 1 carrying the stable IP.
  expect(inst!.enis.find((e) => e.deviceIndex === 1)?.eniId).toBe(eni);
  expect(inst!.enis.find((e) => e.deviceIndex === 0)?.eniId).not.toBe(eni);
  expect(inst!.privateIp).not.toBe(before.privateIp);
  const stable = (await env.ec2.describeNetworkInterface(eni))!;
  expect(stable.privateIp).toBe(before.privateIp);
  expect(link(before.instanceId!)).toMatchObject({ operstate: "up" });
  expect(JSON.parse(link(before.instanceId!).configured!)).toMatchObject({ address: `${before.privateIp}/20` });
  await until("the workload to acknowledge records", () => readAcks(join(dir, `${name}.acks`)).length > 20);
  return before;
}

async function checkAfter(name: string, before: Awaited<ReturnType<typeof createAndServe>>, wfId: string) {
  const after = (await coord.views.getInstance(name))!;
  expect(after.state).toBe("running");
  expect(after.generation).toBe(2);
  expect(after.instanceId).not.toBe(before.instanceId);
  expect(after.privateIp).toBe(before.privateIp);
  const eni = before.resources.network.eniId!;
  expect(after.resources.network.eniId).toBe(eni);
  // The stable ENI is attached to exactly one instance, the new one, at device index 1, and configured there.
  const stable = (await env.ec2.describeNetworkInterface(eni))!;
  expect(stable.attachment).toMatchObject({ instanceId: after.instanceId, deviceIndex: 1, status: "attached" });
  expect(stable.privateIp).toBe(before.privateIp);
  expect(link(after.instanceId!).operstate).toBe("up");
  // The same data volume, attached only to the new instance.
  const volumeId = before.resources.volumes[0]!.volumeId!;
  expect(after.resources.volumes[0]!.volumeId).toBe(volumeId);
  const vol = (await env.ec2.describeVolume(volumeId))!;
  expect(vol.attachments.map((a) => a.instanceId)).toEqual([after.instanceId]);
  // Every acknowledged record survived; the workload writes again on the new generation.
  const root = env.rootDir(after.instanceId!);
  const acked = readAcks(join(dir, `${name}.acks`));
  const records = readRecords(join(root, "data", "records.log"));
  expect(acked.filter((n) => !records.has(n))).toEqual([]);
  await until("the workload to write on the new generation", () =>
    readFileSync(join(root, "data", "records.log"), "utf8").includes(after.instanceId!),
  );
  // One generation serves; the old instance is gone.
  await until("the old instance to terminate", async () => (await liveInstances(env, name)).length === 1);
  expect((await liveInstances(env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
  expect(after.generations.filter((g) => g.endedAt === null).map((g) => g.generation)).toEqual([2]);
  const res = await fetch(`${coord.url}/api/v1/instances/${name}/events`, { headers: { authorization: `Bearer ${coord.adminToken}` } });
  const body = EventsResponse.parse(await res.json());
  const timeline = body.timelines.find((t) => t.workflowId === wfId)!;
  return { after, timeline, events: body.events, acked: acked.length };
}

describe("make-before-break (attach: secondary) end to end", () => {
  it("a spot interruption: the replacement boots while the old instance serves, then ENI and volume move; same IP, nothing lost", async () => {
    const name = "mbb-spot";
    const before = await createAndServe(name);
    await env.control("POST", `instances/${before.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await until("a replace workflow", async () => (await coord.store.workflows.listFor(name)).find((w) => w.kind === "replace"));
    const done = await coord.engine.wait(wf.id);
    expect(done.error).toBeNull();
    expect(done.status).toBe("succeeded");
    const { timeline, events, acked } = await checkAfter(name, before, wf.id);

    // The timeline: launched (and ready) before the old instance was quiesced; no break-before-make steps.
    const steps = timeline.steps.map((s) => s.name);
    const at = (n: string) => steps.indexOf(n);
    expect(at("mbb-launch")).toBeGreaterThanOrEqual(0);
    expect(at("mbb-launch")).toBeLessThan(at("mbb-wait-ready"));
    expect(at("mbb-wait-ready")).toBeLessThan(at("cutover-quiesce"));
    expect(at("cutover-quiesce")).toBeLessThan(at("restore"));
    expect(at("restore")).toBeLessThan(at("terminate-old"));
    expect(steps).not.toContain("quiesce");
    expect(steps).not.toContain("wait-old-terminated");
    expect(events.filter((e) => e.workflowId === wf.id).map((e) => e.kind)).toContain("make-before-break");
    expect(timeline.downtimeSeconds).toBeGreaterThan(0);
    console.log(
      `make-before-break: ${acked} acked records, downtime ${timeline.downtimeSeconds} s, recovery ${timeline.recoverySeconds} s (model)`,
    );
  });

  it("recycle: make-before-break too (the replacement is ready before the old instance is quiesced)", async () => {
    const name = "mbb-recycle";
    const before = await createAndServe(name);
    const { workflowId } = await coord.operations.run(name, "recycle", "test");
    const done = await coord.engine.wait(workflowId);
    expect(done.error).toBeNull();
    const { timeline } = await checkAfter(name, before, workflowId);
    const steps = timeline.steps.map((s) => s.name);
    expect(steps.indexOf("mbb-wait-ready")).toBeLessThan(steps.indexOf("cutover-quiesce"));
    expect(steps).not.toContain("quiesce");
  });

  it("a lost instance (no notice): break-before-make with an own primary ENI, then the stable ENI moves; nothing lost", async () => {
    const name = "mbb-lost";
    const before = await createAndServe(name);
    await env.control("POST", `instances/${before.instanceId}/lose`, {});
    const wf = await until(
      "a replace workflow",
      async () => (await coord.store.workflows.listFor(name)).find((w) => w.kind === "replace"),
      60_000,
    );
    const done = await coord.engine.wait(wf.id);
    expect(done.error).toBeNull();
    const { timeline } = await checkAfter(name, before, wf.id);
    const steps = timeline.steps.map((s) => s.name);
    expect(steps).toEqual(expect.arrayContaining(["wait-old-terminated", "attach-eni", "restore"]));
    expect(steps).not.toContain("mbb-launch");
  });

  it("pause keeps the stable ENI; resume puts it back at device index 1 with the same IP", async () => {
    const name = "mbb-pause";
    const before = await createAndServe(name);
    const eni = before.resources.network.eniId!;
    const paused = await coord.engine.wait((await coord.operations.run(name, "pause")).workflowId);
    expect(paused.error).toBeNull();
    expect((await env.ec2.describeNetworkInterface(eni))?.status).toBe("available");
    const resumed = await coord.engine.wait((await coord.operations.run(name, "resume")).workflowId);
    expect(resumed.error).toBeNull();
    await checkAfter(name, before, resumed.id);
  });

  it("a replacement that does not come up: falls back to break-before-make, same IP and volume, nothing lost", async () => {
    const name = "mbb-fallback";
    const before = await createAndServe(name);
    await env.control("POST", `instances/${before.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    // The first replacement is lost to a host failure as soon as it exists.
    const first = await until(
      "the make-before-break replacement",
      async () => (await liveInstances(env, name)).find((i) => i.instanceId !== before.instanceId),
      60_000,
      5,
    );
    // Its agent got as far as a first hello (its session secret registered for generation 2) before
    // the host failed. Regression: the fallback launches generation 2 again on another EC2 instance,
    // whose agent was then refused for not presenting the unready replacement's secret.
    await until("the replacement recorded as generation 2", async () =>
      (await coord.store.generations.get(name, 2))?.ec2InstanceId === first.instanceId ? true : null,
    );
    await coord.store.generations.registerSessionSecret(first.instanceId, hashSessionSecret("the-unready-replacement's-agent-secret-0123"));
    await env.control("POST", `instances/${first.instanceId}/lose`, {});
    const wf = await until("a replace workflow", async () => (await coord.store.workflows.listFor(name)).find((w) => w.kind === "replace"));
    const done = await coord.engine.wait(wf.id);
    expect(done.error).toBeNull();
    expect(done.status).toBe("succeeded");
    const { after, timeline, events } = await checkAfter(name, before, wf.id);
    expect(after.instanceId).not.toBe(first.instanceId);
    const steps = timeline.steps.map((s) => s.name);
    expect(steps).toEqual(
      expect.arrayContaining(["mbb-launch", "mbb-wait-ready", "mbb-terminate-unready", "quiesce", "terminate-old", "attach-eni"]),
    );
    expect(steps).not.toContain("cutover-quiesce");
    const fallback = events.filter((e) => e.kind === "make-before-break").map((e) => e.message);
    expect(fallback.some((m) => /falling back to break-before-make/.test(m))).toBe(true);
    // The unready replacement left nothing behind: no volume of it stays.
    await until("the unready replacement's root volume to go", async () => {
      const [gone] = await env.ec2.describeInstances([first.instanceId]);
      const root = gone?.volumes[0]?.volumeId;
      return !root || !(await env.ec2.describeVolume(root)) || (await env.ec2.describeVolume(root))!.state === "deleting";
    });
  });
});
