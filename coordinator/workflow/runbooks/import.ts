/**
 * import: make an existing EC2 instance (launched outside spotkeep) generation 1 of a stateful
 * instance, keeping its root disk (as an image), its data volumes and its primary ENI (and so its
 * private IP).
 *
 *   load → adopt → keep-volumes → keep-eni → stop → snapshot-root → image → terminate-original →
 *   wait-original-terminated → subnets → bring-up → retire
 *
 * (runbooks/generation.ts: bring-up = launch → wait-running → attach each → restore → finish →
 * [register-targets → wait-targets-healthy]; retire = delete-old-root → retention).
 *
 * A failure before terminate-original: … → rollback → untag → abandon (the workflow fails).
 *
 * A one-time spot instance cannot be stopped: its root is captured after termination instead
 * (terminate-original → … → snapshot-root → image, crash-consistent). Until the original is
 * terminated a failure rolls back: DeleteOnTermination flags as they were, the instance started
 * again if it was running, spotkeep's tags taken off, the image and snapshot deleted; the stateful
 * instance record is then archived with an event saying why. After termination the usual
 * fallbacks apply (instance types, then on-demand) and a failure leaves the instance `failed`
 * with everything kept (resume/recycle start from its image, volumes and ENI).
 */
import { STEP } from "../../../shared/steps.js";
import { moveState } from "../../lifecycle.js";
import { TAG } from "../../cloud/gateway.js";
import type { ImportInput } from "../../import/plan.js";
import { type Runbook, StepFailedError, type WorkflowContext, WorkflowStopped, NonDeterminismError } from "../engine.js";
import { describeError, Failure } from "../failure.js";
import { type RunbookDeps, waitUntil } from "./deps.js";
import { bringUpIn, retire, waitInstanceReleased } from "./generation.js";
import { MUTATE_POLICY } from "./launch.js";
import { registerRootImage, resourceTags, waitDetached } from "./steps.js";

export type { ImportInput };

/** Tag keys an import puts on resources it adopts (and takes off again on a rollback). */
const ADOPT_KEYS = [TAG.managed, TAG.instance];

export function importRunbook(deps: RunbookDeps): Runbook<ImportInput> {
  return async (ctx, input) => {
    const { name, instanceId } = input;
    const generation = 1;
    const inst = await ctx.step(STEP.load, async () => {
      const i = await deps.store.instances.get(name);
      if (!i) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
      await deps.store.generations.ensure(name, generation, ctx.workflowId);
      return { spec: i.spec, volumes: await deps.store.volumes.list(name) };
    });
    const { spec, volumes } = inst;

    // 1. Until the original is terminated everything here can be undone.
    let rootSnapshot: string | null = null;
    let imageId: string | null = null;
    try {
      await ctx.step(STEP.adopt, () => adopt(deps, ctx, input), MUTATE_POLICY);
      await ctx.step(
        STEP.keepVolumes,
        () =>
          deps.ec2
            .setVolumesDeleteOnTermination(
              instanceId,
              input.blockDevices.map((b) => ({ deviceName: b.deviceName, deleteOnTermination: false })),
            )
            .then(() => true),
        MUTATE_POLICY,
      );
      await ctx.step(
        STEP.keepEni,
        () => deps.ec2.setEniDeleteOnTermination(input.eni.eniId, input.eni.attachmentId, false).then(() => true),
        MUTATE_POLICY,
      );
      if (input.stopFirst) {
        await ctx.step(STEP.stop, () => stopOriginal(deps, ctx, input), MUTATE_POLICY);
        rootSnapshot = await ctx.step(STEP.snapshotRoot, () => snapshotOriginalRoot(deps, ctx, input, "stopped"), MUTATE_POLICY);
        imageId = await ctx.step(STEP.image, () => registerImage(deps, ctx, input, rootSnapshot!), MUTATE_POLICY);
      }
    } catch (err) {
      if (err instanceof WorkflowStopped || err instanceof NonDeterminismError) throw err;
      const why = describeError(err instanceof StepFailedError ? (err.cause ?? err) : err);
      await ctx.step(STEP.rollback, () => rollBack(deps, ctx, input, why), MUTATE_POLICY);
      await ctx.step(STEP.untag, () => untagAdopted(deps, input), MUTATE_POLICY);
      await ctx.step(STEP.abandon, () => abandon(deps, input, why));
      throw err;
    }

    // 2. The point of no return: the original goes; its volumes and ENI stay (DeleteOnTermination false).
    await ctx.step(
      STEP.terminateOriginal,
      async () => {
        await ctx.event("terminate-original", `terminating ${instanceId}; its volumes and ${input.eni.eniId} are kept`);
        await deps.ec2.terminateInstance(instanceId);
        return true;
      },
      MUTATE_POLICY,
    );
    await ctx.step(STEP.waitOriginalTerminated, () => waitOriginalGone(deps, ctx, input), MUTATE_POLICY);
    if (!input.stopFirst) {
      rootSnapshot = await ctx.step(STEP.snapshotRoot, () => snapshotOriginalRoot(deps, ctx, input, "terminated"), MUTATE_POLICY);
      imageId = await ctx.step(STEP.image, () => registerImage(deps, ctx, input, rootSnapshot!), MUTATE_POLICY);
    }
    if (!imageId) throw new Failure("resource-lost", `no image of ${instanceId}'s root was made`);
    const bootImage = imageId;

    // 3. Generation 1: spot (the spec's fallbacks), the same ENI at device index 0, the same volumes.
    const launched = await bringUpIn(
      deps,
      ctx,
      {
        name,
        spec,
        generation,
        imageId: bootImage,
        eni: { eniId: input.eni.eniId, privateIp: input.eni.privateIp },
        volumes,
        previousClean: input.stopFirst,
        how: `is ready: ${instanceId} imported as generation 1`,
      },
      { pinnedAz: input.availabilityZone },
    );
    // 4. The original root lives on as the image; the volume itself is no longer needed.
    await retire(deps, ctx, { name, serving: generation, keep: spec.snapshots.keep });
    return { instanceId: launched.instanceId, imageId: bootImage };
  };
}

/** Tag the instance, its volumes and its ENI as managed (the root also as the root of "generation 0"). */
async function adopt(deps: RunbookDeps, ctx: WorkflowContext, input: ImportInput): Promise<true> {
  const [i] = await deps.ec2.describeInstances([input.instanceId]);
  if (!i || i.state === "shutting-down" || i.state === "terminated")
    throw new Failure("resource-lost", `${input.instanceId} is ${i?.state ?? "gone"}; there is nothing to import`);
  const managed = { [TAG.managed]: "true", [TAG.instance]: input.name };
  const data = input.blockDevices.filter((b) => b.deviceName !== input.rootDevice).map((b) => b.volumeId);
  await deps.ec2.tagResources([input.instanceId, input.eni.eniId, ...data], managed);
  await deps.ec2.tagResources([input.rootVolumeId], { ...managed, [TAG.root]: "true", [TAG.generation]: "0" });
  // Adopted from a deleted instance: the expiry its delete tagged no longer applies.
  if (input.adoptedKept?.length) await deps.ec2.untagResources(input.adoptedKept, [TAG.expiresAt]);
  await ctx.event(
    "adopted",
    `${input.instanceId} (${input.eni.privateIp}), ${input.eni.eniId} and ${input.blockDevices.length} volume(s) are now managed by spotkeep`,
  );
  return true;
}

async function stopOriginal(deps: RunbookDeps, ctx: WorkflowContext, input: ImportInput): Promise<true> {
  const [i] = await deps.ec2.describeInstances([input.instanceId]);
  if (!i || i.state === "shutting-down" || i.state === "terminated")
    throw new Failure("resource-lost", `${input.instanceId} went ${i?.state ?? "away"} during the import`);
  if (i.state !== "stopped") {
    if (i.state !== "stopping") await ctx.event("stop", `stopping ${input.instanceId}: a clean OS shutdown before its root is captured`);
    await deps.ec2.stopInstance(input.instanceId);
  }
  await waitUntil(
    deps.clock,
    `${input.instanceId} to stop`,
    async () => {
      const [x] = await deps.ec2.describeInstances([input.instanceId]);
      if (!x || x.state === "terminated" || x.state === "shutting-down")
        throw new Failure("resource-lost", `${input.instanceId} went ${x?.state ?? "away"} while stopping`);
      return x.state === "stopped" ? true : null;
    },
    { intervalMs: deps.pollMs / 2, timeoutMs: 15 * 60_000, signal: ctx.signal },
  );
  return true;
}

/** Snapshot the original root volume (idempotent by the workflow/step tags). */
async function snapshotOriginalRoot(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  input: ImportInput,
  after: "stopped" | "terminated",
): Promise<string> {
  if (after === "terminated" && !(await waitDetached(deps, ctx, input.rootVolumeId)))
    throw new Failure("resource-lost", `the root volume ${input.rootVolumeId} of ${input.instanceId} is gone`);
  const snap = await deps.ec2.createSnapshot(input.rootVolumeId, `spotkeep ${input.name} root of imported ${input.instanceId}`, {
    ...((await deps.store.instances.get(input.name))?.spec.launch.tags ?? {}),
    ...resourceTags(ctx, input.name, "snapshot-root", { [TAG.generation]: "0" }),
  });
  await deps.store.artifacts.record({
    id: snap.snapshotId,
    instance: input.name,
    kind: "root-snapshot",
    device: input.rootDevice,
    sourceId: input.rootVolumeId,
    generation: 0,
  });
  await ctx.event(
    "root-captured",
    after === "stopped"
      ? `captured the root volume ${input.rootVolumeId} of stopped ${input.instanceId}: ${snap.snapshotId}`
      : `captured the root volume ${input.rootVolumeId} of ${input.instanceId} after its termination (crash-consistent): ${snap.snapshotId}`,
  );
  return snap.snapshotId;
}

async function registerImage(deps: RunbookDeps, ctx: WorkflowContext, input: ImportInput, rootSnapshotId: string): Promise<string> {
  const spec = (await deps.store.instances.get(input.name))?.spec;
  return registerRootImage(deps, ctx, {
    name: input.name,
    rootSnapshotId,
    rootDeviceName: input.rootDevice,
    architecture: input.architecture,
    generation: 1,
    userTags: spec?.launch.tags ?? {},
  });
}

/** Wait until the original is terminated and its ENI is free; generation "0" is recorded as ended. */
async function waitOriginalGone(deps: RunbookDeps, ctx: WorkflowContext, input: ImportInput): Promise<true> {
  return waitInstanceReleased(deps, ctx, {
    instanceId: input.instanceId,
    eni: { eniId: input.eni.eniId, what: "the imported instance's network interface" },
  });
}

/**
 * Undo everything done before termination, each part safe to repeat: flags as they were, the
 * instance running again if it was, the image and root snapshot deleted.
 */
async function rollBack(deps: RunbookDeps, ctx: WorkflowContext, input: ImportInput, why: string): Promise<true> {
  const [i] = await deps.ec2.describeInstances([input.instanceId]);
  const alive = i && i.state !== "shutting-down" && i.state !== "terminated";
  if (alive) {
    const attached = new Set(i.volumes.map((v) => v.volumeId));
    await deps.ec2.setVolumesDeleteOnTermination(
      input.instanceId,
      input.blockDevices
        .filter((b) => attached.has(b.volumeId))
        .map((b) => ({ deviceName: b.deviceName, deleteOnTermination: b.deleteOnTermination })),
    );
    const eni = await deps.ec2.describeNetworkInterface(input.eni.eniId);
    if (eni?.attachedTo === input.instanceId)
      await deps.ec2.setEniDeleteOnTermination(input.eni.eniId, input.eni.attachmentId, input.eni.deleteOnTermination);
  }
  for (const a of [
    ...(await deps.store.artifacts.list(input.name, "image")),
    ...(await deps.store.artifacts.list(input.name, "root-snapshot")),
  ]) {
    if (a.kind === "image") await deps.ec2.deregisterImage(a.id);
    else await deps.ec2.deleteSnapshot(a.id);
    await deps.store.artifacts.markDeleted(a.id);
  }
  if (alive && input.wasRunning && i.state !== "running") {
    await waitUntil(
      deps.clock,
      `${input.instanceId} to finish stopping before it is started again`,
      async () => {
        const [x] = await deps.ec2.describeInstances([input.instanceId]);
        return x?.state !== "stopping" ? true : null;
      },
      { intervalMs: deps.pollMs / 2, timeoutMs: 15 * 60_000, signal: ctx.signal },
    );
    await deps.ec2.startInstance(input.instanceId);
    await waitUntil(
      deps.clock,
      `${input.instanceId} to run again`,
      async () => {
        const [x] = await deps.ec2.describeInstances([input.instanceId]);
        if (!x || x.state === "terminated" || x.state === "shutting-down")
          throw new Failure("resource-lost", `${input.instanceId} went ${x?.state ?? "away"} while starting again`);
        return x.state === "running" ? true : null;
      },
      { intervalMs: deps.pollMs / 2, timeoutMs: 15 * 60_000, signal: ctx.signal },
    );
  }
  await ctx.event(
    "import-rolled-back",
    `import of ${input.instanceId} failed (${why}); rolling back: DeleteOnTermination flags restored, spotkeep's tags taken off` +
      (alive
        ? input.wasRunning
          ? ", the instance runs again"
          : ", the instance stays stopped"
        : `; ${input.instanceId} is ${i?.state ?? "gone"}`),
  );
  return true;
}

/**
 * Take spotkeep's tags off what the import adopted; its own step, after the rollback, because the
 * coordinator's IAM policy lets it act only on resources that carry them. Only resources still
 * tagged are touched, so a repeat after a crash is refused nothing.
 */
async function untagAdopted(deps: RunbookDeps, input: ImportInput): Promise<true> {
  const ours = (tags: Record<string, string> | undefined) => tags?.[TAG.instance] === input.name;
  const [i] = await deps.ec2.describeInstances([input.instanceId]);
  const eni = await deps.ec2.describeNetworkInterface(input.eni.eniId);
  const vols = await Promise.all(input.blockDevices.map((b) => deps.ec2.describeVolume(b.volumeId)));
  const ids = [
    ...(i && ours(i.tags) ? [i.instanceId] : []),
    ...(eni && ours(eni.tags) ? [eni.eniId] : []),
    ...vols.flatMap((v) => (v && ours(v.tags) ? [v.volumeId] : [])),
  ];
  await deps.ec2.untagResources(ids, [...ADOPT_KEYS, TAG.root, TAG.generation]);
  return true;
}

/** The import did not happen: the stateful instance record is archived (its history kept), freeing the name. */
async function abandon(deps: RunbookDeps, input: ImportInput, why: string): Promise<true> {
  await deps.store.tx(async (t) => {
    const inst = await t.instances.get(input.name);
    if (!inst) return;
    await moveState(t, "import", input.name, "rolledBack", `import rolled back: ${why}`);
    await t.deletions.archive(input.name, `${input.name}~${new Date(inst.createdAt).toISOString()}`);
  });
  return true;
}
