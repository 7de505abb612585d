/**
 * Load-balancer targets that follow the instance (`spec.loadBalancers`): the new generation is
 * registered in every target group of target type `instance` once it is ready, and the old one is
 * deregistered and drained before it is quiesced, so the load balancer stops sending it requests
 * before its workload stops. Target groups of target type `ip` need nothing: the private IP is kept.
 *
 * Runbooks call these only when the spec they recorded at `begin` has `loadBalancers`, so the step
 * sequence depends on recorded input alone. Every step is safe to repeat: registering a registered
 * target changes nothing; deregistering a target that is gone is done.
 */
import { STEP } from "../../../shared/steps.js";
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import type { ElbGateway, TargetGroupInfo } from "../../elb/elbv2.js";
import type { WorkflowContext } from "../engine.js";
import { Failure, failureKind } from "../failure.js";
import { type RunbookDeps, waitUntil } from "./deps.js";
import { MUTATE_POLICY } from "./launch.js";

/** The names of the target-group steps. */
export const TARGET_STEP = {
  deregister: STEP.deregisterTargets,
  drain: STEP.drainTargets,
  register: STEP.registerTargets,
  waitHealthy: STEP.waitTargetsHealthy,
} as const;

/** Longest wait for a newly registered target to turn healthy before the workflow goes on with an event. */
const MAX_HEALTHY_WAIT_MS = 15 * 60_000;

type LoadBalancers = NonNullable<StatefulInstanceSpec["loadBalancers"]>;

function gateway(deps: RunbookDeps): ElbGateway {
  if (!deps.elb) throw new Failure("invalid-spec", "loadBalancers: this coordinator has no load-balancer gateway");
  return deps.elb;
}

/** The spec's target groups of target type `instance`; the others, and missing ones, get an event. */
async function instanceGroups(deps: RunbookDeps, ctx: WorkflowContext, lb: LoadBalancers): Promise<TargetGroupInfo[]> {
  const out: TargetGroupInfo[] = [];
  for (const arn of lb.targetGroupArns) {
    const g = await gateway(deps).describeTargetGroup(arn);
    if (!g) await ctx.event("target-group-missing", `target group ${arn} does not exist (TargetGroupNotFound): left out`);
    else if (g.targetType === "instance") out.push(g);
    else
      await ctx.event(
        "target-group-skipped",
        g.targetType === "ip"
          ? `target group ${g.name} has IP targets: the private IP is kept, so its registration stays as it is`
          : `target group ${g.name} has ${g.targetType} targets, which do not name an instance: left alone`,
      );
  }
  return out;
}

/**
 * Before quiesce: deregister the old instance from each instance target group (step
 * `deregister-targets`), then wait while it drains (step `drain-targets`) for at most
 * `drainingSeconds`, or `budgetMs` when a notice deadline leaves less.
 */
export async function leaveTargetGroups(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { lb: LoadBalancers; instanceId: string; drain?: boolean; budgetMs?: () => number },
): Promise<void> {
  const left = await ctx.step(
    TARGET_STEP.deregister,
    async () => {
      const groups = await instanceGroups(deps, ctx, o.lb);
      const out: string[] = [];
      for (const g of groups) if ((await gateway(deps).deregisterTargets(g.arn, [o.instanceId])) === "deregistered") out.push(g.arn);
      await ctx.event(
        "targets-deregistered",
        out.length
          ? `${o.instanceId} deregistered from ${out.map(groupName).join(", ")}; draining for up to ${o.lb.drainingSeconds} s`
          : `${o.instanceId} was in none of the target groups`,
      );
      return out;
    },
    MUTATE_POLICY,
  );
  if (left.length === 0 || o.drain === false) return;
  await ctx.step(
    TARGET_STEP.drain,
    async () => {
      const limitMs = Math.max(0, Math.min(o.lb.drainingSeconds * 1000, o.budgetMs?.() ?? Number.POSITIVE_INFINITY));
      try {
        await waitUntil(
          deps.clock,
          `${o.instanceId} to drain`,
          async () => {
            for (const arn of left) {
              const health = await gateway(deps).targetHealth(arn, [o.instanceId]);
              if (health.some((h) => h.state === "draining")) return null;
            }
            return true;
          },
          { intervalMs: Math.min(deps.pollMs, Math.max(100, limitMs / 4)), timeoutMs: limitMs, signal: ctx.signal },
        );
        return "drained";
      } catch (err) {
        if (!(err instanceof Failure) || err.kind !== "timeout") throw err;
        await ctx.event("drain-cut-short", `${o.instanceId} still draining after ${Math.round(limitMs / 1000)} s: going on`);
        return "cut-short";
      }
    },
    MUTATE_POLICY,
  );
}

/**
 * Once the new generation is ready (after `finish`): register it in each instance target group
 * (step `register-targets`), then wait until it is healthy in all of them (step
 * `wait-targets-healthy`); a target that does not turn healthy in time leaves an event, not a failure.
 */
export async function joinTargetGroups(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { lb: LoadBalancers; instanceId: string },
): Promise<void> {
  const joined = await ctx.step(
    TARGET_STEP.register,
    async () => {
      const groups = await instanceGroups(deps, ctx, o.lb);
      for (const g of groups) await gateway(deps).registerTargets(g.arn, [o.instanceId]);
      if (groups.length) await ctx.event("targets-registered", `${o.instanceId} registered in ${groups.map((g) => g.name).join(", ")}`);
      return groups.map((g) => ({ arn: g.arn, settleSeconds: g.settleSeconds }));
    },
    MUTATE_POLICY,
  );
  if (joined.length === 0) return;
  await ctx.step(
    TARGET_STEP.waitHealthy,
    async () => {
      const timeoutMs = Math.min(MAX_HEALTHY_WAIT_MS, (Math.max(...joined.map((g) => g.settleSeconds)) + 60) * 1000);
      const last = new Map<string, string>();
      try {
        await waitUntil(
          deps.clock,
          `${o.instanceId} to turn healthy in its target groups`,
          async () => {
            for (const g of joined) {
              const health = await gateway(deps).targetHealth(g.arn, [o.instanceId]);
              const state = health.map((h) => h.state + (h.reason ? ` (${h.reason})` : "")).join(", ") || "not registered";
              last.set(g.arn, state);
              if (!health.length || health.some((h) => h.state !== "healthy")) return null;
            }
            return true;
          },
          { intervalMs: deps.pollMs, timeoutMs, signal: ctx.signal },
        );
        return true;
      } catch (err) {
        if (!(err instanceof Failure) || err.kind !== "timeout") throw err;
        const states = [...last].map(([arn, s]) => `${groupName(arn)}: ${s}`).join("; ");
        await ctx.event(
          "targets-unhealthy",
          `${o.instanceId} is not healthy in its target groups after ${Math.round(timeoutMs / 1000)} s (${states})`,
        );
        return false;
      }
    },
    MUTATE_POLICY,
  );
}

/**
 * A delete: deregister every instance it terminates (no drain wait: nothing will serve again). A
 * group that cannot be changed (no permission, say) leaves an event; the delete goes on, and the
 * terminated instance shows as `unused` in that group.
 */
export async function deregisterForDelete(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  spec: StatefulInstanceSpec,
  instanceIds: string[],
): Promise<void> {
  if (!spec.loadBalancers || instanceIds.length === 0) return;
  const elb = gateway(deps);
  for (const arn of spec.loadBalancers.targetGroupArns) {
    try {
      const g = await elb.describeTargetGroup(arn);
      if (g?.targetType === "instance") await elb.deregisterTargets(arn, instanceIds);
    } catch (err) {
      if (failureKind(err) === "throttling") throw err;
      await ctx.event("targets-not-deregistered", `${instanceIds.join(", ")} left in ${groupName(arn)}: ${(err as Error).message}`);
    }
  }
}

/** `targetgroup/NAME/ID` → NAME, for messages. */
function groupName(arn: string): string {
  return arn.split("/")[1] ?? arn;
}
