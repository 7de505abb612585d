/**
 * The account's EBS encryption defaults (per region): encryption by default on or off, and the KMS
 * key new volumes get when none is named (aws/ebs unless ModifyEbsDefaultKmsKeyId named another).
 * As EC2 does, ModifyEbsDefaultKmsKeyId does not look the key up: a key that names nothing, or one
 * not enabled, fails the volumes created with it.
 */
import type {
  DisableEbsEncryptionByDefaultRequest,
  EnableEbsEncryptionByDefaultRequest,
  GetEbsDefaultKmsKeyIdRequest,
  GetEbsEncryptionByDefaultRequest,
  ModifyEbsDefaultKmsKeyIdRequest,
  ResetEbsDefaultKmsKeyIdRequest,
} from "@aws-sdk/client-ec2";
import type { Ctx } from "../common.js";
import { dryRun, required } from "../common.js";
import { invalidValue } from "../errors.js";
import { defaultKeyRef } from "../encryption.js";

export function getEbsEncryptionByDefault(ctx: Ctx, input: GetEbsEncryptionByDefaultRequest) {
  dryRun(ctx, input);
  return { EbsEncryptionByDefault: ctx.world.ebsEncryption.byDefault, SseType: "none" };
}

export function enableEbsEncryptionByDefault(ctx: Ctx, input: EnableEbsEncryptionByDefaultRequest) {
  dryRun(ctx, input);
  ctx.world.ebsEncryption.byDefault = true;
  return { EbsEncryptionByDefault: true };
}

export function disableEbsEncryptionByDefault(ctx: Ctx, input: DisableEbsEncryptionByDefaultRequest) {
  dryRun(ctx, input);
  ctx.world.ebsEncryption.byDefault = false;
  return { EbsEncryptionByDefault: false };
}

/** The default key's ARN (a reference that names no key is answered as it was given). */
function defaultKeyId(ctx: Ctx): string {
  const ref = defaultKeyRef(ctx.world);
  return ctx.world.kms.find(ref)?.arn ?? ref;
}

export function getEbsDefaultKmsKeyId(ctx: Ctx, input: GetEbsDefaultKmsKeyIdRequest) {
  dryRun(ctx, input);
  return { KmsKeyId: defaultKeyId(ctx) };
}

export function modifyEbsDefaultKmsKeyId(ctx: Ctx, input: ModifyEbsDefaultKmsKeyIdRequest) {
  const ref = required(input.KmsKeyId, "KmsKeyId");
  if (ref.length > 2048) throw invalidValue("KmsKeyId", ref.slice(0, 64), "A KMS key is named by key id, key ARN, alias name or alias ARN");
  dryRun(ctx, input);
  ctx.world.ebsEncryption.defaultKey = ctx.world.kms.find(ref)?.arn ?? ref;
  return { KmsKeyId: defaultKeyId(ctx) };
}

export function resetEbsDefaultKmsKeyId(ctx: Ctx, input: ResetEbsDefaultKmsKeyIdRequest) {
  dryRun(ctx, input);
  ctx.world.ebsEncryption.defaultKey = null;
  return { KmsKeyId: defaultKeyId(ctx) };
}
