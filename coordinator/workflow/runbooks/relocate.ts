/**
 * relocate: bring a paused or failed stateful instance back in another region from its
 * disaster-recovery copies there (`spotkeep restore NAME --region R`), the way out of a regional
 * outage. Nothing is done in the old region, which may be down: what the instance had there is
 * recorded as kept and left alone.
 *
 *   begin → subnets → [create-eni] → bring-up (launch with each data volume made from its copy →
 *   wait-running → [attach-eni] → restore → finish → [register-targets → wait-targets-healthy]) →
 *   retire
 *
 * `begin`, in one transaction: the new spec (region R) is stored and the instance is `relocating`;
 * the old region's volumes, ENI, images and snapshots (and copies in other regions) are recorded as
 * kept without an expiry (kept_resources: nothing sweeps, adopts or reuses them; `describe` lists
 * them) and leave the instance's artifacts; the copies in R become its own snapshots and images,
 * which retention and the disaster-recovery copies then manage as anywhere else. The data volumes
 * are made by the launch from the copies (as a replacement in snapshot mode does), encrypted per the
 * spec, in the AZ of the new ENI (privateIp: same-eni) or of whichever subnet has capacity. The
 * private IP changes: the timeline says from which to which.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { STEP } from "../../../shared/steps.js";
import type { Artifact, DataVolume, KeptKind, StoreTx } from "../../db/store.js";
import { moveState } from "../../lifecycle.js";
import type { Runbook, WorkflowContext } from "../engine.js";
import { Failure } from "../failure.js";
import { createStableEni } from "./create.js";
import type { RunbookDeps } from "./deps.js";
import { completeBringUp, type GenerationPlan, launchStep, retire } from "./generation.js";
import { candidates, describeLaunchSubnets, MUTATE_POLICY, volumesFromSnapshots } from "./launch.js";

export interface RelocateInput {
  name: string;
  /** Where the instance comes back (the new spec's region). */
  region: string;
  /** Where it ran until now. */
  fromRegion: string;
  /** Its generation when the relocate was asked for; the new one is the next. */
  fromGeneration: number;
  from: "paused" | "failed";
  /** The stored spec with the overrides laid over it, region R: stored by `begin`. */
  spec: StatefulInstanceSpec;
  /** Each data volume's latest completed copy in R. */
  volumes: Array<{ device: string; snapshotId: string }>;
  /** What the generation boots: the latest available root image copy in R, or the spec's launch.imageId. */
  imageId: string;
  /** The private IP it had in the old region (the timeline names the change). */
  previousIp: string | null;
}

export function relocateRunbook(deps: RunbookDeps): Runbook<RelocateInput> {
  return async (ctx, input) => {
    const { name, spec } = input;
    const generation = input.fromGeneration + 1;

    // 1. Begin: the new spec, the state, the old region's resources kept and the copies made the instance's own.
    const kept = await ctx.step(STEP.begin, () => beginRelocate(deps, ctx, input, generation), MUTATE_POLICY);
    await ctx.event(
      "relocate",
      `restoring generation ${generation} in ${input.region} from copies (${[
        ...input.volumes.map((v) => `${v.device} ${v.snapshotId}`),
        `image ${input.imageId}`,
      ].join(", ")}); kept in ${input.fromRegion}, untouched: ${kept.length ? kept.join(", ") : "nothing"}`,
    );

    // 2. The new subnets, and a new stable ENI in the first one (a new private IP).
    const subnets = await ctx.step(STEP.subnets, () => describeLaunchSubnets(deps, spec, "refuse"), MUTATE_POLICY);
    const home = subnets[0];
    if (!home) throw new Failure("invalid-spec", `launch.subnetIds: none exists in ${input.region}`);
    const eni =
      spec.persistence.network.privateIp === "same-eni"
        ? await ctx.step(STEP.createEni, () => createStableEni(deps, ctx, spec, home.subnetId), MUTATE_POLICY)
        : null;

    // 3. Launch with each data volume made from its copy (in the launch's AZ), then the bring-up.
    const blockDevices = volumesFromSnapshots(spec, input.volumes);
    // The data volumes as the launch makes them: each from its copy (the launch records the new volume ids).
    const volumes: DataVolume[] = input.volumes.map((c) => {
      const vs = spec.persistence.volumes.find((x) => x.device === c.device);
      return {
        instance: name,
        device: c.device,
        mountPoint: vs?.mountPoint ?? null,
        fsType: vs?.fsType ?? "ext4",
        volumeId: null,
        availabilityZone: null,
        latestSnapshotId: c.snapshotId,
      };
    });
    const plan: GenerationPlan = {
      name,
      spec,
      generation,
      imageId: input.imageId,
      eni: eni ? { eniId: eni.eniId, privateIp: eni.privateIp } : null,
      volumes,
      previousClean: input.from === "paused",
      previous: { generation: input.fromGeneration, endReason: `relocated to ${input.region}` },
      how: `restored in ${input.region} from its copies`,
    };
    const launched = await launchStep(deps, ctx, plan, {
      cands: candidates(spec, subnets, eni?.availabilityZone ?? null, null),
      blockDevices,
    });
    await completeBringUp(deps, ctx, plan, launched, { volumesFromSnapshots: input.volumes.map((v) => v.device) });
    const now = (await deps.store.network.get(name))?.privateIp ?? null;
    await ctx.event(
      "ip-changed",
      `the private IP changed with the region: ${input.previousIp ?? "none"} in ${input.fromRegion} → ${now ?? "none"} in ${input.region}` +
        (eni ? ` (new ENI ${eni.eniId})` : "") +
        (now !== null && now === input.previousIp ? "; the same address, in another VPC" : ""),
    );

    // 4. Roots of earlier generations in R (a failed earlier run) go; retention applies to the adopted copies.
    await retire(deps, ctx, { name, serving: generation, keep: spec.snapshots.keep });
    return { instanceId: launched.instanceId, region: input.region };
  };
}

/**
 * The first step's one transaction (skipped when the stored spec is already in R: a replay after
 * it committed). Returns what it kept, for the timeline.
 */
async function beginRelocate(deps: RunbookDeps, ctx: WorkflowContext, input: RelocateInput, generation: number): Promise<string[]> {
  const { name } = input;
  const inst = await deps.store.instances.get(name);
  if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
  const kept: Array<{ id: string; kind: KeptKind }> = [];
  if (inst.spec.region === input.region) return (await deps.store.deletions.kept(name)).map((k) => `${k.kind} ${k.resourceId}`);
  const list = async (kind: Artifact["kind"]) => deps.store.artifacts.list(name, kind);
  const [volumes, net, root, dataSnaps, rootSnaps, images, snapCopies, imageCopies] = await Promise.all([
    deps.store.volumes.list(name),
    deps.store.network.get(name),
    deps.store.root.get(name),
    list("data-snapshot"),
    list("root-snapshot"),
    list("image"),
    list("snapshot-copy"),
    list("image-copy"),
  ]);
  // The image copies in R: each one's root snapshot (EC2 made it with the copy), and the generation
  // whose root it holds (the session secret the root carries belongs to that generation's agent).
  const adoptedImages: Array<{ id: string; rootSnapshotId: string | null; generation: number | null; device: string | null }> = [];
  for (const c of imageCopies.filter((x) => x.region === input.region)) {
    const image = await deps.ec2.describeImage(c.id);
    const original = images.find((i) => i.id === c.sourceId);
    const rootSnap = rootSnaps.find((s) => s.id === original?.sourceId);
    adoptedImages.push({
      id: c.id,
      rootSnapshotId: image?.rootSnapshotId ?? null,
      generation: rootSnap?.generation ?? null,
      device: rootSnap?.device ?? image?.rootDeviceName ?? null,
    });
  }
  const ours = new Set(images.map((i) => i.id));
  for (const v of volumes) if (v.volumeId) kept.push({ id: v.volumeId, kind: "volume" });
  if (net?.eniId) kept.push({ id: net.eniId, kind: "network-interface" });
  for (const a of [...images, ...imageCopies.filter((x) => x.region !== input.region)]) kept.push({ id: a.id, kind: "image" });
  if (root?.imageId && ours.has(root.imageId) && !kept.some((k) => k.id === root.imageId)) kept.push({ id: root.imageId, kind: "image" });
  for (const a of [...dataSnaps, ...rootSnaps, ...snapCopies.filter((x) => x.region !== input.region)])
    kept.push({ id: a.id, kind: "snapshot" });

  await deps.store.tx(async (t: StoreTx) => {
    await t.instances.setSpec(name, input.spec);
    await moveState(t, "relocate", name, "during", `restore in ${input.region} from ${input.from} in ${input.fromRegion}`);
    await t.generations.ensure(name, generation, ctx.workflowId);
    for (const k of kept) {
      await t.deletions.keep({ resourceId: k.id, instance: name, kind: k.kind, workflowId: ctx.workflowId, expiresAt: null });
      await t.artifacts.markDeleted(k.id);
    }
    for (const c of snapCopies.filter((x) => x.region === input.region)) await t.artifacts.takeCopy(c.id, "data-snapshot", null);
    for (const a of adoptedImages) {
      await t.artifacts.takeCopy(a.id, "image", a.rootSnapshotId);
      if (a.rootSnapshotId)
        await t.artifacts.record({
          id: a.rootSnapshotId,
          instance: name,
          kind: "root-snapshot",
          device: a.device,
          sourceId: null,
          generation: a.generation,
        });
    }
    // The old region's volumes and ENI are no longer the instance's: the launch records the new ones.
    await t.deletions.forgetDeleted(name, { volumes: false, network: true, snapshots: true, images: true });
    for (const v of input.volumes) await t.volumes.setLatestSnapshot(name, v.device, v.snapshotId);
    await t.network.set({ instance: name, eniId: null, privateIp: null, subnetId: null, availabilityZone: null });
    const image = adoptedImages.find((a) => a.id === input.imageId);
    await t.root.set({
      instance: name,
      imageId: input.spec.persistence.root ? input.imageId : null,
      snapshotId: image?.rootSnapshotId ?? null,
      rootDeviceName: root?.rootDeviceName ?? null,
      architecture: root?.architecture ?? null,
    });
  });
  return kept.map((k) => `${k.kind} ${k.id}`);
}
