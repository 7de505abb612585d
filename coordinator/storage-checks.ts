/**
 * A spec's storage against what AWS holds, checked by create, update and import before anything is
 * recorded, each problem naming its field:
 *  - `persistence.encryption.kmsKeyId` must name a KMS key that exists in the region, is enabled and
 *    is a symmetric encryption key. EC2 checks the key only when it uses it, asynchronously: a
 *    launch or CreateVolume with a bad key appears to succeed, then the instance terminates or the
 *    volume ends in `error`.
 *  - `launch.rootVolume.sizeGiB` must be at least the root snapshot of the image the next generation
 *    boots (the spec's image, or a persisted root's latest image).
 *  - A volume adopted by `volumeId` must already have the encryption the spec asks for: EC2 keeps a
 *    volume's encryption for its life, so spotkeep would otherwise keep it unencrypted (or under
 *    another key) while the spec says otherwise.
 * When AWS cannot be asked (an outage, a policy without kms:DescribeKey) a check is skipped with a
 * log line rather than failing the request: the launch reports the same problem, later.
 */
import { encryptionOf, type StatefulInstanceSpec } from "../shared/spec.js";
import type { Ec2Gateway, ImageInfo, VolumeInfo } from "./cloud/gateway.js";
import { type KmsGateway, unusableForEbs } from "./kms/kms.js";

export interface StorageCheckDeps {
  ec2?: Partial<Pick<Ec2Gateway, "describeImage" | "describeVolume">>;
  kms?: KmsGateway;
  region: string;
  log: (line: string) => void;
}

/** The key ARN a spec's key resolves to, or a problem; null when there is nothing to check or KMS cannot be asked. */
async function keyProblem(d: StorageCheckDeps, spec: StatefulInstanceSpec): Promise<{ arn: string } | { problem: string } | null> {
  const keyId = encryptionOf(spec).kmsKeyId;
  if (!keyId || !d.kms) return null;
  try {
    const key = await d.kms.describeKey(keyId);
    if (!key) return { problem: `persistence.encryption.kmsKeyId: KMS has no key ${keyId} in ${d.region}` };
    const why = unusableForEbs(key);
    return why ? { problem: `persistence.encryption.kmsKeyId: ${why}` } : { arn: key.arn };
  } catch (err) {
    d.log(`${spec.name}: could not check persistence.encryption.kmsKeyId with KMS (the launch will): ${(err as Error).message}`);
    return null;
  }
}

/** Whether `v` is encrypted the way the spec asks (a key named by alias or id is compared by its ARN). */
function encryptionMismatch(spec: StatefulInstanceSpec, v: VolumeInfo, keyArn: string | null): string | null {
  const e = encryptionOf(spec);
  if (!e.encrypted || v.encrypted === undefined) return null;
  if (!v.encrypted) return "is not encrypted, and EC2 cannot encrypt a volume in place";
  if (keyArn && v.kmsKeyId && v.kmsKeyId !== keyArn) return `is encrypted with ${v.kmsKeyId}, not ${keyArn}`;
  return null;
}

/**
 * Every storage problem of `spec`, each `field: reason`. `bootImage`: the image the next generation
 * boots (null: not known, the root size is not checked).
 */
export async function storageProblems(d: StorageCheckDeps, spec: StatefulInstanceSpec, bootImage: ImageInfo | null): Promise<string[]> {
  const out: string[] = [];
  const key = await keyProblem(d, spec);
  if (key && "problem" in key) out.push(key.problem);
  const size = spec.launch.rootVolume?.sizeGiB;
  if (size !== undefined && bootImage?.rootSizeGiB && size < bootImage.rootSizeGiB)
    out.push(
      `launch.rootVolume.sizeGiB: ${size} GiB is smaller than the ${bootImage.rootSizeGiB} GiB root snapshot of ${bootImage.imageId}`,
    );
  if (d.ec2?.describeVolume) {
    for (const [i, v] of spec.persistence.volumes.entries()) {
      if (!v.volumeId) continue;
      let vol: VolumeInfo | null;
      try {
        vol = await d.ec2.describeVolume(v.volumeId);
      } catch (err) {
        d.log(`${spec.name}: could not check the encryption of ${v.volumeId}: ${(err as Error).message}`);
        continue;
      }
      const why = vol ? encryptionMismatch(spec, vol, key && "arn" in key ? key.arn : null) : null;
      if (why)
        out.push(
          `persistence.volumes[${i}].volumeId: ${v.volumeId} ${why} as persistence.encryption asks ` +
            "(copy a snapshot of it with the key, create a volume from the copy and adopt that one)",
        );
    }
  }
  return out;
}

/** The image the spec boots, as EC2 describes it; null when it cannot be asked. */
export async function describeBootImage(d: StorageCheckDeps, imageId: string | null): Promise<ImageInfo | null> {
  if (!imageId || !d.ec2?.describeImage) return null;
  try {
    return await d.ec2.describeImage(imageId);
  } catch (err) {
    d.log(`could not describe ${imageId} to check launch.rootVolume: ${(err as Error).message}`);
    return null;
  }
}
