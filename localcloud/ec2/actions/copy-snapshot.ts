/**
 * CopySnapshot, within a region or across the regions localcloud serves: the request goes to the
 * destination region, SourceRegion names where the snapshot is. A copy of an encrypted snapshot is
 * encrypted (Encrypted false cannot undo that); a copy of an unencrypted one is encrypted when asked
 * or when the destination account encrypts by default. Without KmsKeyId the copy is under the
 * destination's default key (aws/ebs unless ModifyEbsDefaultKmsKeyId named another), as EC2 does, so
 * naming a key re-encrypts; a KmsKeyId must name a key of the destination region.
 * EC2 checks the keys asynchronously: a source key that is unknown, not enabled, or not usable by the
 * caller through EC2 in the source region, or such a destination key, answers the call, then puts the
 * copy in state `error` with a StateMessage. CopySnapshot has no ClientToken: each call makes a new copy.
 * A copy across regions takes the same time as one within a region plus `snapshotCopyCrossRegionPerGiB`
 * of the profile for each GiB.
 */
import type { CopySnapshotRequest } from "@aws-sdk/client-ec2";
import type { Ctx } from "../common.js";
import { dryRun, required, tagSpecs } from "../common.js";
import { Ec2Error } from "../errors.js";
import { chooseEncryption, describeFailure, type Encryption, encryptionFailure } from "../encryption.js";
import { ACCOUNT_ID, REGION_NAME_RE } from "../../world/catalog.js";
import { ID_PREFIX, newId } from "../../world/ids.js";
import type { Snapshot, Tags } from "../../world/types.js";
import type { World } from "../../world/world.js";
import { lookupSnapshot } from "./images.js";

/** What EC2 puts in a failed copy's StateMessage when it cannot use a key. */
export const KEY_NOT_ACCESSIBLE = "Given key ID is not accessible";
/** Snapshot copies have an arbitrary source volume id (EC2 shows this one). */
const COPY_VOLUME_ID = "vol-ffffffff";

/**
 * The world of a SourceRegion parameter: InvalidRegion for a name that is not a region or a region
 * localcloud does not serve (localcloud's choice of code: EC2 documents none for CopySnapshot).
 */
export function sourceWorld(w: World, region: string): World {
  const src = w.regions.get(region);
  if (src) return src;
  const what = REGION_NAME_RE.test(region) ? "is not a region this localcloud serves" : "is not a region name";
  throw new Ec2Error(
    "InvalidRegion",
    `Invalid value '${region.slice(0, 64)}' for SourceRegion: ${what} (it serves ${[...w.regions.keys()].join(", ")})`,
  );
}

/**
 * Start a copy of `src` (of `from`) into `w`, the destination: a new pending snapshot, completed
 * after the copy time, or in state error when a key cannot be used (`failure`).
 */
export function startSnapshotCopy(w: World, from: World, src: Snapshot, o: { enc: Encryption; description: string; tags: Tags }): Snapshot {
  const failure =
    encryptionFailure(from, src.encrypted ? [{ encrypted: true, keyRef: src.kmsKeyId }] : []) ?? encryptionFailure(w, [o.enc]);
  const s: Snapshot = {
    id: newId(ID_PREFIX.snapshot),
    volumeId: COPY_VOLUME_ID,
    state: "pending",
    progress: 0,
    startTime: w.wallNow(),
    volumeSize: src.volumeSize,
    description: o.description,
    ownerId: ACCOUNT_ID,
    tags: o.tags,
    encrypted: o.enc.encrypted,
    kmsKeyId: o.enc.kmsKeyId,
    ready: Promise.resolve(),
    noNode: src.noNode,
  };
  w.snapshots.set(s.id, s);
  const crossRegion = from !== w ? (w.profile.snapshotCopyCrossRegionPerGiB ?? 0) * s.volumeSize : 0;
  const total = w.profile.snapshotBase + w.profile.snapshotPerGiB * s.volumeSize + crossRegion;
  if (failure) {
    w.after(total / 2, `copying ${src.id} into ${s.id}`, () => {
      if (s.state !== "pending") return;
      w.log(`${s.id} (copy of ${src.id}) failed: ${describeFailure(failure)}`);
      s.state = "error";
      s.stateMessage = KEY_NOT_ACCESSIBLE;
    });
    return s;
  }
  // The runtime copies through a scratch volume made from the source (one runtime holds every region's data).
  const scratch = newId(ID_PREFIX.volume);
  const copy = src.ready
    .then(() => w.runtime.createVolume({ volumeId: scratch, sizeGiB: src.volumeSize }, src.id))
    .then(() => w.runtime.createSnapshot(s.id, scratch))
    .finally(() => w.runtime.deleteVolume(scratch).catch(() => undefined));
  s.ready = w.track(`copying ${src.id} into ${s.id}`, copy).then(() => undefined);
  w.after(total, `completing ${s.id}`, async () => {
    try {
      await copy;
      if (s.state === "pending") {
        s.state = "completed";
        s.progress = 100;
      }
    } catch {
      s.state = "error";
      s.stateMessage = "localcloud could not copy the snapshot's data";
    }
  });
  return s;
}

export function copySnapshot(ctx: Ctx, input: CopySnapshotRequest) {
  const w = ctx.world;
  const region = required(input.SourceRegion, "SourceRegion");
  const from = sourceWorld(w, region);
  const src = lookupSnapshot(from, input.SourceSnapshotId);
  if (input.DestinationOutpostArn !== undefined)
    throw new Ec2Error("InvalidParameterValue", "DestinationOutpostArn: localcloud has no Outposts");
  if (src.state !== "completed")
    throw new Ec2Error("IncorrectState", `Snapshot ${src.id} is in state '${src.state}': only a completed snapshot can be copied.`);
  if ((input.Description ?? "").length > 255) throw new Ec2Error("InvalidParameterValue", "Description is at most 255 characters");
  const tags = tagSpecs(input.TagSpecifications, ["snapshot"]);
  const enc = chooseEncryption(w, { encrypted: input.Encrypted, kmsKeyId: input.KmsKeyId, source: { encrypted: src.encrypted } });
  dryRun(ctx, input);
  const s = startSnapshotCopy(w, from, src, {
    enc,
    description: input.Description ?? `[Copied ${src.id} from ${from.region}]`,
    tags: tags.get("snapshot") ?? new Map(),
  });
  return { SnapshotId: s.id, Tags: s.tags.size ? [...s.tags].map(([Key, Value]) => ({ Key, Value })) : undefined };
}
