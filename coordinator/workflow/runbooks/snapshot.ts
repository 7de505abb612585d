/**
 * snapshot: a fresh snapshot of every data volume of a running stateful instance (on a
 * rebalance recommendation with `onRebalance: snapshot`, or on request). With
 * `snapshots.consistency: freeze` the agent freezes the filesystems first and thaws right after
 * the CreateSnapshot calls return (the point in time is when the call is accepted, reference §E.2);
 * the agent thaws on its own after `thawAfterMs` whatever happens to us.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { TAG } from "../../cloud/gateway.js";
import type { Runbook } from "../engine.js";
import { waitUntil, type RunbookDeps } from "./deps.js";
import { MUTATE_POLICY } from "./launch.js";

export interface SnapshotInput {
  name: string;
  instanceId: string;
  generation: number;
  reason: string;
}

const FREEZE_BUDGET_MS = 10_000;

export function snapshotRunbook(deps: RunbookDeps): Runbook<SnapshotInput> {
  return async (ctx, input) => {
    const { name, instanceId } = input;
    const spec = JSON.parse(deps.store.getInstance(name)!.spec) as StatefulInstanceSpec;
    const freeze = spec.snapshots.consistency !== "crash";
    const freezeId = `freeze-${ctx.workflowId}`;

    const frozen = freeze
      ? await ctx.step(
          "freeze",
          async () => {
            deps.sendToAgent(instanceId, { type: "freeze-for-snapshot", thawAfterMs: 30_000 }, freezeId);
            try {
              const rep = await waitUntil(
                deps.clock,
                `${instanceId} to freeze`,
                () => deps.store.getAgentReport(instanceId, "quiesced", freezeId),
                { intervalMs: Math.max(20, deps.pollMs / 10), timeoutMs: FREEZE_BUDGET_MS, signal: ctx.signal },
              );
              return (JSON.parse(rep.data) as { clean: boolean }).clean;
            } catch (err) {
              if (ctx.signal.aborted) throw err;
              ctx.event("freeze-timeout", `${instanceId} did not confirm the freeze; taking crash-consistent snapshots`);
              return false;
            }
          },
          { attempts: 1 },
        )
      : false;

    const vols = deps.store.listVolumes(name);
    const snaps = await ctx.parallel<string[]>(
      vols.map((v) => [
        `snapshot ${v.device}`,
        async () => {
          const snap = await deps.ec2.createSnapshot(v.volume_id!, `spotkeep ${name} ${v.device} (${input.reason})`, {
            [TAG.managed]: "true",
            [TAG.instance]: name,
            [TAG.workflow]: ctx.workflowId,
            [TAG.step]: `snapshot ${v.device}`,
            [TAG.device]: v.device,
          });
          deps.store.recordArtifact({
            id: snap.snapshotId,
            instance: name,
            kind: "data-snapshot",
            device: v.device,
            source_id: v.volume_id,
            generation: input.generation,
          });
          return snap.snapshotId;
        },
        MUTATE_POLICY,
      ]) as never,
    );

    if (freeze) {
      await ctx.step("thaw", async () => {
        deps.sendToAgent(instanceId, { type: "thaw", ref: freezeId }, `thaw-${ctx.workflowId}`);
        return true;
      });
    }

    await ctx.step(
      "wait-snapshots",
      async () => {
        for (const [i, id] of snaps.entries()) {
          await waitUntil(
            deps.clock,
            `snapshot ${id} to complete`,
            async () => {
              const s = await deps.ec2.describeSnapshot(id);
              if (!s || s.state === "error") throw new Error(`snapshot ${id} of ${vols[i]!.device} failed or disappeared`);
              return s.state === "completed" ? true : null;
            },
            { intervalMs: deps.pollMs, timeoutMs: 60 * 60_000, signal: ctx.signal },
          );
          // Only a completed snapshot becomes the one a restore would use.
          deps.store.setVolumeSnapshot(name, vols[i]!.device, id);
        }
        return true;
      },
      MUTATE_POLICY,
    );

    await ctx.step(
      "retention",
      async () => {
        for (const v of deps.store.listVolumes(name)) {
          for (const s of deps.store.listArtifacts(name, "data-snapshot", v.device).slice(spec.snapshots.keep)) {
            if (s.id === v.latest_snapshot_id) continue;
            await deps.ec2.deleteSnapshot(s.id);
            deps.store.markArtifactDeleted(s.id);
          }
        }
        return true;
      },
      MUTATE_POLICY,
    );
    ctx.event(
      "snapshot",
      `${snaps.length} data volume snapshot(s) of ${instanceId} (${frozen ? "frozen" : "crash-consistent"}): ${snaps.join(", ")}`,
    );
    return { snapshots: snaps, frozen };
  };
}
