/**
 * CopyImage, within a region or from another region localcloud serves: the request goes to the
 * destination region, SourceRegion names where the image is. Every EBS snapshot of the image's block
 * device mapping is copied into the destination as CopySnapshot copies it (same time, same encryption
 * rules: Encrypted encrypts the copies, an encrypted source stays encrypted, KmsKeyId must name a key
 * of the destination region, else the destination's default key), and a new image is registered over
 * the copies: `pending` until every copy completes, then `available`; when a copy fails (a key EC2
 * cannot use) the image goes to `failed` with a StateReason. ClientToken makes the call idempotent:
 * the same token with the same parameters returns the same ImageId, with other parameters
 * IdempotentParameterMismatch. CopyImageTags copies the source image's tags; TagSpecifications tag
 * the new image (`image`) and its snapshots (`snapshot`).
 */
import { createHash } from "node:crypto";
import type { CopyImageRequest } from "@aws-sdk/client-ec2";
import type { Ctx } from "../common.js";
import { checkId, dryRun, required, tagSpecs } from "../common.js";
import { Ec2Error, invalidValue } from "../errors.js";
import { chooseEncryption } from "../encryption.js";
import { ACCOUNT_ID } from "../../world/catalog.js";
import { ID_PREFIX, newId } from "../../world/ids.js";
import type { Image, ImageBdm } from "../../world/types.js";
import type { World } from "../../world/world.js";
import { checkName } from "./images.js";
import { KEY_NOT_ACCESSIBLE, sourceWorld, startSnapshotCopy } from "./copy-snapshot.js";

function fingerprint(input: CopyImageRequest): string {
  const { ClientToken: _t, DryRun: _d, ...rest } = input;
  return createHash("sha256").update(JSON.stringify(rest)).digest("hex");
}

/** The source image of a CopyImage: InvalidAMIID.Malformed / .NotFound in its region, .Unavailable when not available. */
function sourceImage(from: World, id: string): Image {
  checkId(id, "ami", "InvalidAMIID.Malformed");
  const img = from.images.get(id);
  if (!img) throw new Ec2Error("InvalidAMIID.NotFound", `The image id '[${id}]' does not exist`);
  if (img.state !== "available")
    throw new Ec2Error("InvalidAMIID.Unavailable", `The image '${id}' is in state '${img.state}': only an available image can be copied`);
  return img;
}

/** The new image follows its snapshot copies: available once all completed, failed when one failed. */
function followCopies(w: World, img: Image): void {
  const check = () => {
    if (!w.images.has(img.id) || img.state !== "pending") return;
    const snaps = img.blockDeviceMappings.filter((b) => b.snapshotId).map((b) => w.snapshots.get(b.snapshotId!));
    const failed = snaps.find((s) => !s || s.state === "error");
    if (failed !== undefined || snaps.some((s) => s === undefined)) {
      img.state = "failed";
      img.stateReason = { code: "Client.InternalError", message: failed?.stateMessage ?? KEY_NOT_ACCESSIBLE };
      return;
    }
    if (snaps.every((s) => s!.state === "completed")) img.state = "available";
    else w.after(Math.max(1, w.profile.image / 4), `waiting for the snapshot copies of ${img.id}`, check);
  };
  w.after(w.profile.image, `copying into ${img.id}`, check);
}

export function copyImage(ctx: Ctx, input: CopyImageRequest) {
  const w = ctx.world;
  const region = required(input.SourceRegion, "SourceRegion");
  const sourceId = required(input.SourceImageId, "SourceImageId");
  const nameGiven = required(input.Name, "Name");
  const from = sourceWorld(w, region);
  // A retry with the token answers the first call's image, even once its source is gone.
  if (input.ClientToken !== undefined) {
    if (input.ClientToken.length > 64 || !/^[\x20-\x7e]*$/.test(input.ClientToken))
      throw invalidValue("ClientToken", input.ClientToken, "A client token is at most 64 ASCII characters");
    const prior = w.clientTokens.get(`CopyImage:${input.ClientToken}`);
    if (prior) {
      if (prior.fingerprint !== fingerprint(input))
        throw new Ec2Error("IdempotentParameterMismatch", `The client token '${input.ClientToken}' was used with different parameters`);
      dryRun(ctx, input);
      return { ImageId: prior.ids[0] };
    }
  }
  const src = sourceImage(from, sourceId);
  const name = checkName(w, nameGiven);
  for (const p of ["DestinationOutpostArn", "DestinationAvailabilityZone", "DestinationAvailabilityZoneId"] as const)
    if (input[p] !== undefined) throw new Ec2Error("InvalidParameterValue", `${p}: localcloud copies images to a region only`);
  if (input.SnapshotCopyCompletionDurationMinutes !== undefined)
    throw new Ec2Error("InvalidParameterValue", "SnapshotCopyCompletionDurationMinutes: localcloud has no time-based copies");
  if ((input.Description ?? "").length > 255) throw new Ec2Error("InvalidParameterValue", "Description is at most 255 characters");
  const tags = tagSpecs(input.TagSpecifications, ["image", "snapshot"]);
  // Each snapshot's encryption is decided before anything is made, so a bad KmsKeyId changes nothing.
  const plan = src.blockDeviceMappings.map((b) => {
    const snap = b.snapshotId ? from.snapshots.get(b.snapshotId) : undefined;
    if (b.snapshotId && snap?.state !== "completed")
      throw new Ec2Error("InvalidAMIID.Unavailable", `The snapshot ${b.snapshotId} of image '${src.id}' is not available to copy`);
    const enc = snap
      ? chooseEncryption(w, { encrypted: input.Encrypted, kmsKeyId: input.KmsKeyId, source: { encrypted: snap.encrypted } })
      : undefined;
    return { b, snap, enc };
  });
  if (plan.every((p) => !p.snap)) chooseEncryption(w, { encrypted: input.Encrypted, kmsKeyId: input.KmsKeyId });
  dryRun(ctx, input);
  const imageId = newId(ID_PREFIX.image);
  const bdms: ImageBdm[] = plan.map(({ b, snap, enc }) => {
    if (!snap || !enc) return { ...b };
    const copy = startSnapshotCopy(w, from, snap, {
      enc,
      description: `Copied for DestinationAmi ${imageId} from SourceAmi ${src.id} for SourceSnapshot ${snap.id}. Task created on ${new Date().toISOString()}.`,
      tags: new Map(tags.get("snapshot") ?? []),
    });
    return { ...b, snapshotId: copy.id, encrypted: copy.encrypted, kmsKeyId: copy.kmsKeyId };
  });
  const imageTags = new Map(input.CopyImageTags ? src.tags : []);
  for (const [k, v] of tags.get("image") ?? []) imageTags.set(k, v);
  const img: Image = {
    id: imageId,
    name,
    description: input.Description ?? src.description,
    state: "pending",
    ownerId: ACCOUNT_ID,
    rootDeviceName: src.rootDeviceName,
    blockDeviceMappings: bdms,
    architecture: src.architecture,
    creationDate: w.wallNow(),
    tags: imageTags,
    enaSupport: src.enaSupport,
    bootMode: src.bootMode,
    imdsSupport: src.imdsSupport,
    virtualizationType: src.virtualizationType,
    platform: src.platform,
    noNode: src.noNode,
  };
  w.images.set(img.id, img);
  if (input.ClientToken !== undefined)
    w.clientTokens.set(`CopyImage:${input.ClientToken}`, { fingerprint: fingerprint(input), ids: [img.id] });
  followCopies(w, img);
  return { ImageId: img.id };
}
