import { describe, expect, it } from "vitest";
import type { ElbGateway, TargetGroupInfo, TargetHealthInfo } from "../../elb/elbv2.js";
import { Ec2Error } from "../../cloud/errors.js";
import { scaledClock } from "../../../shared/clock.js";
import type { WorkflowContext } from "../engine.js";
import type { RunbookDeps } from "./deps.js";
import { deregisterForDelete, joinTargetGroups, leaveTargetGroups } from "./targets.js";

const arn = (name: string) => `arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/${name}/0123456789abcdef`;

/** A load balancer in memory: groups by ARN, each target's state, and every call made. */
function fakeElb(groups: Record<string, TargetGroupInfo["targetType"]>) {
  const calls: string[] = [];
  const targets = new Map<string, Map<string, string>>();
  let healthPolls = 0;
  const elb: ElbGateway & { calls: string[]; targets: typeof targets; healthyAfter: number; drainsAfter: number } = {
    calls,
    targets,
    healthyAfter: 2,
    drainsAfter: Number.POSITIVE_INFINITY,
    async describeTargetGroup(a) {
      const name = a.split("/")[1]!;
      const type = groups[name];
      return type ? { arn: a, name, targetType: type, settleSeconds: 10 } : null;
    },
    async registerTargets(a, ids) {
      calls.push(`register ${ids} ${a.split("/")[1]}`);
      const m = targets.get(a) ?? new Map();
      for (const id of ids) m.set(id, "initial");
      targets.set(a, m);
    },
    async deregisterTargets(a, ids) {
      calls.push(`deregister ${ids} ${a.split("/")[1]}`);
      const m = targets.get(a);
      if (!m || ids.some((id) => !m.has(id))) return "gone";
      for (const id of ids) m.set(id, "draining");
      return "deregistered";
    },
    async targetHealth(a, ids): Promise<TargetHealthInfo[]> {
      healthPolls++;
      const m = targets.get(a) ?? new Map();
      return ids.map((id) => {
        let state = m.get(id) ?? "unused";
        if (state === "initial" && healthPolls >= elb.healthyAfter) state = "healthy";
        if (state === "draining" && healthPolls >= elb.drainsAfter) state = "unused";
        return { id, port: 80, state, reason: null };
      });
    },
  };
  return elb;
}

function harness(elb: ElbGateway | undefined) {
  const steps: string[] = [];
  const events: Array<[string, string]> = [];
  const ctx = {
    workflowId: "wf-1",
    signal: new AbortController().signal,
    step: async (name: string, fn: () => Promise<unknown>) => {
      steps.push(name);
      return fn();
    },
    event: async (kind: string, message: string) => void events.push([kind, message]),
  } as unknown as WorkflowContext;
  // 1 model second = 1 real ms.
  const deps = { elb, clock: scaledClock(0.001), pollMs: 1000 } as unknown as RunbookDeps;
  return { ctx, deps, steps, events };
}

describe("target-group steps", () => {
  it("deregisters from instance groups only, then drains until the target has left", async () => {
    const elb = fakeElb({ web: "instance", db: "ip" });
    await elb.registerTargets(arn("web"), ["i-old"]);
    elb.drainsAfter = 3;
    const h = harness(elb);
    await leaveTargetGroups(h.deps, h.ctx, {
      lb: { targetGroupArns: [arn("web"), arn("db"), arn("gone")], drainingSeconds: 60 },
      instanceId: "i-old",
    });
    expect(h.steps).toEqual(["deregister-targets", "drain-targets"]);
    expect(elb.calls).toEqual(["register i-old web", "deregister i-old web"]);
    expect(h.events.map(([k]) => k)).toEqual(["target-group-skipped", "target-group-missing", "targets-deregistered"]);
    expect(h.events[0]?.[1]).toContain("db has IP targets");
  });

  it("goes on after drainingSeconds (or the notice's budget) with an event; skips the drain when asked or when nothing was registered", async () => {
    const elb = fakeElb({ web: "instance" });
    await elb.registerTargets(arn("web"), ["i-old"]);
    const h = harness(elb);
    await leaveTargetGroups(h.deps, h.ctx, { lb: { targetGroupArns: [arn("web")], drainingSeconds: 5 }, instanceId: "i-old" });
    expect(h.events.at(-1)).toEqual(["drain-cut-short", "i-old still draining after 5 s: going on"]);

    await elb.registerTargets(arn("web"), ["i-2"]);
    const budget = harness(elb);
    await leaveTargetGroups(budget.deps, budget.ctx, {
      lb: { targetGroupArns: [arn("web")], drainingSeconds: 600 },
      instanceId: "i-2",
      budgetMs: () => 2000,
    });
    expect(budget.events.at(-1)).toEqual(["drain-cut-short", "i-2 still draining after 2 s: going on"]);

    await elb.registerTargets(arn("web"), ["i-3"]);
    const lost = harness(elb);
    await leaveTargetGroups(lost.deps, lost.ctx, {
      lb: { targetGroupArns: [arn("web")], drainingSeconds: 600 },
      instanceId: "i-3",
      drain: false,
    });
    expect(lost.steps).toEqual(["deregister-targets"]);

    const none = harness(elb);
    await leaveTargetGroups(none.deps, none.ctx, { lb: { targetGroupArns: [arn("web")], drainingSeconds: 600 }, instanceId: "i-never" });
    expect(none.steps).toEqual(["deregister-targets"]);
    expect(none.events).toEqual([["targets-deregistered", "i-never was in none of the target groups"]]);
  });

  it("registers the new instance and waits until it is healthy; not healthy in time is an event, not a failure", async () => {
    const elb = fakeElb({ web: "instance", api: "instance" });
    const h = harness(elb);
    await joinTargetGroups(h.deps, h.ctx, { lb: { targetGroupArns: [arn("web"), arn("api")], drainingSeconds: 30 }, instanceId: "i-new" });
    expect(h.steps).toEqual(["register-targets", "wait-targets-healthy"]);
    expect(elb.calls).toEqual(["register i-new web", "register i-new api"]);
    expect(h.events).toEqual([["targets-registered", "i-new registered in web, api"]]);

    elb.healthyAfter = Number.POSITIVE_INFINITY;
    const slow = harness(elb);
    await joinTargetGroups(slow.deps, slow.ctx, { lb: { targetGroupArns: [arn("web")], drainingSeconds: 30 }, instanceId: "i-slow" });
    expect(slow.events.at(-1)?.[0]).toBe("targets-unhealthy");
    expect(slow.events.at(-1)?.[1]).toMatch(/^i-slow is not healthy in its target groups after 70 s \(web: initial\)$/);
  });

  it("a delete deregisters what it terminates; a group it may not change leaves an event and the delete goes on", async () => {
    const elb = fakeElb({ web: "instance", locked: "instance" });
    await elb.registerTargets(arn("web"), ["i-1"]);
    elb.deregisterTargets = async (a, ids) => {
      if (a.includes("/locked/")) throw new Ec2Error(`deregistering ${ids} from ${a}`, "AccessDenied", "not authorized");
      elb.calls.push(`deregister ${ids} ${a.split("/")[1]}`);
      return "deregistered";
    };
    const h = harness(elb);
    const spec = { loadBalancers: { targetGroupArns: [arn("locked"), arn("web")], drainingSeconds: 30 } } as never;
    await deregisterForDelete(h.deps, h.ctx, spec, ["i-1"]);
    expect(elb.calls.at(-1)).toBe("deregister i-1 web");
    expect(h.events[0]?.[0]).toBe("targets-not-deregistered");
    expect(h.events[0]?.[1]).toContain("AccessDenied");
  });

  it("a spec with loadBalancers on a coordinator without the gateway fails with the field named", async () => {
    const h = harness(undefined);
    await expect(
      joinTargetGroups(h.deps, h.ctx, { lb: { targetGroupArns: [arn("web")], drainingSeconds: 30 }, instanceId: "i-1" }),
    ).rejects.toThrow(/^loadBalancers: /);
  });
});
