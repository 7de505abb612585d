/**
 * localcloud's KMS keys and aliases: symmetric encryption keys (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT)
 * in the states Enabled, Disabled and PendingDeletion, named by key id, key ARN, alias name
 * (`alias/x`) or alias ARN, as KMS and EC2 accept them. Every account has the AWS-managed key
 * behind `alias/aws/ebs`. No key material exists: localcloud's volumes are not encrypted at rest.
 */
import { randomUUID } from "node:crypto";
import { ACCOUNT_ID } from "../world/catalog.js";

export type KeyState = "Enabled" | "Disabled" | "PendingDeletion";

export interface KmsKey {
  /** A UUID, as KMS's key ids are. */
  id: string;
  arn: string;
  description: string;
  state: KeyState;
  /** AWS for an AWS-managed key (aws/ebs), CUSTOMER for a key made with CreateKey. */
  manager: "AWS" | "CUSTOMER";
  creationDate: Date;
  deletionDate?: Date;
  pendingWindowInDays?: number;
  tags: Array<{ TagKey: string; TagValue: string }>;
}

export interface KmsAlias {
  /** `alias/...` */
  name: string;
  targetKeyId: string;
  creationDate: Date;
  lastUpdatedDate: Date;
}

export const EBS_ALIAS = "alias/aws/ebs";

/** What EC2 in `region` calls a key used through it (the kms:ViaService condition key's value). */
export function ec2ViaService(region: string): string {
  return `ec2.${region}.amazonaws.com`;
}

export function keyArn(region: string, id: string): string {
  return `arn:aws:kms:${region}:${ACCOUNT_ID}:key/${id}`;
}

export function aliasArn(region: string, name: string): string {
  return `arn:aws:kms:${region}:${ACCOUNT_ID}:${name}`;
}

const KEY_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What a key reference names, before it is looked up. */
export type KeyRef = { kind: "key"; id: string } | { kind: "alias"; name: string } | { kind: "invalid" };

/**
 * Parse a key id, key ARN, alias name or alias ARN of this account in `region`. An ARN of another
 * region names no key here (a KMS key and its aliases belong to one region).
 */
export function parseKeyRef(ref: string, region: string): KeyRef {
  if (KEY_ID_RE.test(ref)) return { kind: "key", id: ref };
  if (ref.startsWith("alias/") && ref.length > 6) return { kind: "alias", name: ref };
  const arnPrefix = `arn:aws:kms:${region}:${ACCOUNT_ID}:`;
  if (ref.startsWith(arnPrefix)) {
    const rest = ref.slice(arnPrefix.length);
    if (rest.startsWith("key/") && KEY_ID_RE.test(rest.slice(4))) return { kind: "key", id: rest.slice(4) };
    if (rest.startsWith("alias/") && rest.length > 6) return { kind: "alias", name: rest };
  }
  return { kind: "invalid" };
}

/** The KMS keys and aliases of one region. */
export class KmsStore {
  readonly keys = new Map<string, KmsKey>();
  readonly aliases = new Map<string, KmsAlias>();
  readonly ebsKey: KmsKey;

  constructor(
    readonly region: string,
    now: Date = new Date(),
  ) {
    this.ebsKey = this.createKey(
      { description: "Default key that protects my EBS volumes when no other key is defined", manager: "AWS" },
      now,
    );
    this.aliases.set(EBS_ALIAS, { name: EBS_ALIAS, targetKeyId: this.ebsKey.id, creationDate: now, lastUpdatedDate: now });
  }

  createKey(opts: { description: string; manager: "AWS" | "CUSTOMER"; tags?: KmsKey["tags"] }, now: Date = new Date()): KmsKey {
    const id = randomUUID();
    const key: KmsKey = {
      id,
      arn: keyArn(this.region, id),
      description: opts.description,
      state: "Enabled",
      manager: opts.manager,
      creationDate: now,
      tags: opts.tags ?? [],
    };
    this.keys.set(id, key);
    return key;
  }

  /** The key a reference names, or undefined when it names none (unknown key, unknown alias, bad form). */
  find(ref: string): KmsKey | undefined {
    const r = parseKeyRef(ref, this.region);
    if (r.kind === "key") return this.keys.get(r.id);
    if (r.kind === "alias") {
      const a = this.aliases.get(r.name);
      return a ? this.keys.get(a.targetKeyId) : undefined;
    }
    return undefined;
  }
}
