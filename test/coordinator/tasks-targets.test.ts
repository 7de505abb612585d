/**
 * Scheduled tasks and load-balancer targets end to end on localcloud (process runtime, realistic
 * profile, time-scaled) with the real agent:
 *  - a `pause` at 20:00 and a `resume` at 07:00 (UTC) run on time under a moved calendar clock, each
 *    due time once across a coordinator restart in between; the instance comes back with the same
 *    IP, ENI, volume and every acknowledged record;
 *  - an instance in an ELBv2 target group (instance targets) is deregistered and drained before its
 *    quiesce at a spot interruption, and its replacement is healthy in the group afterwards
 *    (DescribeTargetHealth through the unmodified SDK).
 */
import { DescribeTargetHealthCommand, ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Coordinator, startCoordinator } from "../../coordinator/service.js";
import { parseSpec } from "../../shared/spec.js";
import { coordinatorConfig, ensureAgentBundle, type Env, liveInstances, readAcks, readRecords, startEnv, until } from "./harness.js";

const SCALE = 0.03;
let dir: string;
let env: Env;
let coord: Coordinator;
/** The calendar the coordinator reads cron expressions on: the real clock moved by `offset`. */
let offset = 0;
const calendar = () => Date.now() + offset;
const setCalendar = (at: number) => {
  offset = at - Date.now();
};
// Thursday 2026-12-03: paused at 20:00, resumed at 07:00 on Friday.
const DAY = Date.UTC(2026, 11, 3);
const H = 3_600_000;

const start = () =>
  startCoordinator({
    config: coordinatorConfig(env, join(dir, "coord"), SCALE),
    calendar,
    log: process.env.SPOTKEEP_TEST_LOG ? (l) => console.log(l) : undefined,
  });

async function succeeded(workflowId: string) {
  const wf = await coord.engine.wait(workflowId);
  expect(wf.error).toBeNull();
  expect(wf.status).toBe("succeeded");
  return wf;
}

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-tasks-"));
  env = await startEnv(dir, SCALE);
  setCalendar(DAY + 12 * H);
  coord = await start();
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("scheduled tasks (localcloud process runtime, real agent)", () => {
  it("pauses at 20:00 and resumes at 07:00, each once, across a coordinator restart; same IP and data", async () => {
    const name = "sched";
    const acks = join(dir, `${name}.acks`);
    const spec = parseSpec({
      ...env.spec(name, { acks }),
      schedule: [
        { action: "pause", cron: "0 20 * * 1-5" },
        { action: "resume", cron: "0 7 * * 1-5" },
      ],
    });
    await succeeded((await coord.views.createInstance(spec)).workflowId);
    const first = (await coord.views.getInstance(name))!;
    await until("the workload to acknowledge records", () => readAcks(acks).length > 20);
    expect(first.schedule.map((t) => [t.action, t.nextRunAt])).toEqual([
      ["pause", "2026-12-03T20:00:00.000Z"],
      ["resume", "2026-12-04T07:00:00.000Z"],
    ]);
    // Nothing is due before 20:00.
    await new Promise((r) => setTimeout(r, 500));
    expect((await coord.store.workflows.listFor(name)).map((w) => w.kind)).toEqual(["create"]);

    setCalendar(DAY + 20 * H + 1000);
    const pause = await until("the scheduled pause", async () =>
      (await coord.store.workflows.listFor(name)).find((w) => w.kind === "pause"),
    );
    expect(pause.trigger).toBe("scheduled pause (0 20 * * 1-5) due at 2026-12-03T20:00:00.000Z");
    await succeeded(pause.id);
    expect((await coord.views.getInstance(name))!.state).toBe("paused");
    expect((await liveInstances(env, name)).length).toBe(0);

    // A restart while the pause's due time is still the latest: it is not run again.
    await coord.stop();
    setCalendar(DAY + 20 * H + 10 * 60_000);
    coord = await start();
    await new Promise((r) => setTimeout(r, 1000)); // several schedule passes (every 150 ms real)
    await coord.runScheduledTasks();
    expect((await coord.store.workflows.listFor(name)).map((w) => w.kind)).toEqual(["create", "pause"]);
    const described = (await coord.views.getInstance(name))!;
    expect(described.schedule[0]).toMatchObject({
      action: "pause",
      nextRunAt: "2026-12-04T20:00:00.000Z",
      lastDueAt: "2026-12-03T20:00:00.000Z",
      lastOutcome: "started",
      lastWorkflowId: pause.id,
    });
    expect(described.schedule[1]).toMatchObject({ action: "resume", nextRunAt: "2026-12-04T07:00:00.000Z", lastDueAt: null });

    setCalendar(DAY + 31 * H + 1000);
    const resume = await until("the scheduled resume", async () =>
      (await coord.store.workflows.listFor(name)).find((w) => w.kind === "resume"),
    );
    await succeeded(resume.id);
    const back = (await coord.views.getInstance(name))!;
    expect(back.state).toBe("running");
    expect(back.generation).toBe(2);
    expect(back.privateIp).toBe(first.privateIp);
    expect(back.resources.network.eniId).toBe(first.resources.network.eniId);
    expect(back.resources.volumes[0]?.volumeId).toBe(first.resources.volumes[0]?.volumeId);
    const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
    const records = readRecords(join(env.rootDir(back.instanceId!), "data", "records.log"));
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
    expect((await liveInstances(env, name)).map((i) => i.instanceId)).toEqual([back.instanceId]);
    const events = (await coord.views.getEvents(name))!.events.map((e) => e.kind);
    expect(events.filter((k) => k === "pause-started")).toHaveLength(1);
    expect(events.filter((k) => k === "resume-started")).toHaveLength(1);
    expect(events.filter((k) => k.startsWith("schedule-"))).toEqual([]);
  });
});

describe("load-balancer targets follow the instance", () => {
  it("deregisters and drains the old instance before its quiesce; the replacement is healthy in the target group", async () => {
    const name = "lb";
    const acks = join(dir, `${name}.acks`);
    const group = env.lc.elbv2.createTargetGroup({
      name: "lb-web",
      protocol: "HTTP",
      port: 8080,
      vpcId: env.lc.world.defaultVpc().id,
      targetType: "instance",
      healthCheck: { intervalSeconds: 5, healthyThreshold: 2 },
    });
    const ipGroup = env.lc.elbv2.createTargetGroup({
      name: "lb-ip",
      protocol: "TCP",
      port: 5432,
      vpcId: env.lc.world.defaultVpc().id,
      targetType: "ip",
      healthCheck: {},
    });
    const spec = parseSpec({
      ...env.spec(name, { acks, root: false }),
      loadBalancers: { targetGroupArns: [group.arn, ipGroup.arn], drainingSeconds: 20 },
    });
    await succeeded((await coord.views.createInstance(spec)).workflowId);
    const before = (await coord.views.getInstance(name))!;
    const oldId = before.instanceId!;
    const elb = new ElasticLoadBalancingV2Client({
      endpoint: env.lc.endpoint,
      region: "us-east-1",
      credentials: { accessKeyId: "x", secretAccessKey: "x" },
      maxAttempts: 1,
    });
    const health = async () =>
      (await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: group.arn }))).TargetHealthDescriptions!.map((d) => [
        d.Target?.Id,
        d.TargetHealth?.State,
      ]);
    try {
      expect(await health()).toEqual([[oldId, "healthy"]]);
      await until("the workload to acknowledge records", () => readAcks(acks).length > 20);

      await env.control("POST", `instances/${oldId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
      const wf = await until("a replace workflow", async () =>
        (await coord.store.workflows.listFor(name)).find((w) => w.kind === "replace"),
      );
      await succeeded(wf.id);
      const after = (await coord.views.getInstance(name))!;
      expect(after.instanceId).not.toBe(oldId);
      expect(after.privateIp).toBe(before.privateIp);

      // The replacement is healthy in the group; the old instance drains (the group's delay is 300 s) or is gone.
      const now = await health();
      expect(now).toContainEqual([after.instanceId, "healthy"]);
      expect(now.filter(([id]) => id === oldId).map(([, s]) => s)).not.toContain("healthy");

      // The timeline: out of the group and drained before the quiesce began.
      const steps = (await coord.views.getWorkflow(wf.id))!.steps;
      const at = (n: string) => steps.find((s) => s.name === n)!;
      expect(steps.map((s) => s.name).slice(0, 4)).toEqual(["begin", "deregister-targets", "drain-targets", "quiesce"]);
      expect(Date.parse(at("drain-targets").endedAt!)).toBeLessThanOrEqual(Date.parse(at("quiesce").startedAt!));
      const names = steps.map((s) => s.name);
      expect(names.indexOf("register-targets")).toBe(names.indexOf("finish") + 1);
      expect(names).toContain("wait-targets-healthy");
      const events = (await coord.views.getEvents(name))!.events;
      const kinds = events.filter((e) => e.workflowId === wf.id).map((e) => e.kind);
      expect(kinds.indexOf("targets-deregistered")).toBeGreaterThanOrEqual(0);
      expect(kinds.indexOf("targets-deregistered")).toBeLessThan(kinds.indexOf("targets-registered"));
      // The old target was still draining after drainingSeconds: the quiesce went ahead.
      expect(kinds).toContain("drain-cut-short");
      expect(events.find((e) => e.kind === "target-group-skipped")?.message).toContain("lb-ip has IP targets");
      const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
      const records = readRecords(join(env.rootDir(after.instanceId!), "data", "records.log"));
      expect(acked.filter((n) => !records.has(n))).toEqual([]);
      expect(readFileSync(join(env.rootDir(after.instanceId!), "data", "records.log"), "utf8").length).toBeGreaterThan(0);

      // A pause takes the instance out of the group before its quiesce; the resume puts the next one in.
      const paused = await coord.operations.run(name, "pause");
      await succeeded(paused.workflowId);
      const pauseSteps = (await coord.views.getWorkflow(paused.workflowId))!.steps.map((s) => s.name);
      expect(pauseSteps.slice(0, 4)).toEqual(["begin", "deregister-targets", "drain-targets", "quiesce"]);
      expect((await health()).filter(([, s]) => s === "healthy")).toEqual([]);
      const resumed = await coord.operations.run(name, "resume");
      await succeeded(resumed.workflowId);
      const back = (await coord.views.getInstance(name))!;
      expect(await health()).toContainEqual([back.instanceId, "healthy"]);
      expect((await health()).filter(([, s]) => s === "healthy")).toEqual([[back.instanceId, "healthy"]]);

      // A delete takes the instance out of the group before it terminates it.
      const deleted = await coord.operations.deleteInstance(name, {
        keep: { volumes: false, network: false, snapshots: false, images: false },
        ttlHours: null,
      });
      await succeeded(deleted.workflowId);
      expect((await health()).filter(([id]) => id === back.instanceId)).toEqual([[back.instanceId, "draining"]]);
    } finally {
      elb.destroy();
    }
  });
});
