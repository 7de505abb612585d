/**
 * snapshot: a fresh snapshot of every data volume of a running stateful instance (on a
 * rebalance recommendation with `onRebalance: snapshot`, on the continuous-snapshot schedule, or
 * on request). With `snapshots.consistency: freeze` the agent freezes the filesystems first and
 * thaws right after the CreateSnapshot calls return (a snapshot's point in time is when the call
 * is accepted); the agent thaws on its own after `thawAfterMs` whatever happens to us.
 *
 *   begin → freeze → snapshot each → thaw → wait-snapshots → retention
 */
import { ONCE, type Runbook, step } from "../engine.js";
import { Failure } from "../failure.js";
import { MUTATE_POLICY, requireVolumeId } from "./launch.js";
import type { RunbookDeps } from "./deps.js";
import { applyRetention, askAgent, snapshotDataVolume, waitForSnapshots } from "./steps.js";

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
    const begin = await ctx.step("begin", async () => {
      const inst = await deps.store.instances.get(name);
      if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
      return { spec: inst.spec, volumes: await deps.store.volumes.list(name) };
    });
    const freeze = begin.spec.snapshots.consistency !== "crash";
    const freezeId = `freeze-${ctx.workflowId}`;

    // 1. Freeze (when asked for): crash-consistent with an event when the agent does not confirm in time.
    let frozen = false;
    if (freeze) {
      frozen = await ctx.step(
        "freeze",
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

    // 2. Snapshot every data volume (the point in time is when each call returns).
    const snapshots = await ctx.all(
      begin.volumes.map((v) =>
        step(
          `snapshot ${v.device}`,
          () =>
            snapshotDataVolume(deps, ctx, {
              name,
              device: v.device,
              volumeId: requireVolumeId(v),
              generation: input.generation,
              why: input.reason,
              step: `snapshot ${v.device}`,
            }),
          MUTATE_POLICY,
        ),
      ),
    );

    // 3. Thaw at once: the snapshots no longer need the filesystems still.
    if (freeze) {
      await ctx.step("thaw", async () => {
        deps.sendToAgent(instanceId, { type: "thaw", ref: freezeId }, `thaw-${ctx.workflowId}`);
        return true;
      });
    }

    // 4. Completed snapshots become the ones a restore uses; old ones go.
    await ctx.step("wait-snapshots", () => waitForSnapshots(deps, ctx, name, snapshots), MUTATE_POLICY);
    await ctx.step("retention", () => applyRetention(deps, { name, keep: begin.spec.snapshots.keep }), MUTATE_POLICY);
    await ctx.event(
      "snapshot",
      `${snapshots.length} data volume snapshot(s) of ${instanceId} (${frozen ? "frozen" : "crash-consistent"}): ${snapshots
        .map((s) => s.snapshotId)
        .join(", ")}`,
    );
    return { snapshots: snapshots.map((s) => s.snapshotId), frozen };
  };
}
