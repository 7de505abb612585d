/**
 * CopySnapshot within localcloud's region. A copy of an encrypted snapshot is encrypted (Encrypted
 * false cannot undo that); a copy of an unencrypted one is encrypted when asked or when the account
 * encrypts by default. Without KmsKeyId the copy is under the account's default key (aws/ebs
 * unless ModifyEbsDefaultKmsKeyId named another), as EC2 does, so naming a key re-encrypts.
 * EC2 checks the keys asynchronously: a source or destination key that is unknown, not enabled, or
 * not usable by the caller through EC2 answers the call, then puts the copy in state `error` with
 * a StateMessage. CopySnapshot has no ClientToken: each call makes a new copy.
 */
import type { CopySnapshotRequest } from "@aws-sdk/client-ec2";
import type { Ctx } from "../common.js";
import { dryRun, required, tagSpecs } from "../common.js";
import { Ec2Error } from "../errors.js";
import { chooseEncryption, describeFailure, encryptionFailure } from "../encryption.js";
import { ACCOUNT_ID, REGION } from "../../world/catalog.js";
import { ID_PREFIX, newId } from "../../world/ids.js";
import type { Snapshot } from "../../world/types.js";
import { lookupSnapshot } from "./images.js";

/** What EC2 puts in a failed copy's StateMessage when it cannot use a key. */
export const KEY_NOT_ACCESSIBLE = "Given key ID is not accessible";
/** Snapshot copies have an arbitrary source volume id (EC2 shows this one). */
const COPY_VOLUME_ID = "vol-ffffffff";

export function copySnapshot(ctx: Ctx, input: CopySnapshotRequest) {
  const w = ctx.world;
  const region = required(input.SourceRegion, "SourceRegion");
  const src = lookupSnapshot(w, input.SourceSnapshotId);
  if (region !== REGION)
    throw new Ec2Error(
      "InvalidParameterValue",
      `Invalid value '${region.slice(0, 64)}' for SourceRegion: localcloud's snapshot ${src.id} is in ${REGION}`,
    );
  if (input.DestinationOutpostArn !== undefined)
    throw new Ec2Error("InvalidParameterValue", "DestinationOutpostArn: localcloud has no Outposts");
  if (src.state !== "completed")
    throw new Ec2Error("IncorrectState", `Snapshot ${src.id} is in state '${src.state}': only a completed snapshot can be copied.`);
  if ((input.Description ?? "").length > 255) throw new Ec2Error("InvalidParameterValue", "Description is at most 255 characters");
  const tags = tagSpecs(input.TagSpecifications, ["snapshot"]);
  const enc = chooseEncryption(w, { encrypted: input.Encrypted, kmsKeyId: input.KmsKeyId, source: { encrypted: src.encrypted } });
  dryRun(ctx, input);
  const failure = encryptionFailure(w, [...(src.encrypted ? [{ encrypted: true, keyRef: src.kmsKeyId }] : []), enc]);
  const s: Snapshot = {
    id: newId(ID_PREFIX.snapshot),
    volumeId: COPY_VOLUME_ID,
    state: "pending",
    progress: 0,
    startTime: w.wallNow(),
    volumeSize: src.volumeSize,
    description: input.Description ?? `[Copied ${src.id} from ${REGION}]`,
    ownerId: ACCOUNT_ID,
    tags: tags.get("snapshot") ?? new Map(),
    encrypted: enc.encrypted,
    kmsKeyId: enc.kmsKeyId,
    ready: Promise.resolve(),
    noNode: src.noNode,
  };
  w.snapshots.set(s.id, s);
  const total = w.profile.snapshotBase + w.profile.snapshotPerGiB * s.volumeSize;
  if (failure) {
    w.after(total / 2, `copying ${src.id} into ${s.id}`, () => {
      if (s.state !== "pending") return;
      w.log(`${s.id} (copy of ${src.id}) failed: ${describeFailure(failure)}`);
      s.state = "error";
      s.stateMessage = KEY_NOT_ACCESSIBLE;
    });
    return { SnapshotId: s.id, Tags: undefined };
  }
  // The runtime copies through a scratch volume made from the source.
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
  return { SnapshotId: s.id, Tags: s.tags.size ? [...s.tags].map(([Key, Value]) => ({ Key, Value })) : undefined };
}
