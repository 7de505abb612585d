/**
 * Scheduled tasks and load-balancer targets in process (test/support/in-process.ts: localcloud
 * without a runtime, the coordinator in this process, a fake agent per instance, time-scaled):
 *  - a `pause` at 20:00 and a `resume` at 07:00 (UTC) run on time under a moved calendar clock, each
 *    due time once across a coordinator restart in between; the instance comes back with the same
 *    IP, ENI and volume;
 *  - an instance in an ELBv2 target group (instance targets) is deregistered and drained before its
 *    quiesce at a spot interruption, and its replacement is healthy in the group afterwards
 *    (DescribeTargetHealth through the unmodified SDK).
 *
 * Every acknowledged record on the volume after a pause and resume is test/coordinator/crash.test.ts's
 * (its pause and resume cases), after a replacement test/coordinator/e2e.test.ts's; the scheduled
 * pause across a coordinator killed mid-way is test/coordinator/tasks-crash.test.ts's.
 */
import { DescribeTargetHealthCommand, ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSpec } from "../../shared/spec.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { liveInstances, until } from "./harness.js";

let h: InProcess;
/** The calendar the coordinator reads cron expressions on: the real clock moved by `offset`. */
let offset = 0;
const calendar = () => Date.now() + offset;
const setCalendar = (at: number) => {
  offset = at - Date.now();
};
// Thursday 2026-12-03: paused at 20:00, resumed at 07:00 on Friday.
const DAY = Date.UTC(2026, 11, 3);
const H = 3_600_000;

async function succeeded(workflowId: string) {
  const wf = await h.coord.engine.wait(workflowId);
  expect(wf.error).toBeNull();
  expect(wf.status).toBe("succeeded");
  return wf;
}

beforeAll(async () => {
  setCalendar(DAY + 12 * H);
  h = await startInProcess({ prefix: "spotkeep-inproc-tasks-", calendar });
});
afterAll(async () => {
  await h?.stop();
});

describe("scheduled tasks (in process)", () => {
  it("pauses at 20:00 and resumes at 07:00, each once, across a coordinator restart; same IP and data", async () => {
    const name = "sched";
    const spec = parseSpec({
      ...h.spec(name),
      schedule: [
        { action: "pause", cron: "0 20 * * 1-5" },
        { action: "resume", cron: "0 7 * * 1-5" },
      ],
    });
    await succeeded((await h.coord.views.createInstance(spec)).workflowId);
    const first = (await h.coord.views.getInstance(name))!;
    expect(first.schedule.map((t) => [t.action, t.nextRunAt])).toEqual([
      ["pause", "2026-12-03T20:00:00.000Z"],
      ["resume", "2026-12-04T07:00:00.000Z"],
    ]);
    // Nothing is due before 20:00.
    await new Promise((r) => setTimeout(r, 500));
    expect((await h.coord.store.workflows.listFor(name)).map((w) => w.kind)).toEqual(["create"]);

    setCalendar(DAY + 20 * H + 1000);
    const pause = await until("the scheduled pause", async () =>
      (await h.coord.store.workflows.listFor(name)).find((w) => w.kind === "pause"),
    );
    expect(pause.trigger).toBe("scheduled pause (0 20 * * 1-5) due at 2026-12-03T20:00:00.000Z");
    await succeeded(pause.id);
    expect((await h.coord.views.getInstance(name))!.state).toBe("paused");
    expect((await liveInstances(h.env, name)).length).toBe(0);

    // A restart while the pause's due time is still the latest: it is not run again.
    setCalendar(DAY + 20 * H + 10 * 60_000);
    await h.restart();
    await new Promise((r) => setTimeout(r, 1000)); // several schedule passes (every 150 ms real)
    await h.coord.runScheduledTasks();
    expect((await h.coord.store.workflows.listFor(name)).map((w) => w.kind)).toEqual(["create", "pause"]);
    const described = (await h.coord.views.getInstance(name))!;
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
      (await h.coord.store.workflows.listFor(name)).find((w) => w.kind === "resume"),
    );
    await succeeded(resume.id);
    const back = (await h.coord.views.getInstance(name))!;
    expect(back.state).toBe("running");
    expect(back.generation).toBe(2);
    expect(back.privateIp).toBe(first.privateIp);
    expect(back.resources.network.eniId).toBe(first.resources.network.eniId);
    expect(back.resources.volumes[0]?.volumeId).toBe(first.resources.volumes[0]?.volumeId);
    expect((await liveInstances(h.env, name)).map((i) => i.instanceId)).toEqual([back.instanceId]);
    const events = (await h.coord.views.getEvents(name))!.events.map((e) => e.kind);
    expect(events.filter((k) => k === "pause-started")).toHaveLength(1);
    expect(events.filter((k) => k === "resume-started")).toHaveLength(1);
    expect(events.filter((k) => k.startsWith("schedule-"))).toEqual([]);
  });
});

describe("load-balancer targets follow the instance", () => {
  it("deregisters and drains the old instance before its quiesce; the replacement is healthy in the target group", async () => {
    const name = "lb";
    const group = h.env.lc.elbv2.createTargetGroup({
      name: "lb-web",
      protocol: "HTTP",
      port: 8080,
      vpcId: h.env.lc.world.defaultVpc().id,
      targetType: "instance",
      healthCheck: { intervalSeconds: 5, healthyThreshold: 2 },
    });
    const ipGroup = h.env.lc.elbv2.createTargetGroup({
      name: "lb-ip",
      protocol: "TCP",
      port: 5432,
      vpcId: h.env.lc.world.defaultVpc().id,
      targetType: "ip",
      healthCheck: {},
    });
    const spec = parseSpec({
      ...h.spec(name, { root: false }),
      loadBalancers: { targetGroupArns: [group.arn, ipGroup.arn], drainingSeconds: 20 },
    });
    await succeeded((await h.coord.views.createInstance(spec)).workflowId);
    const before = (await h.coord.views.getInstance(name))!;
    const oldId = before.instanceId!;
    const elb = new ElasticLoadBalancingV2Client({
      endpoint: h.env.lc.endpoint,
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

      await h.env.control("POST", `instances/${oldId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
      const wf = await until("a replace workflow", async () =>
        (await h.coord.store.workflows.listFor(name)).find((w) => w.kind === "replace"),
      );
      await succeeded(wf.id);
      const after = (await h.coord.views.getInstance(name))!;
      expect(after.instanceId).not.toBe(oldId);
      expect(after.privateIp).toBe(before.privateIp);

      // The replacement is healthy in the group; the old instance drains (the group's delay is 300 s) or is gone.
      const now = await health();
      expect(now).toContainEqual([after.instanceId, "healthy"]);
      expect(now.filter(([id]) => id === oldId).map(([, s]) => s)).not.toContain("healthy");

      // The timeline: out of the group and drained before the quiesce began.
      const steps = (await h.coord.views.getWorkflow(wf.id))!.steps;
      const at = (n: string) => steps.find((s) => s.name === n)!;
      expect(steps.map((s) => s.name).slice(0, 4)).toEqual(["begin", "deregister-targets", "drain-targets", "quiesce"]);
      expect(Date.parse(at("drain-targets").endedAt!)).toBeLessThanOrEqual(Date.parse(at("quiesce").startedAt!));
      const names = steps.map((s) => s.name);
      expect(names.indexOf("register-targets")).toBe(names.indexOf("finish") + 1);
      expect(names).toContain("wait-targets-healthy");
      const events = (await h.coord.views.getEvents(name))!.events;
      const kinds = events.filter((e) => e.workflowId === wf.id).map((e) => e.kind);
      expect(kinds.indexOf("targets-deregistered")).toBeGreaterThanOrEqual(0);
      expect(kinds.indexOf("targets-deregistered")).toBeLessThan(kinds.indexOf("targets-registered"));
      // The old target was still draining after drainingSeconds: the quiesce went ahead.
      expect(kinds).toContain("drain-cut-short");
      expect(events.find((e) => e.kind === "target-group-skipped")?.message).toContain("lb-ip has IP targets");

      // A pause takes the instance out of the group before its quiesce; the resume puts the next one in.
      const paused = await h.coord.operations.run(name, "pause");
      await succeeded(paused.workflowId);
      const pauseSteps = (await h.coord.views.getWorkflow(paused.workflowId))!.steps.map((s) => s.name);
      expect(pauseSteps.slice(0, 4)).toEqual(["begin", "deregister-targets", "drain-targets", "quiesce"]);
      expect((await health()).filter(([, s]) => s === "healthy")).toEqual([]);
      const resumed = await h.coord.operations.run(name, "resume");
      await succeeded(resumed.workflowId);
      const back = (await h.coord.views.getInstance(name))!;
      expect(await health()).toContainEqual([back.instanceId, "healthy"]);
      expect((await health()).filter(([, s]) => s === "healthy")).toEqual([[back.instanceId, "healthy"]]);

      // A delete takes the instance out of the group (drained, as a pause does) before its quiesce and termination.
      const deleted = await h.coord.operations.deleteInstance(name, {
        keep: { volumes: false, network: false, snapshots: false, images: false },
        ttlHours: null,
      });
      await succeeded(deleted.workflowId);
      const deleteSteps = (await h.coord.views.getWorkflow(deleted.workflowId))!.steps.map((s) => s.name);
      expect(deleteSteps.slice(0, 5)).toEqual(["begin", "deregister-targets", "drain-targets", "quiesce", "terminate"]);
      expect((await health()).filter(([id]) => id === back.instanceId)).toEqual([[back.instanceId, "draining"]]);
    } finally {
      elb.destroy();
    }
  });
});
