/**
 * replace: bring a stateful instance back on a new EC2 instance after a spot interruption, or
 * after its instance was lost without notice (then quiesce and the live captures are skipped:
 * recovery starts from the point after capture). The same runbook, with trigger `recycle`, is a
 * planned replacement of a running instance (an operator's recycle, a spec update applied now, a
 * move back to spot): quiesce first, then the same path, with the state `recycling`.
 *
 *   begin → quiesce → capture → terminate-old → { wait-old-terminated ‖ image ‖ wait-snapshots } →
 *   subnets → bring-up → retire
 *
 * (runbooks/generation.ts: bring-up = launch → wait-running → attach (reattach) → restore (ready) →
 * finish → [register-targets → wait-targets-healthy]; retire = [delete-unready-root] →
 * delete-old-root → retention.)
 *
 * Lost: begin → terminate-old → wait-old-terminated → snapshot-lost-root (the root volume outlives
 * its instance) → { image ‖ wait-snapshots } → subnets → … the same from there.
 *
 * With `loadBalancers`: deregister-targets → drain-targets before quiesce (lost: no drain); the
 * bring-up registers the new generation (runbooks/targets.ts).
 *
 * `attach: secondary` (not lost, agent answering): make-before-break first (cutover.ts); only when
 * the replacement is not ready in time does the run go on with the path above, where the launch gets
 * its own primary ENI and the bring-up's `attach-eni` moves the stable ENI (device index 1) once the
 * old one is gone.
 */
import { STEP_OF } from "../../../shared/steps.js";
import { moveState } from "../../lifecycle.js";
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { classify, errorCode } from "../../cloud/errors.js";
import { TAG } from "../../cloud/gateway.js";
import type { DataVolume } from "../../db/store.js";
import { ONCE, type Runbook, step, type StepDef, type WorkflowContext } from "../engine.js";
import { Failure, failureKind } from "../failure.js";
import type { RunbookDeps } from "./deps.js";
import { makeBeforeBreak } from "./cutover.js";
import { completeBringUp, type GenerationPlan, launchStep, retire, STEP, terminateOld, waitOldTerminated } from "./generation.js";
import {
  candidates,
  clientToken,
  describeLaunchSubnets,
  type LaunchResult,
  MUTATE_POLICY,
  requireVolumeId,
  volumesFromSnapshots,
} from "./launch.js";
import { isSecondary } from "./secondary.js";
import {
  quiesceInstance,
  registerRootImage,
  resourceTags,
  snapshotDataVolume,
  snapshotLostRoot,
  snapshotRoot,
  type TakenSnapshot,
  waitForSnapshots,
} from "./steps.js";
import { leaveTargetGroups } from "./targets.js";

export type ReplaceTrigger = "spot-interruption" | "lost" | "recycle";

export interface ReplaceInput {
  name: string;
  /** The generation being replaced and its EC2 instance. */
  fromGeneration: number;
  instanceId: string;
  trigger: ReplaceTrigger;
  /** When the old instance goes away (ISO, wall clock), from a confirmed notice. */
  deadline?: string;
  /** Recycle only: why (shown on the timeline). */
  reason?: string;
  /**
   * Set when the notice came from the EventBridge queue while the instance's agent was not
   * answering: why quiesce is skipped (decided once, at the start, so a replay takes the same path).
   */
  skipQuiesce?: string;
  /**
   * Recycle only: a move back to spot. The run first checks that spot capacity exists (a
   * short-lived probe launch) and ends without touching the instance when there is none.
   */
  revertToSpot?: boolean;
}

/** The longest notice EC2 gives: a deadline further away than this is not believed. */
export const MAX_NOTICE_MS = 120_000;

/** What the runbook knows about the instance when it begins (recorded, so a replay sees the same). */
interface Begin {
  spec: StatefulInstanceSpec;
  volumes: DataVolume[];
  rootDeviceName: string;
  architecture: string;
  previousImage: string;
  eniId: string | null;
  eniAz: string | null;
  privateIp: string | null;
}

export function replaceRunbook(deps: RunbookDeps): Runbook<ReplaceInput> {
  return async (ctx, input) => {
    const { name, instanceId: oldId } = input;
    const lost = input.trigger === "lost";
    const generation = input.fromGeneration + 1;

    if (input.revertToSpot) {
      const probe = await ctx.step(STEP.probeSpotCapacity, () => probeSpotCapacity(deps, ctx, name), MUTATE_POLICY);
      if (!probe.instanceType) {
        await ctx.event("revert-to-spot", `no spot capacity (${probe.tried.join("; ")}); the on-demand instance ${oldId} keeps serving`);
        return { reverted: false };
      }
      await ctx.event(
        "revert-to-spot",
        `spot capacity for ${probe.instanceType} in ${probe.availabilityZone}: recycling ${oldId} onto spot`,
      );
    }
    const begin = await ctx.step(STEP.begin, () => beginReplacement(deps, ctx, input, generation));
    const { spec } = begin;
    const secondary = isSecondary(spec);
    let unready: { instanceId: string; rootVolumeId: string } | null = null;
    if (secondary && !lost && !input.skipQuiesce && begin.eniId && begin.eniAz && begin.privateIp) {
      const outcome = await makeBeforeBreak(
        deps,
        ctx,
        { ...input, trigger: input.trigger === "recycle" ? "recycle" : "spot-interruption" },
        {
          spec,
          volumes: begin.volumes,
          imageId: spec.launch.imageId,
          eniId: begin.eniId,
          eniAz: begin.eniAz,
          privateIp: begin.privateIp,
        },
        generation,
      );
      if (outcome.done) return { instanceId: outcome.instanceId };
      unready = outcome.unready;
    }
    const snapshotMode = spec.persistence.dataMethod === "snapshot" && begin.volumes.length > 0;
    const dataSnapshots = (prefix: string): StepDef<TakenSnapshot>[] =>
      begin.volumes.map((v) =>
        step(
          STEP_OF.snapshot(v.device, prefix),
          () =>
            snapshotDataVolume(deps, ctx, {
              name,
              device: v.device,
              volumeId: requireVolumeId(v),
              generation: input.fromGeneration,
              why: `generation ${input.fromGeneration}`,
              step: `${prefix}snapshot ${v.device}`,
              userTags: spec.launch.tags,
            }),
          MUTATE_POLICY,
        ),
      );

    // 1. Out of the load balancers first (drained within half of what the notice leaves), then
    //    quiesce inside the notice window, leaving a margin for the capture calls.
    if (spec.loadBalancers)
      await leaveTargetGroups(deps, ctx, {
        lb: spec.loadBalancers,
        instanceId: oldId,
        drain: !lost,
        budgetMs: () => (input.deadline ? (deps.clock.modelMsUntil(Date.parse(input.deadline)) - deps.quiesceMarginMs) / 2 : Infinity),
      });
    const clean = lost ? false : await ctx.step(STEP.quiesce, () => quiesceOld(deps, ctx, input, spec), ONCE);

    // 2. Capture while the old instance still exists: the root, and the data volumes in snapshot mode.
    let rootSnapshot: string | null = null;
    let snapshots: TakenSnapshot[] = [];
    if (!lost) {
      const captureRoot = spec.persistence.root
        ? [
            step(
              STEP.snapshotRoot,
              async () => {
                const snapshotId = await snapshotRoot(deps, ctx, {
                  name,
                  ec2InstanceId: oldId,
                  rootDeviceName: begin.rootDeviceName,
                  generation: input.fromGeneration,
                  fallbackImage: begin.previousImage,
                  userTags: spec.launch.tags,
                });
                return { device: begin.rootDeviceName, snapshotId };
              },
              MUTATE_POLICY,
            ),
          ]
        : [];
      const captured = await ctx.all<{ device: string; snapshotId: string | null }>([
        ...captureRoot,
        ...(snapshotMode ? dataSnapshots("") : []),
      ]);
      rootSnapshot = spec.persistence.root ? (captured[0]?.snapshotId ?? null) : null;
      snapshots = captured.slice(captureRoot.length).filter((c): c is TakenSnapshot => c.snapshotId !== null);
    }

    // 3. Release early: terminate the old instance ourselves so its ENI and volumes come free.
    await terminateOld(deps, ctx, oldId);

    const waitOld = waitOldTerminated(deps, ctx, input, begin.eniId);
    const image = () =>
      step(
        STEP.image,
        async () =>
          rootSnapshot
            ? registerRootImage(deps, ctx, {
                name,
                rootSnapshotId: rootSnapshot,
                rootDeviceName: begin.rootDeviceName,
                architecture: begin.architecture,
                userTags: spec.launch.tags,
                generation,
              })
            : null,
        MUTATE_POLICY,
      );
    const waitSnapshots = (taken: TakenSnapshot[], prefix = "") =>
      step(STEP_OF.waitSnapshots(prefix), () => waitForSnapshots(deps, ctx, name, taken), MUTATE_POLICY);

    // 4. Wait for the old instance to go (and register the root image meanwhile).
    let newImage: string | null;
    if (lost) {
      await ctx.step(waitOld.name, waitOld.run, waitOld.policy);
      // Lost in snapshot mode: the data volumes outlive the instance, so capture them now that it is gone.
      if (snapshotMode) snapshots = await ctx.all(dataSnapshots(""));
      // Its root volume outlived it too (DeleteOnTermination false): capture it, crash-consistently.
      if (spec.persistence.root)
        rootSnapshot = await ctx.step(
          STEP.snapshotLostRoot,
          () =>
            snapshotLostRoot(deps, ctx, {
              name,
              ec2InstanceId: oldId,
              rootDeviceName: begin.rootDeviceName,
              generation: input.fromGeneration,
              fallbackImage: begin.previousImage,
              userTags: spec.launch.tags,
            }),
          MUTATE_POLICY,
        );
      [newImage] = await ctx.parallel(image(), waitSnapshots(snapshots));
    } else {
      [, newImage] = await ctx.parallel(waitOld, image(), waitSnapshots(snapshots));
    }

    // 5. Launch with the same ENI (its AZ pins the launch) or, for reattach, in the volumes' AZ.
    const imageId = spec.persistence.root ? (newImage ?? begin.previousImage) : spec.launch.imageId;
    const pinnedAz = begin.eniId ? begin.eniAz : !snapshotMode && begin.volumes.length > 0 ? begin.volumes[0]?.availabilityZone : null;
    const subnets = await ctx.step(STEP.subnets, () => describeLaunchSubnets(deps, spec), MUTATE_POLICY);
    const plan: GenerationPlan = {
      name,
      spec,
      generation,
      imageId,
      eni: begin.eniId ? { eniId: begin.eniId, privateIp: begin.privateIp } : null,
      volumes: begin.volumes,
      previousClean: clean,
      previous: { generation: input.fromGeneration, endReason: input.trigger },
      how: `replaced ${oldId}`,
    };

    let crossAz = false;
    let launched: LaunchResult;
    try {
      launched = await launchStep(deps, ctx, plan, {
        cands: candidates(spec, subnets, pinnedAz ?? null, begin.privateIp),
        blockDevices: snapshotMode ? volumesFromSnapshots(spec, snapshots) : [],
      });
    } catch (err) {
      // Reattach pins the volumes' AZ. When that AZ has no capacity (and no ENI pins it too), move
      // the data through snapshots to another AZ. The failure kind survives a replay, so a resumed
      // run takes the same branch.
      const otherAzs = subnets.filter((s) => s.availabilityZone !== pinnedAz);
      if (failureKind(err) !== "no-capacity" || snapshotMode || begin.eniId || begin.volumes.length === 0 || otherAzs.length === 0)
        throw err;
      crossAz = true;
      await ctx.event("cross-az", `no capacity in ${pinnedAz} for reattach; restoring the data volumes from snapshots in another AZ`);
      snapshots = await ctx.all(dataSnapshots("cross-az "));
      await ctx.step(waitSnapshots(snapshots, "cross-az ").name, waitSnapshots(snapshots, "cross-az ").run, MUTATE_POLICY);
      launched = await launchStep(deps, ctx, plan, {
        cands: candidates(spec, otherAzs, null, begin.privateIp),
        blockDevices: volumesFromSnapshots(spec, snapshots),
      });
    }
    const fromSnapshots = snapshotMode || crossAz;

    // 6. Attach (reattach), restore; the new generation serves.
    await completeBringUp(deps, ctx, plan, launched, { volumesFromSnapshots: fromSnapshots ? begin.volumes.map((v) => v.device) : [] });

    // 7. The old root volume (kept past its instance's termination, captured above when needed) goes,
    //    and an unready make-before-break replacement's root once that instance is gone; retention:
    //    snapshot mode's old volumes (their data now lives in the new ones), old images and snapshots.
    const oldVolumes = fromSnapshots ? begin.volumes.map((v) => v.volumeId).filter((v): v is string => !!v) : [];
    await retire(deps, ctx, { name, serving: generation, keep: spec.snapshots.keep, oldVolumes, unready });
    return { instanceId: launched.instanceId };
  };
}

/**
 * Whether spot capacity exists where the instance must run (the AZ its ENI or volumes pin), tried
 * type by type with a short-lived probe launch (RunInstances, then TerminateInstances at once):
 * EC2 has no other definitive capacity check. Safe to re-run: the ClientToken returns the same
 * probe, and terminating it again is a no-op.
 */
async function probeSpotCapacity(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  name: string,
): Promise<{ instanceType: string | null; availabilityZone: string | null; tried: string[] }> {
  const inst = await deps.store.instances.get(name);
  if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
  const [net, volumes] = await Promise.all([deps.store.network.get(name), deps.store.volumes.list(name)]);
  const az = net?.eniId ? net.availabilityZone : (volumes[0]?.availabilityZone ?? null);
  const subnets = (await describeLaunchSubnets(deps, inst.spec)).filter((s) => !az || s.availabilityZone === az);
  const tried: string[] = [];
  for (const subnet of subnets)
    for (const instanceType of inst.spec.launch.instanceTypes) {
      try {
        const probe = await deps.ec2.launchInstance({
          clientToken: clientToken(ctx.workflowId, "probe", instanceType, subnet.subnetId),
          imageId: inst.spec.launch.imageId,
          instanceType,
          market: "spot",
          maxPrice: inst.spec.launch.market.maxPrice,
          network: { subnetId: subnet.subnetId, securityGroupIds: inst.spec.launch.securityGroupIds },
          userData: "",
          blockDevices: [],
          tags: resourceTags(ctx, name, "probe-spot-capacity", { [TAG.probe]: "true", Name: `${name}-spot-probe` }),
        });
        await deps.ec2.terminateInstance(probe.instanceId);
        return { instanceType, availabilityZone: subnet.availabilityZone, tried };
      } catch (err) {
        if (classify(err) !== "capacity") throw err;
        tried.push(`${instanceType} in ${subnet.availabilityZone}: ${errorCode(err)}`);
      }
    }
  return { instanceType: null, availabilityZone: null, tried };
}

async function beginReplacement(deps: RunbookDeps, ctx: WorkflowContext, input: ReplaceInput, generation: number): Promise<Begin> {
  const inst = await deps.store.instances.get(input.name);
  if (!inst) throw new Failure("resource-lost", `stateful instance ${input.name} no longer exists`);
  const [root, net, volumes] = await Promise.all([
    deps.store.root.get(input.name),
    deps.store.network.get(input.name),
    deps.store.volumes.list(input.name),
  ]);
  await deps.store.tx(async (t) => {
    const why =
      input.trigger === "recycle"
        ? `recycle of ${input.instanceId}: ${input.reason ?? "requested"}`
        : `${input.trigger} of ${input.instanceId}`;
    await moveState(t, input.trigger === "recycle" ? "recycle" : "replace", input.name, "during", why);
    await t.generations.ensure(input.name, generation, ctx.workflowId);
  });
  return {
    spec: inst.spec,
    volumes,
    rootDeviceName: root?.rootDeviceName ?? "/dev/xvda",
    architecture: root?.architecture ?? "x86_64",
    previousImage: root?.imageId ?? inst.spec.launch.imageId,
    eniId: net?.eniId ?? null,
    eniAz: net?.availabilityZone ?? null,
    privateIp: net?.privateIp ?? null,
  };
}

/** Ask the old instance's agent to quiesce; false (crash-consistent from here on) when it does not answer in time. */
async function quiesceOld(deps: RunbookDeps, ctx: WorkflowContext, input: ReplaceInput, spec: StatefulInstanceSpec): Promise<boolean> {
  if (input.skipQuiesce) {
    await ctx.event("quiesce-skipped", `${input.skipQuiesce}; capturing ${input.instanceId} crash-consistently while it still exists`);
    return false;
  }
  // A planned recycle has no notice deadline: the hooks' own timeout (plus sync and freeze) bounds it.
  const hooksMs = (spec.hooks.timeoutSeconds + 30) * 1000;
  const noticeMs = input.deadline ? Math.min(deps.clock.modelMsUntil(Date.parse(input.deadline)), MAX_NOTICE_MS) : MAX_NOTICE_MS;
  const budgetMs = input.trigger === "recycle" ? hooksMs : Math.max(1000, Math.min(noticeMs - deps.quiesceMarginMs, hooksMs));
  const reason = input.trigger === "recycle" ? `recycle (${input.reason ?? "requested"})` : `spot interruption (${input.trigger})`;
  return quiesceInstance(deps, ctx, { instanceId: input.instanceId, reason, budgetMs });
}
