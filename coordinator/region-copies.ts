/**
 * Disaster-recovery copies (spec `snapshots.copyToRegions`): every data snapshot and root image
 * spotkeep keeps for an instance is copied into each of those regions once it is complete there,
 * and each copy is deleted once its original is gone (retention, delete) or its region is no
 * longer listed. A regional outage then leaves the latest data and root of every instance in
 * another region, from which `spotkeep restore` launches it again.
 *
 * One pass of the coordinator's periodic schedule does it, off every critical path. A copy is
 * recorded in the store (artifacts snapshot-copy / image-copy, with their region) as soon as EC2
 * answers, and found again by its tags (snapshots) or name and client token (images) when a
 * coordinator was killed before recording it, so every pass converges. A copy is only ever deleted
 * when the store records it as a copy of this instance's artifact.
 */
import { TAG, type Tags } from "./cloud/gateway.js";
import type { Regions } from "./cloud/regions.js";
import type { Artifact, Store } from "./db/store.js";
import { encryptionOf } from "../shared/spec.js";

export interface RegionCopyDeps {
  store: Store;
  regions: Regions;
  log: (line: string) => void;
}

export interface RegionCopyPass {
  /** Copies started (new ids) in this pass. */
  copied: string[];
  /** Copies deleted in this pass. */
  deleted: string[];
}

/** The name of the copy of image `sourceImageId` (image names are unique per region and account). */
export const copyImageName = (name: string, sourceImageId: string) => `spotkeep-${name}-copy-of-${sourceImageId}`;

export async function syncRegionCopies(d: RegionCopyDeps): Promise<RegionCopyPass> {
  const pass: RegionCopyPass = { copied: [], deleted: [] };
  for (const inst of await d.store.instances.list()) {
    try {
      await syncInstance(d, inst.name, pass);
    } catch (err) {
      d.log(`${inst.name}: region copies: ${(err as Error).message}`);
    }
  }
  return pass;
}

async function syncInstance(d: RegionCopyDeps, name: string, pass: RegionCopyPass): Promise<void> {
  // The spec, the copies and their sources read in one transaction: a restore in another region
  // (runbooks/relocate.ts) moves the spec and turns the copies there into the instance's own
  // artifacts in one transaction, and a view from before it must not see those copies' sources gone.
  const read = await d.store.tx(async (t) => ({
    spec: (await t.instances.get(name))?.spec ?? null,
    copies: [...(await t.artifacts.list(name, "snapshot-copy")), ...(await t.artifacts.list(name, "image-copy"))],
    sources: [...(await t.artifacts.list(name, "data-snapshot")), ...(await t.artifacts.list(name, "image"))],
  }));
  const { spec, copies, sources } = read;
  if (!spec) return;
  const targets = (spec.snapshots.copyToRegions ?? []).filter((t) => d.regions.allows(t.region));
  if (targets.length === 0 && copies.length === 0) return;
  const home = d.regions.of(spec);
  const live = new Set(sources.map((s) => s.id));

  // Copies whose original is gone, or whose region is no longer listed, go first.
  for (const c of copies) {
    if (c.sourceId && live.has(c.sourceId) && targets.some((t) => t.region === c.region)) continue;
    await deleteCopy(d, name, c);
    pass.deleted.push(c.id);
  }

  const home2 = d.regions.ec2(home);
  const encrypted = encryptionOf(spec).encrypted;
  for (const s of sources) {
    const missing = targets.filter((t) => !copies.some((c) => c.sourceId === s.id && c.region === t.region));
    if (missing.length === 0) continue;
    // Only a completed snapshot or an available image can be copied; a later pass takes the rest.
    const source = s.kind === "image" ? await home2.describeImage(s.id) : await home2.describeSnapshot(s.id);
    if (!source) continue;
    if (s.kind === "image" ? source.state !== "available" : source.state !== "completed") continue;
    const sourceEncrypted = "encrypted" in source && source.encrypted === true;
    for (const t of missing) {
      const ec2 = d.regions.ec2(t.region);
      const tags: Tags = {
        ...spec.launch.tags,
        [TAG.managed]: "true",
        [TAG.instance]: name,
        [TAG.copyOf]: s.id,
        ...(s.device ? { [TAG.device]: s.device } : {}),
        ...(s.generation !== null ? { [TAG.generation]: String(s.generation) } : {}),
      };
      const enc = { encrypted: encrypted || sourceEncrypted, ...(t.kmsKeyId ? { kmsKeyId: t.kmsKeyId } : {}) };
      let id: string;
      if (s.kind === "image") {
        if (!ec2.copyImage) throw new Error(`the EC2 gateway of ${t.region} cannot copy images`);
        id = await ec2.copyImage({
          sourceRegion: home,
          sourceImageId: s.id,
          name: copyImageName(name, s.id),
          description: `spotkeep ${name} root image ${s.id} from ${home}`,
          clientToken: `spotkeep-copy-${s.id}`,
          tags,
          ...enc,
        });
      } else {
        if (!ec2.copySnapshot) throw new Error(`the EC2 gateway of ${t.region} cannot copy snapshots`);
        id = (
          await ec2.copySnapshot({
            sourceRegion: home,
            sourceSnapshotId: s.id,
            description: `spotkeep ${name} ${s.device ?? "data"} snapshot ${s.id} from ${home}`,
            tags,
            ...enc,
          })
        ).snapshotId;
      }
      await d.store.artifacts.record({
        id,
        instance: name,
        kind: s.kind === "image" ? "image-copy" : "snapshot-copy",
        device: s.device,
        sourceId: s.id,
        generation: s.generation,
        region: t.region,
      });
      await d.store.events.add(
        name,
        "region-copy",
        `${s.kind === "image" ? "root image" : "snapshot"} ${s.id} copying to ${t.region} as ${id}`,
      );
      pass.copied.push(id);
    }
  }
}

/**
 * Delete one copy in its region. An image copy's snapshots are recorded as snapshot copies of it
 * before the image is deregistered, so a coordinator killed in between still deletes them later.
 */
async function deleteCopy(d: RegionCopyDeps, name: string, c: Artifact): Promise<void> {
  const region = c.region ?? d.regions.home;
  const ec2 = d.regions.ec2(region);
  if (c.kind === "image-copy") {
    const image = await ec2.describeImage(c.id);
    if (image?.rootSnapshotId)
      await d.store.artifacts.record({
        id: image.rootSnapshotId,
        instance: name,
        kind: "snapshot-copy",
        device: null,
        sourceId: c.id,
        generation: c.generation,
        region,
      });
    await ec2.deregisterImage(c.id);
    if (image?.rootSnapshotId) {
      await ec2.deleteSnapshot(image.rootSnapshotId);
      await d.store.artifacts.markDeleted(image.rootSnapshotId);
    }
  } else {
    await ec2.deleteSnapshot(c.id);
  }
  await d.store.artifacts.markDeleted(c.id);
  await d.store.events.add(
    name,
    "region-copy-deleted",
    `${c.kind === "image-copy" ? "image" : "snapshot"} copy ${c.id} in ${region} deleted`,
  );
}

/** Delete the copies (in every region) of the artifacts `sourceIds` of `name`: its delete, for what it does not keep. */
export async function deleteCopiesOf(d: RegionCopyDeps, name: string, sourceIds: readonly string[]): Promise<string[]> {
  const gone = new Set(sourceIds);
  const deleted: string[] = [];
  for (const kind of ["image-copy", "snapshot-copy"] as const)
    for (const c of await d.store.artifacts.list(name, kind)) {
      if (!c.sourceId || !gone.has(c.sourceId)) continue;
      await deleteCopy(d, name, c);
      deleted.push(c.id);
    }
  return deleted;
}
