/**
 * resume: launch a new generation from what a paused (or failed) stateful instance kept: the same
 * ENI and private IP, the same data volumes (reattached in their AZ), the root image. This is the
 * second half of a replacement; nothing of the old generation is running any more (a failed
 * generation's EC2 instance, if any is left, is terminated first).
 *
 *   begin → [terminate-old → wait-old-terminated (a failed generation's leftover)] → subnets →
 *   bring-up → retire
 *
 * (runbooks/generation.ts: bring-up = launch → wait-running → attach each → restore → finish →
 * [register-targets → wait-targets-healthy]; retire = delete-old-root → retention). With `attach:
 * secondary` the launch gets its own primary ENI and the bring-up's `attach-eni` moves the stable one.
 * When no data volume has an EBS volume but each has a snapshot (a restore in another region that
 * failed after it began), the launch makes them from those snapshots and attaches none.
 */
import { STEP } from "../../../shared/steps.js";
import { moveState } from "../../lifecycle.js";
import type { Runbook } from "../engine.js";
import { Failure } from "../failure.js";
import type { RunbookDeps } from "./deps.js";
import { bringUpIn, completeBringUp, type GenerationPlan, launchStep, retire, terminateOld, waitOldTerminated } from "./generation.js";
import { candidates, describeLaunchSubnets, type LaunchResult, MUTATE_POLICY, volumesFromSnapshots } from "./launch.js";

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
    const begin = await ctx.step(STEP.begin, async () => {
      const inst = await deps.store.instances.get(name);
      if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
      const [root, net, volumes, previous] = await Promise.all([
        deps.store.root.get(name),
        deps.store.network.get(name),
        deps.store.volumes.list(name),
        deps.store.generations.get(name, input.fromGeneration),
      ]);
      await deps.store.tx(async (t) => {
        await moveState(t, "resume", name, "during", `resume from ${input.from}`);
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
      await terminateOld(deps, ctx, leftover);
      const wait = waitOldTerminated(
        deps,
        ctx,
        { name, instanceId: leftover, fromGeneration: input.fromGeneration, trigger: "resume" },
        begin.eniId,
      );
      await ctx.step(wait.name, wait.run, wait.policy);
    }

    // 3. Launch where the kept resources are (the ENI's AZ, else the volumes' AZ), reattach and
    //    restore (the filesystems are checked: the pause may have been crash-consistent); serving again.
    const pinnedAz = begin.eniId ? begin.eniAz : (begin.volumes[0]?.availabilityZone ?? null);
    const plan: GenerationPlan = {
      name,
      spec,
      generation,
      imageId: begin.imageId,
      eni: begin.eniId ? { eniId: begin.eniId, privateIp: begin.privateIp } : null,
      volumes: begin.volumes,
      previousClean: false,
      previous: { generation: input.fromGeneration, endReason: input.from },
      how: `resumed from ${input.from}`,
    };
    // Data volumes with no EBS volume but a snapshot (a restore in another region that failed after it
    // began: the old region's volumes are no longer the instance's) are made from it at launch.
    const fromSnapshots = begin.volumes.length > 0 && begin.volumes.every((v) => !v.volumeId && v.latestSnapshotId);
    let launched: LaunchResult;
    if (fromSnapshots) {
      const subnets = await ctx.step(STEP.subnets, () => describeLaunchSubnets(deps, spec), MUTATE_POLICY);
      const taken = begin.volumes.map((v) => ({ device: v.device, snapshotId: v.latestSnapshotId! }));
      launched = await launchStep(deps, ctx, plan, {
        cands: candidates(spec, subnets, pinnedAz, begin.privateIp),
        blockDevices: volumesFromSnapshots(spec, taken),
      });
      await completeBringUp(deps, ctx, plan, launched, { volumesFromSnapshots: taken.map((t) => t.device) });
    } else launched = await bringUpIn(deps, ctx, plan, { pinnedAz, privateIp: begin.privateIp });

    // 4. Roots a failed run left behind (its old instance terminated) go; the image carries the root.
    await retire(deps, ctx, { name, serving: generation, keep: spec.snapshots.keep });
    return { instanceId: launched.instanceId };
  };
}
