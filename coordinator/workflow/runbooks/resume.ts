/**
 * resume: launch a new generation from what a paused (or failed) stateful instance kept: the same
 * ENI and private IP, the same data volumes (reattached in their AZ), the root image. This is the
 * second half of a replacement; nothing of the old generation is running any more (a failed
 * generation's EC2 instance, if any is left, is terminated first).
 *
 *   begin → terminate-leftover → subnets → launch → wait-running → attach each → restore → finish →
 *   [register-targets → wait-targets-healthy] → retention
 *
 * With `attach: secondary` the launch gets its own primary ENI and `attach-eni` moves the stable one.
 */
import { ONCE, type Runbook } from "../engine.js";
import { Failure } from "../failure.js";
import type { RunbookDeps } from "./deps.js";
import {
  attachSteps,
  candidates,
  describeLaunchSubnets,
  LAUNCH_POLICY,
  launchGeneration,
  MUTATE_POLICY,
  plannedVolumes,
  restoreAndWaitReady,
  waitRunning,
} from "./launch.js";
import { waitOldReleased } from "./replace.js";
import { attachStableEni, isSecondary, planEni } from "./secondary.js";
import { applyRetention, deleteKeptRoots, markServing } from "./steps.js";
import { joinTargetGroups } from "./targets.js";

export interface ResumeInput {
  name: string;
  /** The generation the instance had when resume was asked for; the new one is the next. */
  fromGeneration: number;
  /** What resume starts from, for the timeline: paused, or failed (recycle of a failed instance too). */
  from: "paused" | "failed";
}

export function resumeRunbook(deps: RunbookDeps): Runbook<ResumeInput> {
  return async (ctx, input) => {
    const { name } = input;
    const generation = input.fromGeneration + 1;

    // 1. Begin: the kept resources, and the state `resuming`.
    const begin = await ctx.step("begin", async () => {
      const inst = await deps.store.instances.get(name);
      if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
      const [root, net, volumes, previous] = await Promise.all([
        deps.store.root.get(name),
        deps.store.network.get(name),
        deps.store.volumes.list(name),
        deps.store.generations.get(name, input.fromGeneration),
      ]);
      await deps.store.tx(async (t) => {
        await t.instances.setState(name, "resuming", `resume from ${input.from}`);
        await t.generations.ensure(name, generation, ctx.workflowId);
      });
      const leftover = previous && previous.status !== "ended" && previous.ec2InstanceId ? previous.ec2InstanceId : null;
      return {
        spec: inst.spec,
        volumes,
        imageId: inst.spec.persistence.root ? (root?.imageId ?? inst.spec.launch.imageId) : inst.spec.launch.imageId,
        eniId: net?.eniId ?? null,
        eniAz: net?.availabilityZone ?? null,
        privateIp: net?.privateIp ?? null,
        leftover,
      };
    });
    const { spec } = begin;
    const secondary = isSecondary(spec);
    await ctx.event(
      "resume",
      `launching generation ${generation} from ${input.from}: ${[
        begin.eniId ? `ENI ${begin.eniId}` : null,
        ...begin.volumes.map((v) => `${v.device} ${v.volumeId}`),
        `image ${begin.imageId}`,
      ]
        .filter(Boolean)
        .join(", ")}`,
    );

    // 2. A failed generation may have left its EC2 instance running: it must go before its ENI and volumes can move.
    if (begin.leftover) {
      const leftover = begin.leftover;
      await ctx.step("terminate-leftover", () => deps.ec2.terminateInstance(leftover).then(() => true), MUTATE_POLICY);
      await ctx.step(
        "wait-leftover-terminated",
        () =>
          waitOldReleased(deps, ctx, { name, instanceId: leftover, fromGeneration: input.fromGeneration, trigger: "resume" }, begin.eniId),
        MUTATE_POLICY,
      );
    }

    // 3. Launch where the kept resources are (the ENI's AZ, else the volumes' AZ).
    const pinnedAz = begin.eniId ? begin.eniAz : (begin.volumes[0]?.availabilityZone ?? null);
    const subnets = await ctx.step("subnets", () => describeLaunchSubnets(deps, spec), MUTATE_POLICY);
    const launched = await ctx.step(
      "launch",
      () =>
        launchGeneration(deps, ctx, {
          name,
          spec,
          generation,
          imageId: begin.imageId,
          cands: candidates(spec, subnets, pinnedAz, begin.privateIp),
          eniId: secondary ? null : begin.eniId,
          blockDevices: [],
        }),
      LAUNCH_POLICY,
    );
    await ctx.step(
      "wait-running",
      () =>
        waitRunning(deps, ctx, {
          name,
          generation,
          instanceId: launched.instanceId,
          volumesFromSnapshots: [],
          keepsOwnEni: begin.eniId !== null,
        }),
      MUTATE_POLICY,
    );

    // 4. Reattach and restore (the filesystems are checked: the pause may have been crash-consistent).
    const stableEni = secondary ? begin.eniId : null;
    if (stableEni) await ctx.step("attach-eni", () => attachStableEni(deps, ctx, stableEni, launched.instanceId), MUTATE_POLICY);
    await ctx.all(attachSteps(deps, ctx, begin.volumes, launched.instanceId));
    await ctx.step(
      "restore",
      () =>
        restoreAndWaitReady(deps, ctx, {
          name,
          spec,
          generation,
          instanceId: launched.instanceId,
          previousClean: false,
          volumes: plannedVolumes(begin.volumes),
          eni: planEni(spec, begin),
        }),
      ONCE,
    );

    // 5. Serving again.
    await ctx.step("finish", () =>
      markServing(deps, ctx, {
        name,
        generation,
        launched,
        previous: { generation: input.fromGeneration, endReason: input.from },
        how: `resumed from ${input.from}`,
      }),
    );
    if (spec.loadBalancers) await joinTargetGroups(deps, ctx, { lb: spec.loadBalancers, instanceId: launched.instanceId });
    // 6. Roots a failed run left behind (its old instance terminated) go; the image carries the root.
    await ctx.step("delete-old-roots", () => deleteKeptRoots(deps, ctx, { name, except: generation }), MUTATE_POLICY);
    await ctx.step("retention", () => applyRetention(deps, { name, keep: spec.snapshots.keep }), MUTATE_POLICY);
    return { instanceId: launched.instanceId };
  };
}
