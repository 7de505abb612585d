/**
 * replace: bring a stateful instance back on a new EC2 instance after a spot interruption
 * (design §4.1) or after its instance was lost without notice (then quiesce and the
 * live-instance captures are skipped: recovery starts from the point after capture).
 *
 *   begin → quiesce → capture → terminate-old → { wait-old-terminated ‖ image ‖ snapshots } →
 *   launch → wait-running → attach (reattach) → restore (ready) → finish → retention
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { TAG } from "../../cloud/gateway.js";
import { isNotFound } from "../../cloud/errors.js";
import type { Runbook, StepSpec } from "../engine.js";
import { waitUntil, type RunbookDeps } from "./deps.js";
import { LAUNCH_POLICY, MUTATE_POLICY, attachVolume, candidates, launchGeneration, restoreAndWaitReady, waitRunning } from "./launch.js";

export interface ReplaceInput {
  name: string;
  /** The generation being replaced and its EC2 instance. */
  fromGeneration: number;
  instanceId: string;
  trigger: "spot-interruption" | "lost" | "scheduled-event" | "rebalance";
  /** When the old instance goes away (ISO), from the notice. */
  deadline?: string;
}

export function replaceRunbook(deps: RunbookDeps): Runbook<ReplaceInput> {
  return async (ctx, input) => {
    const { name, instanceId: oldId } = input;
    const lost = input.trigger === "lost";
    const generation = input.fromGeneration + 1;
    const tags = (step: string) => ({ [TAG.managed]: "true", [TAG.instance]: name, [TAG.workflow]: ctx.workflowId, [TAG.step]: step });

    const begin = await ctx.step("begin", async () => {
      const row = deps.store.getInstance(name)!;
      deps.store.tx(() => {
        deps.store.setInstanceState(name, "replacing", `${input.trigger} of ${oldId}`);
        deps.store.ensureGeneration(name, generation, ctx.workflowId);
      });
      const spec = JSON.parse(row.spec) as StatefulInstanceSpec;
      const root = deps.store.getRoot(name);
      const net = deps.store.getNetwork(name);
      return {
        volumes: deps.store.listVolumes(name).map((v) => v.volume_id),
        spec,
        rootDeviceName: root?.root_device_name ?? "/dev/xvda",
        architecture: root?.architecture ?? "x86_64",
        previousImage: root?.image_id ?? spec.launch.imageId,
        eniId: net?.eni_id ?? null,
        eniAz: net?.availability_zone ?? null,
        privateIp: net?.private_ip ?? null,
      };
    });
    const spec = begin.spec;
    const snapshotMode = spec.persistence.dataMethod === "snapshot" && spec.persistence.volumes.length > 0;

    // --- quiesce: inside the notice window, leaving a margin for the capture calls.
    let clean = false;
    if (!lost) {
      const q = await ctx.step(
        "quiesce",
        async () => {
          const noticeDeadline = input.deadline ? Date.parse(input.deadline) : Date.now() + 120_000 * deps.timeScale;
          // The deadline is wall-clock; the budget in model ms comes from the remaining real time.
          const budgetMs = Math.max(
            1000,
            Math.min(
              Math.max(0, noticeDeadline - Date.now()) / deps.timeScale - deps.quiesceMarginMs,
              (spec.hooks.timeoutSeconds + 30) * 1000,
            ),
          );
          const id = `quiesce-${ctx.workflowId}`;
          deps.sendToAgent(
            oldId,
            {
              type: "quiesce",
              reason: `spot interruption (${input.trigger})`,
              deadline: new Date(Date.now() + budgetMs * deps.timeScale).toISOString(),
              unmount: false,
            },
            id,
          );
          try {
            const rep = await waitUntil(
              deps.clock,
              `${oldId} to quiesce`,
              () => deps.store.getAgentReport(oldId, "quiesced", id) ?? deps.store.getAgentReport(oldId, "quiesced", ""),
              { intervalMs: Math.max(20, deps.pollMs / 10), timeoutMs: budgetMs, signal: ctx.signal },
            );
            return { clean: (JSON.parse(rep.data) as { clean: boolean }).clean, timedOut: false };
          } catch (err) {
            if (ctx.signal.aborted) throw err;
            ctx.event(
              "quiesce-timeout",
              `${oldId} did not report quiesced within ${Math.round(budgetMs / 1000)} s; continuing with a crash-consistent capture`,
            );
            return { clean: false, timedOut: true };
          }
        },
        { attempts: 1 },
      );
      clean = q.clean;
    }

    // --- capture: point-in-time snapshots while the old instance still exists.
    const rootSnapshotStep: StepSpec<string | null> = [
      "snapshot-root",
      async () => {
        const [inst] = await deps.ec2.describeInstances([oldId]);
        const rootVol = inst?.volumes.find((v) => v.deviceName === (inst.rootDeviceName ?? begin.rootDeviceName))?.volumeId;
        if (!rootVol) {
          ctx.event("root-lost", `the root volume of ${oldId} is gone; the replacement boots from ${begin.previousImage}`);
          return null;
        }
        let snap;
        try {
          snap = await deps.ec2.createSnapshot(rootVol, `spotkeep ${name} root, generation ${input.fromGeneration}`, {
            ...tags("snapshot-root"),
            [TAG.generation]: String(input.fromGeneration),
          });
        } catch (err) {
          // The notice window ran out and EC2 deleted the root with the instance.
          if (!isNotFound(err)) throw err;
          ctx.event(
            "root-lost",
            `the root volume ${rootVol} of ${oldId} was deleted before it could be captured; the replacement boots from ${begin.previousImage}`,
          );
          return null;
        }
        deps.store.recordArtifact({
          id: snap.snapshotId,
          instance: name,
          kind: "root-snapshot",
          device: begin.rootDeviceName,
          source_id: rootVol,
          generation: input.fromGeneration,
        });
        return snap.snapshotId;
      },
      MUTATE_POLICY,
    ];
    const dataSnapshotSteps: StepSpec<string>[] = deps.store.listVolumes(name).map((v) => [
      `snapshot ${v.device}`,
      async () => {
        const snap = await deps.ec2.createSnapshot(v.volume_id!, `spotkeep ${name} ${v.device}, generation ${input.fromGeneration}`, {
          ...tags(`snapshot ${v.device}`),
          [TAG.device]: v.device,
        });
        deps.store.recordArtifact({
          id: snap.snapshotId,
          instance: name,
          kind: "data-snapshot",
          device: v.device,
          source_id: v.volume_id,
          generation: input.fromGeneration,
        });
        deps.store.setVolumeSnapshot(name, v.device, snap.snapshotId);
        return snap.snapshotId;
      },
      MUTATE_POLICY,
    ]);
    let rootSnapshot: string | null = null;
    if (!lost) {
      const captured = await ctx.parallel<unknown[]>([
        ...(spec.persistence.root ? [rootSnapshotStep] : []),
        ...(snapshotMode ? dataSnapshotSteps : []),
      ] as never);
      if (spec.persistence.root) rootSnapshot = captured[0] as string | null;
    }

    // --- release early: terminate the old instance ourselves so its ENI and volumes come free.
    await ctx.step(
      "terminate-old",
      async () => {
        await deps.ec2.terminateInstance(oldId);
        return true;
      },
      MUTATE_POLICY,
    );

    const waitTerminated: StepSpec<boolean> = [
      "wait-old-terminated",
      async () => {
        await waitUntil(
          deps.clock,
          `${oldId} to terminate`,
          async () => {
            const [i] = await deps.ec2.describeInstances([oldId]);
            return !i || i.state === "terminated" ? true : null;
          },
          { intervalMs: deps.pollMs / 2, timeoutMs: 15 * 60_000, signal: ctx.signal },
        );
        deps.store.endGeneration(name, input.fromGeneration, input.trigger);
        // The ENI comes free a little after `terminated`; launching before that only earns
        // InvalidNetworkInterface.InUse and a backoff, so watch it closely instead.
        if (begin.eniId) {
          await waitUntil(
            deps.clock,
            `${begin.eniId} to be released by ${oldId}`,
            async () => {
              const e = await deps.ec2.describeNetworkInterface(begin.eniId!);
              if (!e) throw new Error(`${begin.eniId} (the stateful instance's network interface) no longer exists`);
              return e.status === "available" ? true : null;
            },
            { intervalMs: deps.pollMs / 4, timeoutMs: 10 * 60_000, signal: ctx.signal },
          );
        }
        return true;
      },
      MUTATE_POLICY,
    ];
    const imageStep: StepSpec<string | null> = [
      "image",
      async () => {
        if (!rootSnapshot) return null;
        await waitUntil(
          deps.clock,
          `root snapshot ${rootSnapshot} to complete`,
          async () => {
            const s = await deps.ec2.describeSnapshot(rootSnapshot!);
            if (!s) throw new Error(`root snapshot ${rootSnapshot} disappeared`);
            if (s.state === "error") throw new Error(`root snapshot ${rootSnapshot} failed`);
            return s.state === "completed" ? true : null;
          },
          { intervalMs: deps.pollMs, timeoutMs: 60 * 60_000, signal: ctx.signal },
        );
        const imageId = await deps.ec2.registerImage({
          name: `spotkeep-${name}-g${generation}-${ctx.workflowId.slice(-8)}`,
          rootSnapshotId: rootSnapshot,
          rootDeviceName: begin.rootDeviceName,
          architecture: begin.architecture,
          description: `spotkeep root image of ${name} for generation ${generation}`,
          tags: { ...tags("image"), [TAG.generation]: String(generation) },
        });
        deps.store.recordArtifact({ id: imageId, instance: name, kind: "image", device: null, source_id: rootSnapshot, generation });
        await waitUntil(
          deps.clock,
          `image ${imageId} to become available`,
          async () => {
            const i = await deps.ec2.describeImage(imageId);
            if (i?.state === "failed") throw new Error(`image ${imageId} failed`);
            return i?.state === "available" ? true : null;
          },
          { intervalMs: deps.pollMs, timeoutMs: 60 * 60_000, signal: ctx.signal },
        );
        deps.store.setRoot({
          instance: name,
          image_id: imageId,
          snapshot_id: rootSnapshot,
          root_device_name: begin.rootDeviceName,
          architecture: begin.architecture,
        });
        return imageId;
      },
      MUTATE_POLICY,
    ];
    const snapshotsDone: StepSpec<boolean> = [
      "wait-snapshots",
      async () => {
        for (const v of deps.store.listVolumes(name)) {
          const id = v.latest_snapshot_id;
          if (!id) throw new Error(`${v.device} has no snapshot to restore from`);
          await waitUntil(
            deps.clock,
            `snapshot ${id} to complete`,
            async () => {
              const s = await deps.ec2.describeSnapshot(id);
              if (!s || s.state === "error") throw new Error(`snapshot ${id} of ${v.device} failed or disappeared`);
              return s.state === "completed" ? true : null;
            },
            { intervalMs: deps.pollMs, timeoutMs: 60 * 60_000, signal: ctx.signal },
          );
        }
        return true;
      },
      MUTATE_POLICY,
    ];
    // Lost in snapshot mode: the data volumes outlive the instance, so capture them after it is gone.
    if (lost) {
      await ctx.step(waitTerminated[0], waitTerminated[1], waitTerminated[2]);
      if (snapshotMode) await ctx.parallel<unknown[]>(dataSnapshotSteps as never);
      const [image] = await ctx.parallel<[string | null, ...unknown[]]>([imageStep, ...(snapshotMode ? [snapshotsDone] : [])] as never);
      void image;
    } else {
      await ctx.parallel<unknown[]>([waitTerminated, imageStep, ...(snapshotMode ? [snapshotsDone] : [])] as never);
    }

    // --- launch with the same ENI (its AZ pins the launch) or, for reattach, in the volumes' AZ.
    const vols = deps.store.listVolumes(name);
    const imageId = spec.persistence.root ? (deps.store.getRoot(name)?.image_id ?? spec.launch.imageId) : spec.launch.imageId;
    const pinnedAz = begin.eniId ? begin.eniAz : !snapshotMode && vols.length > 0 ? vols[0]!.availability_zone : null;
    const subnets = await ctx.step(
      "subnets",
      async () => {
        const s = await deps.ec2.describeSubnets(spec.launch.subnetIds);
        return spec.launch.subnetIds
          .map((id) => s.find((x) => x.subnetId === id))
          .filter((x): x is NonNullable<typeof x> => !!x)
          .map((x) => ({ subnetId: x.subnetId, availabilityZone: x.availabilityZone, cidr: x.cidr }));
      },
      MUTATE_POLICY,
    );
    const snapshotDevices = (specVols: typeof vols) =>
      specVols.map((v) => {
        const vs = spec.persistence.volumes.find((x) => x.device === v.device);
        return {
          deviceName: v.device,
          snapshotId: v.latest_snapshot_id!,
          volumeType: vs?.type,
          iops: vs?.iops,
          throughput: vs?.throughput,
          deleteOnTermination: false,
        };
      });
    let crossAz = false;
    let launched;
    try {
      launched = await ctx.step(
        "launch",
        () =>
          launchGeneration(deps, ctx, {
            name,
            spec,
            generation,
            imageId,
            cands: candidates(spec, subnets, pinnedAz, begin.privateIp),
            eniId: begin.eniId,
            blockDevices: snapshotMode ? snapshotDevices(vols) : [],
          }),
        LAUNCH_POLICY,
      );
    } catch (err) {
      // Reattach pins the volumes' AZ. When that AZ has no capacity (and no ENI pins it too), move
      // the data through snapshots to another AZ, as Spot.io does. The test is on the message so
      // a replay (which only has the recorded text) takes the same branch.
      const otherAzs = subnets.filter((s) => s.availabilityZone !== pinnedAz);
      if (
        snapshotMode ||
        begin.eniId ||
        vols.length === 0 ||
        otherAzs.length === 0 ||
        !/NoCapacityError/.test(String((err as Error).message))
      )
        throw err;
      crossAz = true;
      ctx.event("cross-az", `no capacity in ${pinnedAz} for reattach; restoring the data volumes from snapshots in another AZ`);
      await ctx.parallel<unknown[]>(dataSnapshotSteps.map(([n, fn, p]) => [`cross-az ${n}`, fn, p]) as never);
      await ctx.step(`cross-az ${snapshotsDone[0]}`, snapshotsDone[1], snapshotsDone[2]);
      launched = await ctx.step(
        "launch in another AZ",
        () =>
          launchGeneration(deps, ctx, {
            name,
            spec,
            generation,
            imageId,
            cands: candidates(spec, otherAzs, null, begin.privateIp),
            eniId: null,
            blockDevices: snapshotDevices(deps.store.listVolumes(name)),
          }),
        LAUNCH_POLICY,
      );
    }
    const fromSnapshots = snapshotMode || crossAz;
    const oldVolumes = fromSnapshots ? begin.volumes.filter((v): v is string => !!v) : [];
    await ctx.step("wait-running", () => waitRunning(deps, ctx, name, generation, launched.instanceId, fromSnapshots), MUTATE_POLICY);

    if (!fromSnapshots && vols.length > 0) {
      await ctx.parallel<unknown[]>(
        vols.map(
          (v) => [`attach ${v.device}`, () => attachVolume(deps, ctx, v.volume_id!, launched.instanceId, v.device), MUTATE_POLICY] as const,
        ) as never,
      );
    }

    await ctx.step(
      "restore",
      () => restoreAndWaitReady(deps, ctx, { name, spec, generation, instanceId: launched.instanceId, previousClean: clean }),
      { attempts: 1 },
    );

    await ctx.step("finish", async () => {
      deps.store.tx(() => {
        deps.store.endGeneration(name, input.fromGeneration, input.trigger);
        deps.store.markGenerationLive(name, generation);
        deps.store.setCurrentGeneration(name, generation);
        deps.store.setInstanceState(name, "running", null);
      });
      ctx.event(
        "ready",
        `generation ${generation} (${launched.instanceId}, ${launched.market} ${launched.instanceType} in ${launched.availabilityZone}) replaced ${oldId}`,
      );
      return true;
    });

    await ctx.step(
      "retention",
      async () => {
        // Snapshot mode: the old volumes' data now lives in the new volumes (and the snapshots).
        for (const v of oldVolumes) if (!deps.store.listVolumes(name).some((x) => x.volume_id === v)) await deps.ec2.deleteVolume(v);
        const keep = spec.snapshots.keep;
        const current = deps.store.getRoot(name);
        const images = deps.store.listArtifacts(name, "image");
        for (const img of images.slice(keep)) {
          if (img.id === current?.image_id) continue;
          await deps.ec2.deregisterImage(img.id);
          if (img.source_id) await deps.ec2.deleteSnapshot(img.source_id);
          deps.store.markArtifactDeleted(img.id);
          if (img.source_id) deps.store.markArtifactDeleted(img.source_id);
        }
        for (const v of deps.store.listVolumes(name)) {
          for (const s of deps.store.listArtifacts(name, "data-snapshot", v.device).slice(keep)) {
            if (s.id === v.latest_snapshot_id) continue;
            await deps.ec2.deleteSnapshot(s.id);
            deps.store.markArtifactDeleted(s.id);
          }
        }
        return true;
      },
      MUTATE_POLICY,
    );
    return { instanceId: launched.instanceId };
  };
}
