/**
 * group-scale (also a group's create, and with removeGroup its delete):
 *
 *   plan → (allocate M → create M) each new member → wait M ready ‖ …
 *        → delete M each removed member (highest ordinal first) → wait M deleted ‖ … → release M each
 *        [→ remove-group]
 *
 * `allocate` claims the next free pool address (free in EC2 too) in the AZ with the fewest members;
 * `create` records the member and starts its create runbook with that address; `release` returns a
 * deleted member's address to the pool.
 */
import { STEP, STEP_OF } from "../../shared/steps.js";
import { insertedAs } from "../lifecycle.js";
import { memberName } from "../../shared/group-spec.js";
import type { StatefulInstanceSpec } from "../../shared/spec.js";
import { isRefusal } from "../refusal.js";
import { taskKey } from "../tasks.js";
import { type Runbook, step, type WorkflowContext } from "../workflow/engine.js";
import { Failure } from "../workflow/failure.js";
import { waitUntil } from "../workflow/runbooks/deps.js";
import { describeLaunchSubnets } from "../workflow/runbooks/launch.js";
import { addressCandidates, firstFreeAddress } from "./pool.js";
import {
  EC2_POLICY,
  type GroupRunbookDeps,
  type GroupScaleInput,
  groupKey,
  loadGroup,
  STORE_POLICY,
  WAIT_POLICY,
  waitWorkflow,
} from "./runbooks.js";

export function groupScaleRunbook(deps: GroupRunbookDeps): Runbook<GroupScaleInput> {
  const store = deps.run.store;
  return async (ctx, input) => {
    const { group, to } = input;
    const plan = await ctx.step(STEP.plan, async () => {
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
      await ctx.step(STEP_OF.allocateMember(name), () => allocate(deps, ctx, group, k), EC2_POLICY);
      const wf = await ctx.step(STEP_OF.createMember(name), () => createMember(deps, ctx, group, k), STORE_POLICY);
      created.push({ ordinal: k, workflowId: wf });
    }
    await ctx.all(
      created.map((c) =>
        step(
          STEP_OF.waitMemberReady(memberName(group, c.ordinal)),
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
      const wf = await ctx.step(STEP_OF.deleteMember(name), () => deleteMember(deps, ctx, input, k), WAIT_POLICY);
      deleting.push({ ordinal: k, workflowId: wf });
    }
    await ctx.all(
      deleting.map((d) =>
        step(
          STEP_OF.waitMemberDeleted(memberName(group, d.ordinal)),
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
        STEP_OF.releaseMember(name),
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
        STEP.removeGroup,
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
    await t.instances.insert(name, spec, insertedAs("create"));
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
        if (isRefusal(err) && err.kind === "conflict") return null;
        throw err;
      }
    },
    { intervalMs: deps.run.pollMs, timeoutMs: deps.memberTimeoutMs ?? 60 * 60_000, signal: ctx.signal },
  ).then((r) => r.id);
}
