/**
 * Make-before-break, the replace runbook's path for `persistence.network.attach: secondary` (spot
 * interruption, onRebalance: recycle, recycle): the replacement launches at once with its own
 * primary ENI in the stable ENI's AZ and boots while the old instance keeps serving; only then is
 * the old one quiesced and the data volumes and the stable ENI moved.
 *
 *   mbb-subnets → mbb-launch → mbb-wait-ready (running, its agent waiting in restore mode) →
 *   [deregister-targets → drain-targets] → cutover-quiesce (preStop, sync, unmount, ENI released) →
 *   { detach-eni ‖ detach DEVICE each } → { attach-eni ‖ attach DEVICE each } → restore (ENI
 *   configured, mount, postRestore, ready) → finish → [register-targets → wait-targets-healthy] →
 *   terminate-old → delete-old-root → retention
 *
 * From the attach on this is the bring-up, and from delete-old-root the retire, of
 * runbooks/generation.ts.
 *
 * Downtime is quiesce + detach + attach + mount (with target groups, the drain comes before it).
 * When the replacement is not ready in time (no capacity, a boot that does not come up, the notice
 * deadline minus the quiesce margin and the cutover's own reserve reached) nothing has been touched
 * on the old instance: the unready replacement is terminated (its root volume deleted once it is
 * gone) and the caller goes on with break-before-make. Every step is safe to re-run (attached already = done, detached already = done).
 */
import { STEP_OF } from "../../../shared/steps.js";
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import type { DataVolume } from "../../db/store.js";
import { ONCE, step, type WorkflowContext } from "../engine.js";
import { Failure, failureKind } from "../failure.js";
import { agentReportWake, type RunbookDeps, waitUntil } from "./deps.js";
import { retire, STEP, serveGeneration, terminateOld } from "./generation.js";
import {
  candidates,
  describeLaunchSubnets,
  LAUNCH_POLICY,
  type LaunchResult,
  launchGeneration,
  MUTATE_POLICY,
  requireVolumeId,
  waitRunning,
  bootFailure,
} from "./launch.js";
import { detachDataVolume, detachStableEni } from "./secondary.js";
import { askAgent } from "./steps.js";
import { leaveTargetGroups, TARGET_STEP } from "./targets.js";

/** Model ms kept free before the notice deadline (beyond the quiesce margin) for quiesce, detach, attach and mount. */
export const CUTOVER_RESERVE_MS = 30_000;
/** With no notice deadline (a planned recycle), how long the replacement may take to be ready. */
export const RECYCLE_READY_BUDGET_MS = 10 * 60_000;

export interface CutoverInput {
  name: string;
  fromGeneration: number;
  instanceId: string;
  trigger: "spot-interruption" | "recycle";
  deadline?: string;
  reason?: string;
}

export interface CutoverBegin {
  spec: StatefulInstanceSpec;
  volumes: DataVolume[];
  imageId: string;
  eniId: string;
  eniAz: string;
  privateIp: string;
}

/**
 * Not done: the caller goes on with break-before-make. `unready` names the unready replacement whose
 * root volume is still to be deleted once that instance is gone (the caller does it after its own
 * replacement serves, so the wait for the termination is not on the recovery's critical path).
 */
export type CutoverOutcome =
  | { done: true; instanceId: string }
  | { done: false; reason: string; unready: { instanceId: string; rootVolumeId: string } | null };

/** The longest notice EC2 gives (mirrors replace.ts; a deadline further away is not believed). */
const MAX_NOTICE_MS = 120_000;

export async function makeBeforeBreak(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  input: CutoverInput,
  begin: CutoverBegin,
  generation: number,
): Promise<CutoverOutcome> {
  const { name, instanceId: oldId } = input;
  const { spec } = begin;
  await ctx.event("make-before-break", `launching generation ${generation} in ${begin.eniAz} while ${oldId} keeps serving`);

  // 1. Launch now, beside the old instance: its own primary ENI, in the stable ENI's AZ.
  const subnets = await ctx.step(STEP.mbbSubnets, () => describeLaunchSubnets(deps, spec), MUTATE_POLICY);
  let launched: LaunchResult | null = null;
  let notReady: string | null = null;
  try {
    launched = await ctx.step(
      STEP.mbbLaunch,
      () =>
        launchGeneration(deps, ctx, {
          name,
          spec,
          generation,
          imageId: begin.imageId,
          cands: candidates(spec, subnets, begin.eniAz),
          eniId: null,
          blockDevices: [],
          tokenSalt: "make-before-break",
        }),
      LAUNCH_POLICY,
    );
  } catch (err) {
    if (failureKind(err) !== "no-capacity") throw err;
    notReady = `no capacity for the replacement: ${(err as Error).message}`;
  }

  // 2. Ready to take over: running, and its agent connected in restore mode (the deadline bounds the wait).
  let ready: { ready: true } | { ready: false; why: string } = { ready: false, why: notReady ?? "" };
  if (launched) {
    const newId = launched.instanceId;
    ready = await ctx.step(
      STEP.mbbWaitReady,
      () => waitTakeoverReady(deps, ctx, { name, generation, instanceId: newId, input }),
      MUTATE_POLICY,
    );
  }
  if (!ready.ready) {
    const why = ready.why;
    let pending: { instanceId: string; rootVolumeId: string } | null = null;
    if (launched) {
      const unready = launched.instanceId;
      const root = await ctx.step(STEP.mbbTerminateUnready, () => terminateUnready(deps, unready), MUTATE_POLICY);
      // A workflow recorded before this step deferred its wait records `true` (it waited here).
      const now = (await ctx.step(STEP.mbbDeleteUnreadyRoot, () => deleteUnreadyRootIfFree(deps, root.rootVolumeId), MUTATE_POLICY)) as
        | { pending: string | null }
        | true;
      if (now !== true && now.pending) pending = { instanceId: unready, rootVolumeId: now.pending };
    }
    await ctx.event("make-before-break", `${why}; falling back to break-before-make (nothing on ${oldId} was touched)`);
    return { done: false, reason: why, unready: pending };
  }
  const newId = launched!.instanceId;
  await ctx.event("make-before-break", `${newId} is ready to take over; cutting over from ${oldId}`);

  // 3. Out of the load balancers (drained within what the notice leaves before the cutover's own
  //    reserve), then quiesce the old instance for good: preStop, sync, unmount, the stable ENI
  //    released. A cutover recorded by a version that did not deregister goes on without.
  if (spec.loadBalancers && ctx.takesPath(TARGET_STEP.deregister))
    await leaveTargetGroups(deps, ctx, {
      lb: spec.loadBalancers,
      instanceId: oldId,
      budgetMs: () => drainBudgetMs(deps, input),
    });
  const quiesced = await ctx.step(STEP.cutoverQuiesce, () => quiesceForCutover(deps, ctx, input, begin), ONCE);

  // 4. Move the ENI and the volumes: detach all (in parallel); the bring-up attaches them all.
  const forceAfterMs = forceBudgetMs(deps, input);
  await ctx.all([
    step(STEP.detachEni, () => detachStableEni(deps, ctx, { eniId: begin.eniId, instanceId: oldId, forceAfterMs }), MUTATE_POLICY),
    ...begin.volumes.map((v) =>
      step(
        STEP_OF.detach(v.device),
        () => detachDataVolume(deps, ctx, { volumeId: requireVolumeId(v), device: v.device, instanceId: oldId, forceAfterMs }),
        MUTATE_POLICY,
      ),
    ),
  ]);
  // 5. The replacement gets the ENI and the volumes, configures the ENI, mounts, runs postRestore,
  //    reports ready and serves (and joins the target groups).
  await serveGeneration(
    deps,
    ctx,
    {
      name,
      spec,
      generation,
      imageId: begin.imageId,
      eni: { eniId: begin.eniId, privateIp: begin.privateIp },
      volumes: begin.volumes,
      previousClean: quiesced.clean,
      previous: { generation: input.fromGeneration, endReason: input.trigger },
      how: `took over from ${oldId} (make-before-break)`,
    },
    launched!,
    { attachVolumes: true },
  );

  // 6. The old instance goes last; then its kept root volume and retention.
  await terminateOld(deps, ctx, oldId);
  await retire(deps, ctx, { name, serving: generation, keep: spec.snapshots.keep });
  return { done: true, instanceId: newId };
}

/** Wall-clock ms by which the replacement must be ready: the notice deadline minus the quiesce margin and the cutover reserve. */
function readyBy(deps: RunbookDeps, input: CutoverInput): number {
  if (input.trigger === "recycle") return deps.clock.wallAfter(RECYCLE_READY_BUDGET_MS);
  // A notice without a deadline is taken as the longest EC2 gives, from now.
  const latest = deps.clock.wallAfter(MAX_NOTICE_MS);
  const deadline = input.deadline ? Math.min(Date.parse(input.deadline), latest) : latest;
  const reserveWall = deps.clock.wallAfter(deps.quiesceMarginMs + CUTOVER_RESERVE_MS) - deps.clock.now();
  return deadline - reserveWall;
}

/**
 * Waits until the replacement runs and its agent said hello in restore mode, or until the ready-by
 * time. Never throws for "not ready": the answer is recorded so a replay takes the same branch.
 */
async function waitTakeoverReady(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { name: string; generation: number; instanceId: string; input: CutoverInput },
): Promise<{ ready: true } | { ready: false; why: string }> {
  const by = readyBy(deps, o.input);
  const budget = () => Math.max(0, deps.clock.modelMsUntil(by));
  try {
    await waitUntil(
      deps.clock,
      `${o.instanceId} to be running`,
      async () => {
        const [i] = await deps.ec2.describeInstances([o.instanceId]);
        if (i && (i.state === "shutting-down" || i.state === "terminated"))
          throw new Failure("resource-lost", `${o.instanceId} went ${i.state} while starting (${i.stateReason ?? "no reason given"})`);
        return i?.state === "running" ? true : null;
      },
      { intervalMs: deps.pollMs / 2, timeoutMs: budget(), signal: ctx.signal },
    );
    // Running: records the generation's launch (returns at once).
    await waitRunning(deps, ctx, {
      name: o.name,
      generation: o.generation,
      instanceId: o.instanceId,
      volumesFromSnapshots: [],
      keepsOwnEni: true,
    });
    await waitUntil(
      deps.clock,
      `${o.instanceId}'s agent to wait in restore mode`,
      async () => {
        const boot = await bootFailure(deps, o.instanceId);
        if (boot) throw new Failure("agent-failed", boot);
        return (await deps.store.agentReports.get(o.instanceId, "hello", "restore")) ? true : null;
      },
      {
        // Woken when the report is recorded; without a signal, poll often.
        intervalMs: deps.onAgentReport ? deps.pollMs : Math.max(20, deps.pollMs / 10),
        timeoutMs: budget(),
        signal: ctx.signal,
        wake: agentReportWake(deps, o.instanceId),
      },
    );
    return { ready: true };
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    const kind = failureKind(err);
    if (kind === "timeout") return { ready: false, why: `the replacement ${o.instanceId} was not ready to take over in time` };
    if (kind === "resource-lost") return { ready: false, why: `the replacement ${o.instanceId} did not start: ${(err as Error).message}` };
    if (kind === "agent-failed") return { ready: false, why: `the replacement ${(err as Error).message}` };
    throw err;
  }
}

/** Ask the old agent for the final quiesce (unmount + ENI release) within what is left of the notice. */
async function quiesceForCutover(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  input: CutoverInput,
  begin: CutoverBegin,
): Promise<{ clean: boolean; eniReleased: boolean }> {
  const hooksMs = (begin.spec.hooks.timeoutSeconds + 30) * 1000;
  const noticeMs = input.deadline ? Math.min(deps.clock.modelMsUntil(Date.parse(input.deadline)), MAX_NOTICE_MS) : MAX_NOTICE_MS;
  const budgetMs = input.trigger === "recycle" ? hooksMs : Math.max(1000, Math.min(noticeMs - deps.quiesceMarginMs, hooksMs));
  const reason = input.trigger === "recycle" ? `recycle (${input.reason ?? "requested"})` : "spot interruption";
  const report = await askAgent<{ clean: boolean; network?: { ok: boolean; reason?: string } }>(deps, ctx, {
    instanceId: input.instanceId,
    command: {
      type: "quiesce",
      reason: `${reason}: make-before-break cutover`,
      deadline: new Date(deps.clock.wallAfter(budgetMs)).toISOString(),
      unmount: true,
      releaseEni: { eniId: begin.eniId, privateIp: begin.privateIp },
    },
    commandId: `cutover-quiesce-${ctx.workflowId}`,
    reportKind: "quiesced",
    budgetMs,
  });
  if (!report) {
    await ctx.event(
      "quiesce-timeout",
      `${input.instanceId} did not report quiesced within ${Math.round(budgetMs / 1000)} s; moving its volumes crash-consistently (filesystems are checked)`,
    );
    return { clean: false, eniReleased: false };
  }
  if (report.network && !report.network.ok)
    await ctx.event("eni-release", `${input.instanceId} could not release ${begin.eniId}: ${report.network.reason ?? "no reason given"}`);
  return { clean: report.clean, eniReleased: report.network?.ok ?? false };
}

/**
 * How long the old instance may drain out of its target groups: what the notice leaves before the
 * quiesce margin and the cutover's own reserve (a planned recycle: the group's draining time alone).
 */
function drainBudgetMs(deps: RunbookDeps, input: CutoverInput): number {
  if (input.trigger === "recycle") return Number.POSITIVE_INFINITY;
  const left = input.deadline ? Math.min(deps.clock.modelMsUntil(Date.parse(input.deadline)), MAX_NOTICE_MS) : MAX_NOTICE_MS;
  return Math.max(0, left - deps.quiesceMarginMs - CUTOVER_RESERVE_MS);
}

/** How long a normal detach may take before Force: what is left before the deadline's margin, at least 5 s, at most 60 s. */
function forceBudgetMs(deps: RunbookDeps, input: CutoverInput): number {
  if (input.trigger === "recycle") return 60_000;
  const left =
    (input.deadline ? Math.min(deps.clock.modelMsUntil(Date.parse(input.deadline)), MAX_NOTICE_MS) : MAX_NOTICE_MS) - deps.quiesceMarginMs;
  return Math.min(60_000, Math.max(5_000, left));
}

async function terminateUnready(deps: RunbookDeps, instanceId: string): Promise<{ rootVolumeId: string | null }> {
  const [inst] = await deps.ec2.describeInstances([instanceId]);
  const root = inst?.volumes.find((v) => v.deviceName === inst.rootDeviceName)?.volumeId ?? null;
  await deps.ec2.terminateInstance(instanceId);
  return { rootVolumeId: root };
}

/**
 * The unready replacement's root volume, deleted now when it is already free; otherwise it is named
 * as pending (its instance is still shutting down) and deleted by `deleteUnreadyRoot` later.
 */
async function deleteUnreadyRootIfFree(deps: RunbookDeps, volumeId: string | null): Promise<{ pending: string | null }> {
  if (!volumeId) return { pending: null };
  const v = await deps.ec2.describeVolume(volumeId);
  if (!v || v.state === "deleting" || v.state === "deleted") return { pending: null };
  if (v.attachments.length === 0 && v.state === "available") {
    await deps.ec2.deleteVolume(volumeId);
    return { pending: null };
  }
  return { pending: volumeId };
}
