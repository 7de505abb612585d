/**
 * The KMS gateway: the only code that imports `@aws-sdk/client-kms`, narrowed to DescribeKey. The
 * coordinator never encrypts anything itself: EC2 does, with the key a spec names. It asks KMS only
 * so that a spec naming a key that does not exist, is disabled, is pending deletion or is not a
 * symmetric encryption key is refused when it is created or updated, naming the field. EC2 checks the
 * key only when it uses it, asynchronously: a launch or CreateVolume with such a key appears to
 * succeed and the instance or volume then fails.
 */
import { DescribeKeyCommand, KMSClient } from "@aws-sdk/client-kms";
import { errorCode, wrapEc2 } from "../cloud/errors.js";
import { ScaledRetryStrategy } from "../cloud/sdk-retry.js";

/** Every KMS action this module calls: the coordinator's IAM policy grants exactly these (to KMS directly). */
export const KMS_ACTIONS = ["DescribeKey"] as const;

export interface KeyInfo {
  keyId: string;
  arn: string;
  /** Enabled, Disabled, PendingDeletion, PendingImport, Unavailable, … */
  state: string;
  /** AWS (an AWS-managed key such as aws/ebs) or CUSTOMER. */
  manager: string;
  /** ENCRYPT_DECRYPT, SIGN_VERIFY, … */
  usage: string;
  /** SYMMETRIC_DEFAULT, RSA_2048, … */
  spec: string;
}

export interface KmsGateway {
  /** The key a key id, key ARN, alias name or alias ARN names; null when KMS has no such key or alias. */
  describeKey(keyId: string): Promise<KeyInfo | null>;
}

/** Why EBS cannot encrypt with `key` (field-less text), or null when it can. */
export function unusableForEbs(key: KeyInfo): string | null {
  if (key.state !== "Enabled") return `${key.arn} is ${key.state}, not Enabled`;
  if (key.usage !== "ENCRYPT_DECRYPT" || key.spec !== "SYMMETRIC_DEFAULT")
    return `${key.arn} is a ${key.spec} ${key.usage} key; EBS encrypts only with symmetric encryption keys (SYMMETRIC_DEFAULT)`;
  return null;
}

export function createKmsGateway(o: { region: string; endpoint?: string; timeScale?: number; maxAttempts?: number }): KmsGateway {
  const local = o.endpoint !== undefined;
  const client = new KMSClient({
    region: o.region,
    endpoint: o.endpoint,
    retryStrategy: new ScaledRetryStrategy(o.maxAttempts ?? 6, o.timeScale ?? 1),
    // localcloud accepts any signature; real AWS uses the standard credential chain.
    ...(local && !process.env.AWS_ACCESS_KEY_ID ? { credentials: { accessKeyId: "spotkeep", secretAccessKey: "spotkeep" } } : {}),
  });
  return {
    async describeKey(keyId) {
      try {
        const out = await client.send(new DescribeKeyCommand({ KeyId: keyId }));
        const m = out.KeyMetadata;
        if (!m?.KeyId || !m.Arn) return null;
        return {
          keyId: m.KeyId,
          arn: m.Arn,
          state: m.KeyState ?? "Unavailable",
          manager: m.KeyManager ?? "CUSTOMER",
          usage: m.KeyUsage ?? "ENCRYPT_DECRYPT",
          spec: m.KeySpec ?? "SYMMETRIC_DEFAULT",
        };
      } catch (err) {
        if (errorCode(err) === "NotFoundException") return null;
        throw wrapEc2(`describing KMS key ${keyId}`, err);
      }
    },
  };
}
