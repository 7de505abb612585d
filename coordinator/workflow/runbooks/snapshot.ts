/**
 * snapshot: a fresh snapshot of every data volume of a running stateful instance (on a
 * rebalance recommendation with `onRebalance: snapshot`, on the continuous-snapshot schedule, or
 * on request). With `snapshots.consistency: freeze` the agent freezes the filesystems first and
 * thaws right after the CreateSnapshot calls return (a snapshot's point in time is when the call
 * is accepted); the agent thaws on its own after `thawAfterMs` whatever happens to us.
 *
 * With `snapshots.root` the root volume is captured too and registered as the image the next
 * generation boots from.
 *
 *   begin → freeze → { snapshot-root ‖ snapshot each } → thaw → { wait-snapshots ‖ image } → retention
 *   (snapshot-root and image only with snapshots.root)
 */
import { STEP, STEP_OF } from "../../../shared/steps.js";
import { ONCE, type Runbook, step } from "../engine.js";
import { Failure } from "../failure.js";
import { MUTATE_POLICY, requireVolumeId } from "./launch.js";
import type { RunbookDeps } from "./deps.js";
import {
  applyRetention,
  askAgent,
  registerRootImage,
  snapshotDataVolume,
  snapshotRoot,
  type TakenSnapshot,
  waitForSnapshots,
} from "./steps.js";

export interface SnapshotInput {
  name: string;
  instanceId: string;
  generation: number;
  reason: string;
}

/** Model ms the agent has to confirm the freeze before the snapshots are taken crash-consistent. */
const FREEZE_BUDGET_MS = 10_000;
/** Model ms after which the agent thaws by itself. */
const THAW_AFTER_MS = 30_000;

export function snapshotRunbook(deps: RunbookDeps): Runbook<SnapshotInput> {
  return async (ctx, input) => {
    const { name, instanceId } = input;
    const begin = await ctx.step(STEP.begin, async () => {
      const inst = await deps.store.instances.get(name);
      if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
      const root = await deps.store.root.get(name);
      return {
        spec: inst.spec,
        volumes: await deps.store.volumes.list(name),
        rootDeviceName: root?.rootDeviceName ?? "/dev/xvda",
        architecture: root?.architecture ?? "x86_64",
        previousImage: root?.imageId ?? inst.spec.launch.imageId,
      };
    });
    const { spec } = begin;
    const withRoot = spec.snapshots.root && spec.persistence.root;
    const freeze = begin.spec.snapshots.consistency !== "crash";
    const freezeId = `freeze-${ctx.workflowId}`;

    // 1. Freeze (when asked for): crash-consistent with an event when the agent does not confirm in time.
    let frozen = false;
    if (freeze) {
      frozen = await ctx.step(
        STEP.freeze,
        async () => {
          const report = await askAgent<{ clean: boolean }>(deps, ctx, {
            instanceId,
            command: { type: "freeze-for-snapshot", thawAfterMs: THAW_AFTER_MS },
            commandId: freezeId,
            reportKind: "quiesced",
            budgetMs: FREEZE_BUDGET_MS,
          });
          if (!report) await ctx.event("freeze-timeout", `${instanceId} did not confirm the freeze; taking crash-consistent snapshots`);
          return report?.clean ?? false;
        },
        ONCE,
      );
    }

    // 2. Snapshot every data volume, and the root with snapshots.root (the point in time is when each call returns).
    const rootStep = withRoot
      ? [
          step(
            STEP.snapshotRoot,
            async () => ({
              device: begin.rootDeviceName,
              snapshotId: await snapshotRoot(deps, ctx, {
                name,
                ec2InstanceId: instanceId,
                rootDeviceName: begin.rootDeviceName,
                generation: input.generation,
                fallbackImage: begin.previousImage,
                userTags: spec.launch.tags,
              }),
            }),
            MUTATE_POLICY,
          ),
        ]
      : [];
    const taken = await ctx.all<{ device: string; snapshotId: string | null }>([
      ...rootStep,
      ...begin.volumes.map((v) =>
        step(
          STEP_OF.snapshot(v.device),
          () =>
            snapshotDataVolume(deps, ctx, {
              name,
              device: v.device,
              volumeId: requireVolumeId(v),
              generation: input.generation,
              why: input.reason,
              step: `snapshot ${v.device}`,
              userTags: begin.spec.launch.tags,
            }),
          MUTATE_POLICY,
        ),
      ),
    ]);
    const rootSnapshot = withRoot ? (taken[0]?.snapshotId ?? null) : null;
    const snapshots = taken.slice(rootStep.length).filter((t): t is TakenSnapshot => t.snapshotId !== null);

    // 3. Thaw at once: the snapshots no longer need the filesystems still.
    if (freeze) {
      await ctx.step(STEP.thaw, async () => {
        deps.sendToAgent(instanceId, { type: "thaw", ref: freezeId }, `thaw-${ctx.workflowId}`);
        return true;
      });
    }

    // 4. Completed snapshots become the ones a restore uses; the root snapshot becomes the image the
    //    next generation boots from. Then old ones go (never the current image).
    const waitSnapshots = step(STEP.waitSnapshots, () => waitForSnapshots(deps, ctx, name, snapshots), MUTATE_POLICY);
    let image: string | null = null;
    if (rootSnapshot) {
      [, image] = await ctx.parallel(
        waitSnapshots,
        step(
          STEP.image,
          () =>
            registerRootImage(deps, ctx, {
              name,
              rootSnapshotId: rootSnapshot,
              rootDeviceName: begin.rootDeviceName,
              architecture: begin.architecture,
              generation: input.generation + 1,
              userTags: spec.launch.tags,
            }),
          MUTATE_POLICY,
        ),
      );
    } else {
      await ctx.step(waitSnapshots.name, waitSnapshots.run, waitSnapshots.policy);
    }
    await ctx.step(STEP.retention, () => applyRetention(deps, { name, keep: spec.snapshots.keep }), MUTATE_POLICY);
    await ctx.event(
      "snapshot",
      `${snapshots.length} data volume snapshot(s) of ${instanceId} (${frozen ? "frozen" : "crash-consistent"}): ${snapshots
        .map((s) => s.snapshotId)
        .join(", ")}${image ? `; root image ${image}` : ""}`,
    );
    return { snapshots: snapshots.map((s) => s.snapshotId), image, frozen };
  };
}
