/**
 * delete: terminate a stateful instance's EC2 instance and delete what it is made of, except the
 * kinds the operator keeps (volumes, network, snapshots, images). Kept resources are recorded (and,
 * with a TTL, tagged `spotkeep:expires-at`) so the TTL sweep in coordinator/kept.ts deletes them
 * when they expire. The instance ends `deleted`, archived under `archiveAs` (see
 * db/sqlite/deletions.ts), so its history stays and its name is free for a new create.
 *
 *   begin → [[deregister-targets → drain-targets] → quiesce] → terminate → wait-terminated
 *         → { delete-volume each ‖ delete-eni ‖ deregister-images } → delete-snapshots → keep → finish
 *
 * A running instance whose delete is not forced is quiesced first as a pause quiesces it (its
 * agent runs the preStop hook, syncs and unmounts the data volumes; no freeze, nothing is captured
 * afterwards), within the hooks' timeout plus a margin: an agent that does not answer by then is
 * terminated anyway, with a `quiesce-timeout` event saying the hook did not run.
 *
 * Only what the store recorded as this instance's is touched (never a resource found by tag alone:
 * the kept resources of an earlier instance of the same name carry the same tag). The base image of
 * the spec is never deregistered: only images spotkeep registered are.
 */
import { deleteCopiesOf } from "../../region-copies.js";
import { STEP, STEP_OF } from "../../../shared/steps.js";
import { moveState } from "../../lifecycle.js";
import { keptList, type KeepSet } from "../../../shared/deletion.js";
import { isNotFound } from "../../cloud/errors.js";
import { TAG } from "../../cloud/gateway.js";
import type { KeptKind } from "../../db/store.js";
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { type Runbook, step, together, type WorkflowContext } from "../engine.js";
import { Failure } from "../failure.js";
import { type RunbookDeps, waitUntil } from "./deps.js";
import { deregisterForDelete } from "./targets.js";
import { MUTATE_POLICY } from "./launch.js";
import { deleteKeptRoots, leaveAndQuiesce } from "./steps.js";

export interface DeleteInput {
  name: string;
  /** What to keep; everything else is deleted. */
  keep: KeepSet;
  /** Model hours until kept resources expire; null: kept until deleted by hand. */
  ttlHours: number | null;
  /** The archived name (`NAME~<ISO time the delete was admitted>`), chosen at admission so a replay uses the same one. */
  archiveAs: string;
  /**
   * The live EC2 instance to quiesce before it is terminated: set at admission when a running
   * instance's delete is not forced. Absent for a forced delete, a delete from paused or failed,
   * and a delete recorded before deletes quiesced (it goes on without the step, as it began).
   */
  quiesce?: { instanceId: string };
}

/** What the instance is made of when the delete begins (recorded by `begin`). */
interface Inventory {
  /** EC2 instances to terminate: the live generation and any leftover of a failed one. */
  instanceIds: string[];
  /** Generations not yet ended. */
  openGenerations: number[];
  volumes: Array<{ device: string; volumeId: string }>;
  eniId: string | null;
  /** Images spotkeep registered, with the root snapshot behind each. */
  images: Array<{ imageId: string; snapshotId: string | null }>;
  /** Data and root snapshots spotkeep took. */
  snapshots: string[];
  /** Wall-clock ms when kept resources expire; null without a TTL. */
  expiresAt: number | null;
  /**
   * The instance to quiesce and the spec that says how (hooks, load balancers); null when the delete
   * does not quiesce. Absent from an inventory recorded before deletes quiesced.
   */
  quiesce?: { instanceId: string; spec: StatefulInstanceSpec } | null;
}

export function deleteRunbook(deps: RunbookDeps): Runbook<DeleteInput> {
  return async (ctx, input) => {
    const { name, keep } = input;

    // 1. Begin: the state `deleting` and the inventory every later step works from.
    const inv = await ctx.step(STEP.begin, () => inventory(deps, input), MUTATE_POLICY);

    // 2. A running instance stops as a pause stops it: out of the load balancers, then its agent
    //    runs the preStop hook, syncs and unmounts, within the hooks' budget (bounded: an agent that
    //    does not answer leaves an event and the delete goes on).
    if (inv.quiesce)
      await leaveAndQuiesce(deps, ctx, {
        spec: inv.quiesce.spec,
        instanceId: inv.quiesce.instanceId,
        reason: "delete",
        unmount: true,
        unanswered: "the preStop hook did not run or did not finish (its agent did not answer in time); terminating without it",
      });

    // 3. Terminate every EC2 instance of this stateful instance and wait until they are gone.
    await ctx.step(
      STEP.terminate,
      async () => {
        const spec = (await deps.store.instances.get(name))?.spec;
        if (spec) await deregisterForDelete(deps, ctx, spec, inv.instanceIds);
        for (const id of inv.instanceIds) await deps.ec2.terminateInstance(id);
        return true;
      },
      MUTATE_POLICY,
    );
    await ctx.step(STEP.waitTerminated, () => waitTerminated(deps, ctx, name, inv), MUTATE_POLICY);

    // 4. Delete what is not kept. Images go before snapshots: a snapshot behind a registered image cannot be deleted.
    await together(
      keep.volumes
        ? Promise.resolve([])
        : ctx.all(inv.volumes.map((v) => step(STEP_OF.deleteVolume(v.device), () => deleteVolume(deps, ctx, v), MUTATE_POLICY))),
      keep.network ? Promise.resolve(null) : ctx.step(STEP.deleteEni, () => deleteEni(deps, ctx, inv.eniId), MUTATE_POLICY),
      keep.images ? Promise.resolve(null) : ctx.step(STEP.deregisterImages, () => deregisterImages(deps, inv, name), MUTATE_POLICY),
    );
    const keptImageSnapshots = keep.images ? inv.images.flatMap((i) => (i.snapshotId ? [i.snapshotId] : [])) : [];
    if (!keep.snapshots) {
      await ctx.step(
        STEP.deleteSnapshots,
        async () => {
          // A kept image keeps the snapshot behind it (EC2 refuses to delete it while the image exists).
          const gone = inv.snapshots.filter((s) => !keptImageSnapshots.includes(s));
          for (const id of gone) {
            await deps.ec2.deleteSnapshot(id);
            await deps.store.artifacts.markDeleted(id);
          }
          // Their disaster-recovery copies in other regions go with them.
          if (deps.regions) await deleteCopiesOf({ store: deps.store, regions: deps.regions, log: deps.log ?? (() => {}) }, name, gone);
          return true;
        },
        MUTATE_POLICY,
      );
    }

    // 5. Record what is kept (store first, then the expiry tag), so the TTL sweep finds it.
    const kept = await ctx.step(
      STEP.keep,
      async () => {
        const list: Array<{ id: string; kind: KeptKind }> = [
          ...(keep.volumes ? inv.volumes.map((v) => ({ id: v.volumeId, kind: "volume" as const })) : []),
          ...(keep.network && inv.eniId ? [{ id: inv.eniId, kind: "network-interface" as const }] : []),
          ...(keep.images ? inv.images.map((i) => ({ id: i.imageId, kind: "image" as const })) : []),
          ...inv.snapshots.filter((s) => keep.snapshots || keptImageSnapshots.includes(s)).map((id) => ({ id, kind: "snapshot" as const })),
        ];
        for (const k of list)
          await deps.store.deletions.keep({
            resourceId: k.id,
            instance: name,
            kind: k.kind,
            workflowId: ctx.workflowId,
            expiresAt: inv.expiresAt,
          });
        const expires = inv.expiresAt === null ? null : { [TAG.expiresAt]: new Date(inv.expiresAt).toISOString() };
        for (const k of list) {
          if (!expires) break;
          try {
            await deps.ec2.tagResources([k.id], expires);
          } catch (err) {
            // EC2 removed it with its instance (DeleteOnTermination): nothing is left to keep.
            if (!isNotFound(err)) throw err;
            await deps.store.deletions.markGone(k.id);
          }
        }
        return list;
      },
      MUTATE_POLICY,
    );

    // 6. Deleted: archived under archiveAs in one transaction, the name free again.
    await ctx.step(STEP.finish, async () => {
      const until = inv.expiresAt === null ? "kept until deleted by hand" : `expire at ${new Date(inv.expiresAt).toISOString()}`;
      const what = kept.length ? `kept ${kept.map((k) => k.id).join(", ")} (${until})` : "nothing kept";
      await deps.store.tx(async (t) => {
        if (await t.instances.get(input.archiveAs)) return; // a replay after the archive committed
        if (!(await t.instances.get(name))) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
        await t.deletions.forgetDeleted(name, keep);
        await t.events.add(name, "deleted", `deleted (keep: ${keptList(keep)}); ${what}; archived as ${input.archiveAs}`, ctx.workflowId);
        await moveState(t, "delete", name, "succeeded", `deleted; ${what}`);
        await t.deletions.archive(name, input.archiveAs);
      });
      return true;
    });
    return { archivedAs: input.archiveAs, kept: kept.map((k) => k.id) };
  };
}

async function inventory(deps: RunbookDeps, input: DeleteInput): Promise<Inventory> {
  const { name } = input;
  const inst = await deps.store.instances.get(name);
  if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
  await moveState(deps.store, "delete", name, "during", `delete (keep: ${keptList(input.keep)})`);
  const generations = await deps.store.generations.list(name);
  const recorded = generations.flatMap((g) => (g.ec2InstanceId && g.status !== "ended" ? [g.ec2InstanceId] : []));
  // A launch that failed part-way can leave an instance the store never recorded: its tags name it.
  const tagged = (await deps.ec2.findInstances({ [TAG.instance]: name }))
    .filter((i) => i.state !== "terminated" && i.state !== "shutting-down")
    .map((i) => i.instanceId);
  const instanceIds = [...new Set([...recorded, ...tagged])];
  // A replacement that failed after its launch can leave data volumes (from snapshots, not deleted
  // on termination) attached to an instance the store never recorded them for: they go (or stay) with the rest.
  const known = (await deps.store.volumes.list(name)).flatMap((v) => (v.volumeId ? [{ device: v.device, volumeId: v.volumeId }] : []));
  const strays = (instanceIds.length ? await deps.ec2.describeInstances(instanceIds) : []).flatMap((i) =>
    i.rootDeviceName
      ? i.volumes
          .filter((v) => v.deviceName !== i.rootDeviceName && !known.some((k) => k.volumeId === v.volumeId))
          .map((v) => ({ device: `${v.deviceName} of ${i.instanceId}`, volumeId: v.volumeId }))
      : [],
  );
  const images = await deps.store.artifacts.list(name, "image");
  const snapshots = [
    ...(await deps.store.artifacts.list(name, "data-snapshot")),
    ...(await deps.store.artifacts.list(name, "root-snapshot")),
  ];
  return {
    instanceIds,
    openGenerations: generations.filter((g) => g.status !== "ended").map((g) => g.generation),
    volumes: [...known, ...strays],
    eniId: (await deps.store.network.get(name))?.eniId ?? null,
    images: images.map((i) => ({ imageId: i.id, snapshotId: i.sourceId })),
    snapshots: snapshots.map((s) => s.id),
    expiresAt: input.ttlHours === null ? null : deps.clock.wallAfter(input.ttlHours * 3_600_000),
    quiesce: input.quiesce ? { instanceId: input.quiesce.instanceId, spec: inst.spec } : null,
  };
}

async function waitTerminated(deps: RunbookDeps, ctx: WorkflowContext, name: string, inv: Inventory): Promise<true> {
  if (inv.instanceIds.length > 0)
    await waitUntil(
      deps.clock,
      `${inv.instanceIds.join(", ")} to terminate`,
      async () => {
        const found = await deps.ec2.describeInstances(inv.instanceIds);
        return found.every((i) => i.state === "terminated") ? true : null;
      },
      { intervalMs: deps.pollMs, timeoutMs: 15 * 60_000, signal: ctx.signal },
    );
  // A generation's root volume outlives its instance (DeleteOnTermination false); it is never kept.
  await deleteKeptRoots(deps, ctx, { name, except: null });
  for (const g of inv.openGenerations) await deps.store.generations.end(name, g, "deleted");
  return true;
}

/** Wait until nothing holds the volume (its instance just terminated), then delete it. */
async function deleteVolume(deps: RunbookDeps, ctx: WorkflowContext, v: { device: string; volumeId: string }): Promise<true> {
  await waitUntil(
    deps.clock,
    `${v.volumeId} (${v.device}) to be detached`,
    async () => {
      const info = await deps.ec2.describeVolume(v.volumeId);
      return !info || info.state === "available" || info.state === "deleting" || info.state === "deleted" || info.state === "error"
        ? true
        : null;
    },
    { intervalMs: deps.pollMs, timeoutMs: 15 * 60_000, signal: ctx.signal },
  );
  await deps.ec2.deleteVolume(v.volumeId);
  return true;
}

/** The ENI comes free a little after its instance terminated; delete it then. */
async function deleteEni(deps: RunbookDeps, ctx: WorkflowContext, eniId: string | null): Promise<true> {
  if (!eniId) return true;
  const gone = await waitUntil(
    deps.clock,
    `${eniId} to be released`,
    async () => {
      const info = await deps.ec2.describeNetworkInterface(eniId);
      return !info ? "gone" : info.status === "available" ? "free" : null;
    },
    { intervalMs: deps.pollMs / 2, timeoutMs: 15 * 60_000, signal: ctx.signal },
  );
  if (gone === "free") await deps.ec2.deleteNetworkInterface(eniId);
  return true;
}

async function deregisterImages(deps: RunbookDeps, inv: Inventory, name: string): Promise<true> {
  for (const i of inv.images) {
    await deps.ec2.deregisterImage(i.imageId);
    await deps.store.artifacts.markDeleted(i.imageId);
  }
  // Their disaster-recovery copies in other regions go with them.
  if (deps.regions)
    await deleteCopiesOf(
      { store: deps.store, regions: deps.regions, log: deps.log ?? (() => {}) },
      name,
      inv.images.map((i) => i.imageId),
    );
  return true;
}
