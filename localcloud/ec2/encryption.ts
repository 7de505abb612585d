/**
 * EBS encryption as EC2 decides it: whether a new volume or snapshot copy is encrypted and under
 * which KMS key, whether EC2 can use that key, and whether the caller may make EC2 use it.
 *
 * EC2 checks a key asynchronously: a call naming an unknown, disabled or pending-deletion key (or
 * one the caller's policy does not let EC2 use) is answered as accepted and fails afterwards, each
 * action in its own way (a volume vanishes, an instance terminates, a snapshot copy goes to error).
 * `encryptionFailure` says whether and why such a use fails; the actions apply it.
 */
import { enforcerFor } from "../iam/enforcer.js";
import { contextOf, evaluate, type Decision } from "../iam/policy.js";
import { PRINCIPAL } from "../iam/message.js";
import { ec2ViaService, type KmsKey } from "../kms/keys.js";
import { ACCOUNT_ID } from "../world/catalog.js";
import type { World } from "../world/world.js";
import { Ec2Error, invalidValue } from "./errors.js";

export interface Encryption {
  encrypted: boolean;
  /** The key reference in use: the KmsKeyId given, the source's key, or the account's default key. */
  keyRef?: string;
  /** The key the reference names, when it names one. */
  key?: KmsKey;
  /** What EC2 reports as KmsKeyId: the key's ARN (the reference as given when it names no key). */
  kmsKeyId?: string;
}

/**
 * The KMS actions EC2 performs for the caller when it encrypts or decrypts a volume under a
 * customer-managed key; the caller's policy must allow each on the key with kms:ViaService = EC2.
 */
export const EBS_KMS_ACTIONS = [
  "kms:CreateGrant",
  "kms:Decrypt",
  "kms:DescribeKey",
  "kms:GenerateDataKeyWithoutPlaintext",
  "kms:ReEncryptFrom",
  "kms:ReEncryptTo",
] as const;

/** The key new volumes get when none is named: ModifyEbsDefaultKmsKeyId's, else aws/ebs. */
export function defaultKeyRef(w: World): string {
  return w.ebsEncryption.defaultKey ?? w.kms.ebsKey.arn;
}

/**
 * Decide the encryption of a new volume (or snapshot copy): encrypted when asked, when its source
 * is encrypted, or when the account encrypts by default; under the key named, else the source's
 * key, else the default key. KmsKeyId without Encrypted=true is refused as EC2 refuses it.
 */
export function chooseEncryption(
  w: World,
  opts: { encrypted?: boolean; kmsKeyId?: string; source?: { encrypted: boolean; kmsKeyId?: string }; prefix?: string },
): Encryption {
  const p = opts.prefix ?? "";
  if (opts.kmsKeyId !== undefined) {
    if (opts.encrypted !== true)
      throw new Ec2Error("InvalidParameterDependency", `The parameter ${p}KmsKeyId requires the parameter ${p}Encrypted to be set.`);
    if (opts.kmsKeyId === "" || opts.kmsKeyId.length > 2048)
      throw invalidValue(`${p}KmsKeyId`, opts.kmsKeyId.slice(0, 64), "A KMS key is named by key id, key ARN, alias name or alias ARN");
  }
  const encrypted = opts.encrypted === true || opts.source?.encrypted === true || w.ebsEncryption.byDefault;
  if (!encrypted) return { encrypted: false };
  const keyRef = opts.kmsKeyId ?? (opts.source?.encrypted ? opts.source.kmsKeyId : undefined) ?? defaultKeyRef(w);
  const key = w.kms.find(keyRef);
  return { encrypted: true, keyRef, key, kmsKeyId: key?.arn ?? keyRef };
}

/** Why EC2 cannot use a key: it names no key, or the key is not enabled. */
export type KeyProblem = "unknown" | "disabled" | "pending-deletion";

export interface EncryptionFailure {
  /** The key cannot be used at all, or `denied`: the caller's policy does not let EC2 use it. */
  kind: KeyProblem | "denied";
  keyRef: string;
  /** For `denied`: the KMS action refused, on which key, and the evaluation. */
  denied?: { action: string; resource: string; via: string; decision: Decision };
}

/** The KMS condition keys of a request EC2 in `region` makes for the caller on a key of that region. */
export function viaEc2Context(action: string, region: string) {
  return contextOf({
    "kms:ViaService": ec2ViaService(region),
    "kms:CallerAccount": ACCOUNT_ID,
    "aws:RequestedRegion": region,
    "aws:PrincipalAccount": ACCOUNT_ID,
    "aws:PrincipalArn": PRINCIPAL.arn,
    // EC2 creates its grants for an AWS resource (the volume).
    "kms:GrantIsForAWSResource": action === "kms:CreateGrant" ? "true" : undefined,
  });
}

/**
 * Can EC2 use the key of these volumes for the caller? Undefined when every one is unencrypted, or
 * under an enabled key the caller's policy (when one is enforced) lets EC2 use; the AWS-managed
 * aws/ebs key needs no permission.
 */
export function encryptionFailure(w: World, uses: Encryption[]): EncryptionFailure | undefined {
  for (const e of uses) {
    if (!e.encrypted || e.keyRef === undefined) continue;
    const key = e.key ?? w.kms.find(e.keyRef);
    if (!key) return { kind: "unknown", keyRef: e.keyRef };
    if (key.state === "Disabled") return { kind: "disabled", keyRef: e.keyRef };
    if (key.state === "PendingDeletion") return { kind: "pending-deletion", keyRef: e.keyRef };
  }
  const policy = enforcerFor(w).policy;
  if (!policy) return undefined;
  for (const e of uses) {
    if (!e.encrypted || e.keyRef === undefined) continue;
    const key = (e.key ?? w.kms.find(e.keyRef))!;
    if (key.manager === "AWS") continue;
    for (const action of EBS_KMS_ACTIONS) {
      const decision = evaluate(policy, { action, resource: key.arn, context: viaEc2Context(action, w.region) });
      if (!decision.allowed)
        return { kind: "denied", keyRef: e.keyRef, denied: { action, resource: key.arn, via: ec2ViaService(w.region), decision } };
    }
  }
  return undefined;
}

/** One line for localcloud's log: why EC2 could not use a key. */
export function describeFailure(f: EncryptionFailure): string {
  if (f.kind === "denied")
    return `${f.denied!.action} on ${f.denied!.resource} (via ${f.denied!.via}) is not allowed by the IAM policy${
      f.denied!.decision.explicitDeny ? " (explicit deny)" : ""
    }`;
  if (f.kind === "unknown") return `the KMS key ${f.keyRef} does not exist`;
  return `the KMS key ${f.keyRef} is ${f.kind === "disabled" ? "disabled" : "pending deletion"}`;
}

/**
 * The state reason of an instance EC2 could not start because of its volumes' keys:
 * Client.InvalidKMSKey.InvalidState for a key that is disabled or pending deletion,
 * Client.InternalError ("Client error on launch") when the caller's policy does not let EC2 use the
 * key, and (localcloud's choice, EC2 documents none) for a key that does not exist.
 */
export function launchFailureReason(f: EncryptionFailure): { code: string; message: string } {
  return f.kind === "disabled" || f.kind === "pending-deletion"
    ? {
        code: "Client.InvalidKMSKey.InvalidState",
        message: "Client.InvalidKMSKey.InvalidState: The KMS key provided is in an incorrect state",
      }
    : { code: "Client.InternalError", message: "Client.InternalError: Client error on launch" };
}
