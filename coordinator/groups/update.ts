/**
 * group-update: plan → (roll M → wait M) each member, in ordinal order.
 *
 * `roll` waits until the group's admission rule lets the member's recycle start (fewer than
 * maxUnavailable other members down, no interruption being recovered), then stores the member's
 * new spec and starts the recycle in one transaction; `wait` waits for it to end (and for the
 * member to be healthy when the template has health checks). The first failure stops the roll-out;
 * the group's state says where.
 */
import { STEP, STEP_OF } from "../../shared/steps.js";
import { factsOf, refusalOf } from "../lifecycle.js";
import type { StatefulInstanceSpec } from "../../shared/spec.js";
import { memberName } from "../../shared/group-spec.js";
import type { Runbook, WorkflowContext } from "../workflow/engine.js";
import { Failure } from "../workflow/failure.js";
import { waitUntil } from "../workflow/runbooks/deps.js";
import type { ReplaceInput } from "../workflow/runbooks/replace.js";
import type { ResumeInput } from "../workflow/runbooks/resume.js";
import { plannedWorkRefusal } from "../planned-work.js";
import { type GroupRunbookDeps, type GroupUpdateInput, groupKey, WAIT_POLICY, waitWorkflow } from "./runbooks.js";
import { sameSpec } from "./same-spec.js";

export function groupUpdateRunbook(deps: GroupRunbookDeps): Runbook<GroupUpdateInput> {
  const store = deps.run.store;
  return async (ctx, input) => {
    const { group } = input;
    const ordinals = await ctx.step(STEP.plan, async () =>
      (await store.groups.members(group)).filter((m) => m.status === "active").map((m) => m.ordinal),
    );
    for (const [i, k] of ordinals.entries()) {
      const name = memberName(group, k);
      const rolled = await ctx.step(
        STEP_OF.rollMember(name),
        () => rollMember(deps, ctx, input, k, `${i + 1} of ${ordinals.length}`),
        WAIT_POLICY,
      );
      await ctx.step(
        STEP_OF.waitMember(name),
        async () => {
          if (!rolled.workflowId) return;
          await waitWorkflow(deps, ctx, rolled.workflowId, `recycling ${name}`);
          if (!input.template.health || !deps.health) return;
          const health = deps.health;
          await waitUntil(
            deps.run.clock,
            `${name} to be healthy`,
            async () => {
              const s = await health(name);
              if (s === "unhealthy") throw new Failure("member-failed", `${name} is unhealthy after its recycle`);
              return s === "healthy" || s === null ? true : null;
            },
            { intervalMs: deps.run.pollMs, timeoutMs: deps.memberTimeoutMs ?? 60 * 60_000, signal: ctx.signal },
          );
        },
        WAIT_POLICY,
      );
    }
    return { rolled: ordinals.map((k) => memberName(group, k)) };
  };
}

/**
 * Store member `ordinal`'s new spec and start its recycle once the admission rule allows it (a
 * paused member only gets the spec: it applies when it resumes). The recycle's reason names this
 * workflow, so a replay finds the recycle it started.
 */
async function rollMember(
  deps: GroupRunbookDeps,
  ctx: WorkflowContext,
  input: GroupUpdateInput,
  ordinal: number,
  progress: string,
): Promise<{ workflowId: string | null }> {
  const store = deps.run.store;
  const { group } = input;
  const name = memberName(group, ordinal);
  const reason = `group ${group} update`;
  // The trigger names this workflow, so a replay finds the recycle (or resume) it started.
  const trigger = `group-update ${ctx.workflowId}`;
  const spec = structuredClone({ ...input.template, name }) as StatefulInstanceSpec;
  let lastWait: string | null = null;
  return waitUntil(
    deps.run.clock,
    `${name} to be allowed to recycle`,
    async () => {
      // A failed member may still have a running EC2 instance (then it is recycled, else resumed from what it kept).
      const failedAlive = await failedMemberAlive(deps, name);
      return store.tx(async (t) => {
        const mine = (await t.workflows.listFor(name)).find((w) => w.trigger === trigger);
        if (mine) return { workflowId: mine.id };
        const inst = await t.instances.get(name);
        if (!inst) throw new Failure("resource-lost", `${name} no longer exists`);
        if (sameSpec(inst.spec, spec) && inst.state !== "failed") return { workflowId: null };
        if (inst.state === "paused") {
          await t.instances.setSpec(name, spec);
          await t.events.add(name, "updated", `spec updated by group ${group}; applied when it resumes`);
          return { workflowId: null };
        }
        const g = inst.generation > 0 ? await t.generations.get(name, inst.generation) : null;
        const facts = await factsOf(t, inst, g);
        if (failedAlive !== null && refusalOf("group revival", facts) === null) {
          // Bringing a failed member back takes nothing away from the cluster: no admission wait.
          await t.instances.setSpec(name, spec);
          const wf = failedAlive
            ? await deps.start(
                "recycle",
                name,
                { name, instanceId: failedAlive, fromGeneration: inst.generation, trigger: "recycle", reason },
                trigger,
                t,
              )
            : await deps.start("resume", name, { name, fromGeneration: inst.generation, from: "failed" } satisfies ResumeInput, trigger, t);
          await t.events.add(
            name,
            failedAlive ? "recycle-started" : "resume-started",
            `${reason}: bringing the failed member back with the new template`,
            wf,
          );
          await t.groups.setState(group, "updating", `rolling ${progress}: ${name} (workflow ${wf})`);
          await t.events.add(
            groupKey(group),
            "member-rolling",
            `${name} (${progress}) failed: restarting it with the new template (workflow ${wf})`,
            ctx.workflowId,
          );
          return { workflowId: wf };
        }
        const why = refusalOf("group roll", facts) ?? (await plannedWorkRefusal(t, name));
        if (why) {
          if (why !== lastWait) {
            lastWait = why;
            await t.groups.setState(group, "updating", `rolling ${progress}: waiting: ${why}`);
            await t.events.add(groupKey(group), "roll-waiting", why, ctx.workflowId);
          }
          return null;
        }
        if (!g?.ec2InstanceId || g.status !== "live") throw new Failure("resource-lost", `${name} has no live generation to recycle`);
        await t.instances.setSpec(name, spec);
        const rin: ReplaceInput = { name, instanceId: g.ec2InstanceId, fromGeneration: inst.generation, trigger: "recycle", reason };
        const wf = await deps.start("recycle", name, rin, trigger, t);
        await t.events.add(name, "recycle-started", `group ${group} update: recycling ${g.ec2InstanceId} with the new template`, wf);
        await t.groups.setState(group, "updating", `rolling ${progress}: ${name} (workflow ${wf})`);
        await t.events.add(
          groupKey(group),
          "member-rolling",
          `${name} (${progress}) recycles with the new template (workflow ${wf})`,
          ctx.workflowId,
        );
        return { workflowId: wf };
      });
    },
    { intervalMs: deps.run.pollMs, timeoutMs: deps.memberTimeoutMs ?? 60 * 60_000, signal: ctx.signal },
  );
}

/** For a failed member: the id of its generation's EC2 instance if EC2 still runs it, "" if not; null for a member not failed. */
async function failedMemberAlive(deps: GroupRunbookDeps, name: string): Promise<string | null> {
  const inst = await deps.run.store.instances.get(name);
  if (inst?.state !== "failed") return null;
  const g = inst.generation > 0 ? await deps.run.store.generations.get(name, inst.generation) : null;
  if (!g?.ec2InstanceId || g.status === "ended") return "";
  const [i] = await deps.run.ec2.describeInstances([g.ec2InstanceId]);
  return i && (i.state === "pending" || i.state === "running") ? g.ec2InstanceId : "";
}
