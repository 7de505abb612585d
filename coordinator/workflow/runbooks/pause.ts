/**
 * pause: stop paying for a running stateful instance while keeping everything it is made of.
 * Quiesce through the agent (crash-consistent, with an event, when it does not answer in time),
 * capture the root as an image (root persistence), terminate the EC2 instance, keep the ENI and the
 * data volumes. `resume` launches a new generation from what is kept.
 *
 *   begin → [deregister-targets → drain-targets] → quiesce → snapshot-root → terminate-old →
 *   { wait-old-terminated ‖ image } → delete-old-root → finish
 */
import { moveState } from "../../lifecycle.js";
import { type Runbook, step } from "../engine.js";
import { Failure } from "../failure.js";
import type { RunbookDeps } from "./deps.js";
import { STEP, terminateOld, waitOldTerminated } from "./generation.js";
import { MUTATE_POLICY } from "./launch.js";
import { deleteKeptRoots, leaveAndQuiesce, registerRootImage, snapshotRoot } from "./steps.js";

export interface PauseInput {
  name: string;
  /** The live generation being paused and its EC2 instance. */
  generation: number;
  instanceId: string;
}

export function pauseRunbook(deps: RunbookDeps): Runbook<PauseInput> {
  return async (ctx, input) => {
    const { name, instanceId, generation } = input;

    // 1. Begin: what the instance is made of, and the state `pausing`.
    const begin = await ctx.step(STEP.begin, async () => {
      const inst = await deps.store.instances.get(name);
      if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
      const root = await deps.store.root.get(name);
      await moveState(deps.store, "pause", name, "during", `pause of ${instanceId}`);
      return {
        spec: inst.spec,
        rootDeviceName: root?.rootDeviceName ?? "/dev/xvda",
        architecture: root?.architecture ?? "x86_64",
        previousImage: root?.imageId ?? inst.spec.launch.imageId,
        eniId: (await deps.store.network.get(name))?.eniId ?? null,
      };
    });

    // 2. Out of the load balancers (drained), then quiesce: hooks, sync, freeze.
    const clean = await leaveAndQuiesce(deps, ctx, { spec: begin.spec, instanceId, reason: "pause" });

    // 3. Capture the root while the instance exists.
    const rootSnapshot = begin.spec.persistence.root
      ? await ctx.step(
          STEP.snapshotRoot,
          () =>
            snapshotRoot(deps, ctx, {
              name,
              ec2InstanceId: instanceId,
              rootDeviceName: begin.rootDeviceName,
              generation,
              fallbackImage: begin.previousImage,
              userTags: begin.spec.launch.tags,
            }),
          MUTATE_POLICY,
        )
      : null;

    // 4. Terminate; the ENI and the data volumes (DeleteOnTermination false) stay.
    await terminateOld(deps, ctx, instanceId);
    const [, image] = await ctx.parallel(
      waitOldTerminated(deps, ctx, { name, instanceId, fromGeneration: generation, trigger: "pause" }, begin.eniId),
      step(
        STEP.image,
        async () =>
          rootSnapshot
            ? registerRootImage(deps, ctx, {
                name,
                rootSnapshotId: rootSnapshot,
                rootDeviceName: begin.rootDeviceName,
                architecture: begin.architecture,
                userTags: begin.spec.launch.tags,
                generation: generation + 1,
              })
            : null,
        MUTATE_POLICY,
      ),
    );

    // 5. The root volume outlived the instance (captured above when the root persists): it goes.
    await ctx.step(STEP.deleteOldRoot, () => deleteKeptRoots(deps, ctx, { name, except: null }), MUTATE_POLICY);

    // 6. Paused: nothing runs, everything is kept.
    await ctx.step(STEP.finish, async () => {
      const volumes = await deps.store.volumes.list(name);
      await deps.store.tx(async (t) => {
        await t.generations.end(name, generation, "paused");
        await moveState(t, "pause", name, "succeeded", clean ? null : "paused after a crash-consistent capture");
      });
      const kept = [
        begin.eniId ? `ENI ${begin.eniId}` : null,
        ...volumes.map((v) => `${v.device} ${v.volumeId ?? "(no volume)"}`),
        image ? `root image ${image}` : begin.spec.persistence.root ? `root image ${begin.previousImage}` : null,
      ].filter((x): x is string => x !== null);
      await ctx.event("paused", `${instanceId} terminated; kept: ${kept.join(", ") || "nothing to keep"}`);
      return true;
    });
    return { image, clean };
  };
}
