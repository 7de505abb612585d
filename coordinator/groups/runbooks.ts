/**
 * The group runbooks, recorded under `group:NAME`:
 *
 *   group-scale:  plan → (allocate M → create M) each new member → wait M ready ‖ …
 *                      → delete M each removed member (highest ordinal first) → wait M deleted ‖ … → release M each
 *                      [→ remove-group]
 *   group-update: plan → (roll M → wait M) each member, in ordinal order
 *
 * A member is an ordinary stateful instance created by the create runbook with its pool address;
 * its membership row (the address it owns) is written in `allocate` and removed in `release`, once
 * its delete has finished. `roll` waits until the group's admission rule lets the member's recycle
 * start (fewer than maxUnavailable other members down, no interruption being recovered), then
 * stores the member's new spec and starts the recycle in one transaction; `wait` waits for it to
 * end (and for the member to be healthy when the template has health checks). The first failure
 * stops the roll-out; the group's state says where.
 */
import type { KeepSet } from "../../shared/deletion.js";
import { type GroupSpec, type MemberTemplate, memberName } from "../../shared/group-spec.js";
import type { StatefulInstanceSpec } from "../../shared/spec.js";
import { ApiFault } from "../api/types.js";
import type { WorkflowRecord } from "../db/store.js";
import type { Operations } from "../operations.js";
import { taskKey } from "../tasks.js";
import { type Runbook, step, type StepPolicy, type WorkflowContext } from "../workflow/engine.js";
import { Failure, failureKind } from "../workflow/failure.js";
import { type RunbookDeps, waitUntil } from "../workflow/runbooks/deps.js";
import { describeLaunchSubnets } from "../workflow/runbooks/launch.js";
import type { ReplaceInput } from "../workflow/runbooks/replace.js";
import type { ResumeInput } from "../workflow/runbooks/resume.js";
import { plannedWorkRefusal } from "./admission.js";
import { addressCandidates, firstFreeAddress } from "./pool.js";
import { sameSpec } from "./same-spec.js";

/** The key group workflows and timeline events are recorded under (no instance name has a colon). */
export const groupKey = (group: string) => `group:${group}`;

export interface GroupRunbookDeps {
  run: RunbookDeps;
  /** Start a workflow inside the caller's transaction (the engine's start). */
  start: (
    kind: string,
    instance: string,
    input: unknown,
    trigger: string,
    t: Parameters<Parameters<RunbookDeps["store"]["tx"]>[0]>[0],
  ) => Promise<string>;
  operations: Pick<Operations, "deleteInstance">;
  /** The member's health status (healthy, failing, …) when its spec has health checks; null otherwise. */
  health?: (instance: string) => Promise<string | null>;
  /** Calendar for a new member's scheduled tasks. */
  calendar?: () => number;
  /** Model ms a member may take to come up, be deleted or be recycled. */
  memberTimeoutMs?: number;
}

export interface GroupScaleInput {
  group: string;
  to: number;
  keep: KeepSet;
  ttlHours: number | null;
  /** The group's delete: scale to 0, then remove the group. */
  removeGroup?: boolean;
}

export interface GroupUpdateInput {
  group: string;
  template: MemberTemplate;
}

const STORE_POLICY: StepPolicy = { initialMs: 500, factor: 2, maxMs: 8000, attempts: 20, jitter: "equal" };
const EC2_POLICY: StepPolicy = {
  ...STORE_POLICY,
  // Transient EC2 and store errors are retried; an exhausted pool or a bad template is not.
  retryable: (e) => !["pool-exhausted", "invalid-spec", "resource-lost", "fatal"].includes(failureKind(e)),
};
const WAIT_POLICY: StepPolicy = { attempts: 1 };

async function loadGroup(deps: GroupRunbookDeps, group: string): Promise<GroupSpec> {
  const g = await deps.run.store.groups.get(group);
  if (!g) throw new Failure("resource-lost", `group ${group} no longer exists`);
  return g.spec;
}

/** Wait for workflow `id` to end; a Failure naming the member when it did not succeed. */
async function waitWorkflow(deps: GroupRunbookDeps, ctx: WorkflowContext, id: string, what: string): Promise<WorkflowRecord> {
  const wf = await waitUntil(
    deps.run.clock,
    `${what} (workflow ${id})`,
    async () => {
      const w = await deps.run.store.workflows.get(id);
      if (!w) return { status: "gone" } as const;
      return w.status === "running" ? null : w;
    },
    { intervalMs: deps.run.pollMs, timeoutMs: deps.memberTimeoutMs ?? 60 * 60_000, signal: ctx.signal },
  );
  if (!("id" in wf)) return { id, status: "succeeded" } as WorkflowRecord; // archived with its deleted instance
  if (wf.status !== "succeeded")
    throw new Failure("member-failed", `${what}: ${wf.kind} ${wf.id} ${wf.status}: ${wf.error ?? "no error recorded"}`);
  return wf;
}

export function groupScaleRunbook(deps: GroupRunbookDeps): Runbook<GroupScaleInput> {
  const store = deps.run.store;
  return async (ctx, input) => {
    const { group, to } = input;
    const plan = await ctx.step("plan", async () => {
      const members = await store.groups.members(group);
      const have = new Set(members.map((m) => m.ordinal));
      const add: number[] = [];
      for (let k = 0; k < to; k++) if (!have.has(k)) add.push(k);
      const remove = members
        .filter((m) => m.ordinal >= to)
        .map((m) => m.ordinal)
        .sort((a, b) => b - a);
      return { add, remove };
    });

    // Scale up: one address at a time (each sees the ones claimed before it), then every new member comes up together.
    const created: Array<{ ordinal: number; workflowId: string }> = [];
    for (const k of plan.add) {
      const name = memberName(group, k);
      await ctx.step(`allocate ${name}`, () => allocate(deps, ctx, group, k), EC2_POLICY);
      const wf = await ctx.step(`create ${name}`, () => createMember(deps, ctx, group, k), STORE_POLICY);
      created.push({ ordinal: k, workflowId: wf });
    }
    await ctx.all(
      created.map((c) =>
        step(
          `wait ${memberName(group, c.ordinal)} ready`,
          async () => {
            await waitWorkflow(deps, ctx, c.workflowId, `creating ${memberName(group, c.ordinal)}`);
          },
          WAIT_POLICY,
        ),
      ),
    );

    // Scale down: highest ordinals first, with the keep choices of a delete; an address returns to the pool once its member is gone.
    const deleting: Array<{ ordinal: number; workflowId: string | null }> = [];
    for (const k of plan.remove) {
      const name = memberName(group, k);
      const wf = await ctx.step(`delete ${name}`, () => deleteMember(deps, ctx, input, k), WAIT_POLICY);
      deleting.push({ ordinal: k, workflowId: wf });
    }
    await ctx.all(
      deleting.map((d) =>
        step(
          `wait ${memberName(group, d.ordinal)} deleted`,
          async () => {
            if (d.workflowId) await waitWorkflow(deps, ctx, d.workflowId, `deleting ${memberName(group, d.ordinal)}`);
          },
          WAIT_POLICY,
        ),
      ),
    );
    for (const d of deleting) {
      const name = memberName(group, d.ordinal);
      await ctx.step(
        `release ${name}`,
        async () => {
          await store.tx(async (t) => {
            const m = (await t.groups.members(group)).find((x) => x.ordinal === d.ordinal);
            if (!m) return;
            await t.groups.removeMember(group, d.ordinal);
            await t.events.add(
              groupKey(group),
              "address-released",
              `${m.privateIp} returned to the pool (${name} deleted)`,
              ctx.workflowId,
            );
          });
        },
        STORE_POLICY,
      );
    }
    if (input.removeGroup)
      await ctx.step(
        "remove-group",
        async () => {
          await store.tx(async (t) => {
            if ((await t.groups.members(group)).length > 0) throw new Failure("resource-lost", `group ${group} still has members`);
            await t.groups.remove(group);
            await t.events.add(groupKey(group), "group-deleted", `group ${group} deleted`, ctx.workflowId);
          });
        },
        STORE_POLICY,
      );
    return { added: plan.add.map((k) => memberName(group, k)), removed: plan.remove.map((k) => memberName(group, k)) };
  };
}

/** Claim the next free pool address for member `ordinal` (its existing claim on a replay). */
async function allocate(deps: GroupRunbookDeps, ctx: WorkflowContext, group: string, ordinal: number) {
  const store = deps.run.store;
  const name = memberName(group, ordinal);
  const mine = (await store.groups.members(group)).find((m) => m.ordinal === ordinal);
  if (mine) return { privateIp: mine.privateIp, subnetId: mine.subnetId, availabilityZone: mine.availabilityZone };
  const spec = await loadGroup(deps, group);
  const existing = await store.instances.get(name);
  if (existing) throw new Failure("invalid-spec", `${name} already exists as a stateful instance outside group ${group}`);
  const template = { ...spec.template, name } as StatefulInstanceSpec;
  const subnets = await describeLaunchSubnets(deps.run, template, "refuse");
  const members = await store.groups.members(group);
  const candidates = addressCandidates(spec.ipPool, subnets, members);
  const { choice, skipped } = await firstFreeAddress(deps.run.ec2, group, spec.ipPool, candidates, members);
  await store.tx(async (t) => {
    await t.groups.addMember({ group, ordinal, instance: name, ...choice });
    if (skipped.length)
      await t.events.add(groupKey(group), "address-skipped", `skipped addresses taken in EC2: ${skipped.join(", ")}`, ctx.workflowId);
    await t.events.add(
      groupKey(group),
      "address-allocated",
      `${choice.privateIp} (${choice.availabilityZone}, ${choice.subnetId}) belongs to ${name}`,
      ctx.workflowId,
    );
  });
  return choice;
}

/** Record member `ordinal` as a stateful instance and start its create runbook (its existing create on a replay). */
async function createMember(deps: GroupRunbookDeps, ctx: WorkflowContext, group: string, ordinal: number): Promise<string> {
  const name = memberName(group, ordinal);
  return deps.run.store.tx(async (t) => {
    const m = (await t.groups.members(group)).find((x) => x.ordinal === ordinal);
    if (!m) throw new Failure("resource-lost", `${name} has no address claimed`);
    if (await t.instances.get(name)) {
      const earlier = (await t.workflows.listFor(name)).find((w) => w.kind === "create");
      if (earlier) return earlier.id;
      throw new Failure("invalid-spec", `${name} already exists as a stateful instance outside group ${group}`);
    }
    const g = await t.groups.get(group);
    if (!g) throw new Failure("resource-lost", `group ${group} no longer exists`);
    const spec = structuredClone({ ...g.spec.template, name }) as StatefulInstanceSpec;
    await t.instances.insert(name, spec, "creating");
    for (const v of spec.persistence.volumes) await t.volumes.declare(name, v.device, v.mountPoint ?? null, v.fsType);
    await t.taskRuns.sync(name, spec.schedule.map(taskKey), deps.calendar?.() ?? Date.now());
    const wf = await deps.start("create", name, { name, address: { privateIp: m.privateIp, subnetId: m.subnetId } }, `group ${group}`, t);
    await t.events.add(name, "created", `create requested as member ${ordinal} of group ${group} at ${m.privateIp} (workflow ${wf})`, wf);
    await t.events.add(
      groupKey(group),
      "member-created",
      `${name} at ${m.privateIp} in ${m.availabilityZone} (workflow ${wf})`,
      ctx.workflowId,
    );
    return wf;
  });
}

/** Start the delete of member `ordinal` with the scale's keep choices; null when it is already gone. */
async function deleteMember(deps: GroupRunbookDeps, ctx: WorkflowContext, input: GroupScaleInput, ordinal: number): Promise<string | null> {
  const store = deps.run.store;
  const name = memberName(input.group, ordinal);
  const m = (await store.groups.members(input.group)).find((x) => x.ordinal === ordinal);
  if (!m) return null;
  if (m.status !== "removing") await store.groups.setMemberStatus(input.group, ordinal, "removing");
  // A member busy with another workflow (an interruption being recovered, its create) is deleted once that ends.
  return waitUntil(
    deps.run.clock,
    `${name} to accept its delete`,
    async () => {
      const inst = await store.instances.get(name);
      if (!inst) return { id: null };
      const running = await store.workflows.runningFor(name);
      const del = running.find((w) => w.kind === "delete");
      if (del) return { id: del.id };
      try {
        const { workflowId } = await deps.operations.deleteInstance(name, {
          keep: input.keep,
          ttlHours: input.ttlHours,
          byGroup: input.group,
        });
        await store.events.add(
          groupKey(input.group),
          "member-deleting",
          `${name} (${m.privateIp}) is being deleted (workflow ${workflowId})`,
          ctx.workflowId,
        );
        return { id: workflowId };
      } catch (err) {
        if (err instanceof ApiFault && err.kind === "conflict") return null;
        throw err;
      }
    },
    { intervalMs: deps.run.pollMs, timeoutMs: deps.memberTimeoutMs ?? 60 * 60_000, signal: ctx.signal },
  ).then((r) => r.id);
}

export function groupUpdateRunbook(deps: GroupRunbookDeps): Runbook<GroupUpdateInput> {
  const store = deps.run.store;
  return async (ctx, input) => {
    const { group } = input;
    const ordinals = await ctx.step("plan", async () =>
      (await store.groups.members(group)).filter((m) => m.status === "active").map((m) => m.ordinal),
    );
    for (const [i, k] of ordinals.entries()) {
      const name = memberName(group, k);
      const rolled = await ctx.step(`roll ${name}`, () => rollMember(deps, ctx, input, k, `${i + 1} of ${ordinals.length}`), WAIT_POLICY);
      await ctx.step(
        `wait ${name}`,
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
        if (inst.state === "failed" && failedAlive !== null && (await t.workflows.runningFor(name)).length === 0) {
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
        const busy = (await t.workflows.runningFor(name)).find((w) => w.kind !== "snapshot");
        const why =
          inst.state !== "running" || busy
            ? `${name} is ${busy ? `busy with ${busy.kind} ${busy.id}` : inst.state}`
            : await plannedWorkRefusal(t, name);
        if (why) {
          if (why !== lastWait) {
            lastWait = why;
            await t.groups.setState(group, "updating", `rolling ${progress}: waiting: ${why}`);
            await t.events.add(groupKey(group), "roll-waiting", why, ctx.workflowId);
          }
          return null;
        }
        const g = await t.generations.get(name, inst.generation);
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
