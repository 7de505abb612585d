/**
 * The one bring-up and the one retire sequence of a generation. Create, import, replace, resume and
 * the make-before-break cutover run these; none writes the steps out itself.
 *
 *   release:  terminate-old → wait-old-terminated (the old generation's instance gone, its kept ENI
 *             free; before the launch when the new generation needs the ENI or the volumes)
 *   bring-up: launch → wait-running → { attach-eni (the kept ENI when it is not at device index 0)
 *             ‖ attach DEVICE each } → restore → finish → [register-targets → wait-targets-healthy]
 *   retire:   [delete-unready-root] → delete-old-root → retention
 *
 * The cutover launches and waits for its replacement on its own terms (it may fall back before
 * touching the old instance), then moves the ENI and volumes and runs the rest from the attach on
 * (`serveGeneration`). A replacement that boots from snapshots (snapshot mode, or a move to another
 * AZ) has its data volumes from the launch itself and attaches none.
 *
 * Step names are the constants in `STEP` (shared/steps.ts); `RENAMED_STEPS` maps the names earlier versions recorded
 * for the same step functions, so a workflow recorded before an upgrade replays to its end.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { STEP } from "../../../shared/steps.js";
import type { BlockDeviceRequest } from "../../cloud/gateway.js";
import type { DataVolume, NetworkIdentity } from "../../db/store.js";
import { ONCE, type StepDef, step, type WorkflowContext } from "../engine.js";
import { Failure } from "../failure.js";
import { type RunbookDeps, waitUntil } from "./deps.js";
import {
  attachSteps,
  type Candidate,
  candidates,
  describeLaunchSubnets,
  LAUNCH_POLICY,
  type LaunchResult,
  launchGeneration,
  MUTATE_POLICY,
  plannedVolumes,
  restoreAndWaitReady,
  waitRunning,
} from "./launch.js";
import { attachStableEni, isSecondary, planEni } from "./secondary.js";
import { applyRetention, deleteKeptRoots, deleteUnreadyRoot, markServing } from "./steps.js";
import { joinTargetGroups, TARGET_STEP } from "./targets.js";

/** The names of the bring-up and retire steps (shared with the views and the console). */
export { STEP };

/**
 * Names earlier versions recorded for these steps (each runbook had its own copy of the sequence),
 * mapped to the one name each step has now.
 */
export const RENAMED_STEPS: Readonly<Record<string, string>> = {
  "delete-old-roots": STEP.deleteOldRoot, // resume
  "delete-original-root": STEP.deleteOldRoot, // import
  "delete-root": STEP.deleteOldRoot, // pause
  "launch in another AZ": STEP.launch, // replace, when reattach found no capacity in the volumes' AZ
  "terminate-leftover": STEP.terminateOld, // resume, of a failed generation's instance
  "wait-leftover-terminated": STEP.waitOldTerminated, // resume
  terminate: STEP.terminateOld, // pause
  "wait-terminated": STEP.waitOldTerminated, // pause
};

/** What a new generation is launched from, what it gets, and what the timeline says when it serves. */
export interface GenerationPlan {
  name: string;
  spec: StatefulInstanceSpec;
  generation: number;
  imageId: string;
  /**
   * The kept ENI: the launch takes it at device index 0, or (`attach: secondary`) `attach-eni` puts
   * it at index 1 once the instance runs. null: the generation's own primary ENI is its address.
   */
  eni: Pick<NetworkIdentity, "eniId" | "privateIp"> | null;
  /** The data volumes: attached as they are, or (launched from snapshots) the ones the launch made. */
  volumes: DataVolume[];
  /** Whether the previous generation quiesced cleanly (the agent checks the filesystems when not). */
  previousClean: boolean;
  /** The generation this one replaces, ended when this one serves. */
  previous?: { generation: number; endReason: string };
  /** How the `ready` event says it came to serve ("is ready", "replaced i-…"). */
  how: string;
}

/** Where and how to launch: the candidates in fallback order, and volumes made from snapshots at launch. */
export interface LaunchChoice {
  cands: Candidate[];
  blockDevices?: BlockDeviceRequest[];
  /** Distinguishes the ClientTokens of a second launch of the same generation in one workflow. */
  tokenSalt?: string;
}

/** The `launch` step: the spec's fallbacks (instance types, AZs, on-demand) from `choice.cands`. */
export function launchStep(deps: RunbookDeps, ctx: WorkflowContext, plan: GenerationPlan, choice: LaunchChoice): Promise<LaunchResult> {
  return ctx.step(
    STEP.launch,
    () =>
      launchGeneration(deps, ctx, {
        name: plan.name,
        spec: plan.spec,
        generation: plan.generation,
        imageId: plan.imageId,
        cands: choice.cands,
        eniId: isSecondary(plan.spec) ? null : (plan.eni?.eniId ?? null),
        blockDevices: choice.blockDevices ?? [],
        ...(choice.tokenSalt ? { tokenSalt: choice.tokenSalt } : {}),
      }),
    LAUNCH_POLICY,
  );
}

/** The whole bring-up: launch, then everything up to serving (`completeBringUp`). */
export async function bringUp(deps: RunbookDeps, ctx: WorkflowContext, plan: GenerationPlan, choice: LaunchChoice): Promise<LaunchResult> {
  const launched = await launchStep(deps, ctx, plan, choice);
  await completeBringUp(deps, ctx, plan, launched, { volumesFromSnapshots: [] });
  return launched;
}

/**
 * The subnets step (the spec's subnets as EC2 describes them), then the bring-up on the launch
 * candidates in `pinnedAz` (null: every subnet's AZ), `privateIp` when the address is kept.
 */
export async function bringUpIn(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  plan: GenerationPlan,
  where: { pinnedAz: string | null; privateIp?: string | null },
): Promise<LaunchResult> {
  const subnets = await ctx.step(STEP.subnets, () => describeLaunchSubnets(deps, plan.spec), MUTATE_POLICY);
  return bringUp(deps, ctx, plan, { cands: candidates(plan.spec, subnets, where.pinnedAz, where.privateIp ?? null) });
}

/**
 * After the launch: wait-running, then attach, restore, finish and the target groups. With
 * `volumesFromSnapshots` (the devices the launch made from snapshots) nothing is attached and the
 * restore names the volumes the launch made.
 */
export async function completeBringUp(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  plan: GenerationPlan,
  launched: LaunchResult,
  o: { volumesFromSnapshots: string[] },
): Promise<void> {
  const running = await ctx.step(
    STEP.waitRunning,
    () =>
      waitRunning(deps, ctx, {
        name: plan.name,
        generation: plan.generation,
        instanceId: launched.instanceId,
        volumesFromSnapshots: o.volumesFromSnapshots,
        keepsOwnEni: plan.eni?.eniId != null,
      }),
    MUTATE_POLICY,
  );
  await serveGeneration(deps, ctx, plan, launched, { attachVolumes: o.volumesFromSnapshots.length === 0, current: running.volumes });
}

/**
 * From the attach on: the kept ENI (when not at device index 0) and each data volume attached at
 * once, the agent restores and reports ready, the generation serves, and it joins the spec's
 * target groups and is waited for until healthy there.
 */
export async function serveGeneration(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  plan: GenerationPlan,
  launched: LaunchResult,
  o: { attachVolumes: boolean; current?: Record<string, string> },
): Promise<void> {
  const stable = planEni(plan.spec, plan.eni);
  await ctx.all<unknown>([
    ...(stable ? [step(STEP.attachEni, () => attachStableEni(deps, ctx, stable.eniId, launched.instanceId), MUTATE_POLICY)] : []),
    ...(o.attachVolumes ? attachSteps(deps, ctx, plan.volumes, launched.instanceId) : []),
  ]);
  await ctx.step(
    STEP.restore,
    () =>
      restoreAndWaitReady(deps, ctx, {
        name: plan.name,
        spec: plan.spec,
        generation: plan.generation,
        instanceId: launched.instanceId,
        previousClean: plan.previousClean,
        volumes: plannedVolumes(plan.volumes, o.current),
        ...(stable ? { eni: stable } : {}),
      }),
    ONCE,
  );
  await ctx.step(STEP.finish, () =>
    markServing(deps, ctx, {
      name: plan.name,
      generation: plan.generation,
      launched,
      ...(plan.previous ? { previous: plan.previous } : {}),
      how: plan.how,
    }),
  );
  // An import or a cutover recorded by a version that did not register targets goes on without.
  if (plan.spec.loadBalancers && ctx.takesPath(TARGET_STEP.register))
    await joinTargetGroups(deps, ctx, { lb: plan.spec.loadBalancers, instanceId: launched.instanceId });
}

/**
 * What is left of earlier generations once the new one serves: an unready make-before-break
 * replacement's root (once that instance is gone), the roots ended generations kept past their
 * instances' termination, then retention (old images and snapshots, and in snapshot mode the
 * volumes whose data now lives in newer ones).
 */
export async function retire(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: {
    name: string;
    /** The serving generation, whose root stays. */
    serving: number;
    keep: number;
    oldVolumes?: string[];
    unready?: { instanceId: string; rootVolumeId: string } | null;
  },
): Promise<void> {
  const unready = o.unready;
  if (unready)
    await ctx.step(STEP.deleteUnreadyRoot, () => deleteUnreadyRoot(deps, ctx, unready.instanceId, unready.rootVolumeId), MUTATE_POLICY);
  await ctx.step(STEP.deleteOldRoot, () => deleteKeptRoots(deps, ctx, { name: o.name, except: o.serving }), MUTATE_POLICY);
  const oldVolumes = o.oldVolumes ?? [];
  await ctx.step(STEP.retention, () => applyRetention(deps, { name: o.name, keep: o.keep, oldVolumes }), MUTATE_POLICY);
}

/** Terminate the old generation's EC2 instance; its data volumes, kept ENI and root stay (DeleteOnTermination false). */
export function terminateOld(deps: RunbookDeps, ctx: WorkflowContext, instanceId: string): Promise<true> {
  return ctx.step(STEP.terminateOld, () => deps.ec2.terminateInstance(instanceId).then((): true => true), MUTATE_POLICY);
}

/** The step that waits for the old generation's instance to be gone (`waitOldReleased`), for `ctx.step` or `ctx.parallel`. */
export function waitOldTerminated(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  old: { name: string; instanceId: string; fromGeneration: number; trigger: string },
  eniId: string | null,
): StepDef<true> {
  return step(STEP.waitOldTerminated, () => waitOldReleased(deps, ctx, old, eniId), MUTATE_POLICY);
}

/** Wait until the old instance is terminated and (with a persisted ENI) the ENI is free again; its generation ends. */
export async function waitOldReleased(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  input: { name: string; instanceId: string; fromGeneration: number; trigger: string },
  eniId: string | null,
): Promise<true> {
  return waitInstanceReleased(deps, ctx, {
    instanceId: input.instanceId,
    eni: eniId ? { eniId, what: "the stateful instance's network interface" } : null,
    onTerminated: () => deps.store.generations.end(input.name, input.fromGeneration, input.trigger),
  });
}

/**
 * Wait until `instanceId` is terminated (then `onTerminated`), and with `eni` until that network
 * interface is free again; a deleted ENI is a failure of kind resource-lost.
 */
export async function waitInstanceReleased(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { instanceId: string; eni: { eniId: string; what: string } | null; onTerminated?: () => Promise<unknown> },
): Promise<true> {
  await waitUntil(
    deps.clock,
    `${o.instanceId} to terminate`,
    async () => {
      const [i] = await deps.ec2.describeInstances([o.instanceId]);
      return !i || i.state === "terminated" ? true : null;
    },
    { intervalMs: deps.pollMs / 2, timeoutMs: 15 * 60_000, signal: ctx.signal, grid: true },
  );
  await o.onTerminated?.();
  // The ENI comes free a little after `terminated`; launching before that only earns
  // InvalidNetworkInterface.InUse and a backoff, so watch it closely instead.
  const eni = o.eni;
  if (eni) {
    await waitUntil(
      deps.clock,
      `${eni.eniId} to be released by ${o.instanceId}`,
      async () => {
        const e = await deps.ec2.describeNetworkInterface(eni.eniId);
        if (!e) throw new Failure("resource-lost", `${eni.eniId} (${eni.what}) no longer exists`);
        return e.status === "available" ? true : null;
      },
      { intervalMs: deps.pollMs / 4, timeoutMs: 10 * 60_000, signal: ctx.signal, grid: true },
    );
  }
  return true;
}
