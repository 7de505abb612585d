/**
 * KMS in the AWS JSON 1.1 protocol `@aws-sdk/client-kms` speaks: POST / with
 * `X-Amz-Target: TrentService.<Action>` and a JSON body; errors are `{"__type", "message"}` with
 * HTTP 400. It shares the port with the EC2 Query API: a request is KMS's when its SigV4
 * credential scope names the `kms` service. The actions are the key and alias management EBS
 * encryption needs: CreateKey (symmetric encryption keys only), DescribeKey, ListKeys,
 * CreateAlias, ListAliases, DisableKey, EnableKey, ScheduleKeyDeletion, CancelKeyDeletion. When an
 * IAM policy is enforced, each call is authorised as kms:<Action> on the key's ARN (CreateAlias
 * also on the alias's ARN; CreateKey, ListKeys and ListAliases on `*`), and a refusal is KMS's
 * AccessDeniedException. Requests are bounded before parsing; signatures are not checked.
 */
import { jsonSender, readJsonObject } from "../json-api.js";
import type { IncomingMessage, ServerResponse } from "node:http";
import { enforcerFor } from "../iam/enforcer.js";
import { PRINCIPAL } from "../iam/message.js";
import { contextOf, evaluate } from "../iam/policy.js";
import { ACCOUNT_ID } from "../world/catalog.js";
import type { World } from "../world/world.js";
import { aliasArn, type KmsAlias, type KmsKey, type KmsStore, parseKeyRef } from "./keys.js";

export const KMS_TARGET_PREFIX = "TrentService.";
const MAX_BODY = 64 * 1024;
const KEY_SPECS = [
  "RSA_2048",
  "RSA_3072",
  "RSA_4096",
  "ECC_NIST_P256",
  "ECC_NIST_P384",
  "ECC_NIST_P521",
  "ECC_SECG_P256K1",
  "SYMMETRIC_DEFAULT",
  "HMAC_224",
  "HMAC_256",
  "HMAC_384",
  "HMAC_512",
  "SM2",
  "ML_DSA_44",
  "ML_DSA_65",
  "ML_DSA_87",
];
const KEY_USAGES = ["SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT"];
const ORIGINS = ["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"];
const ALIAS_RE = /^alias\/[a-zA-Z0-9/_-]{1,250}$/;

export function isKmsRequest(req: IncomingMessage): boolean {
  const auth = req.headers.authorization;
  return typeof auth === "string" && /Credential=[^/,\s]+\/\d{8}\/[a-z0-9-]+\/kms\/aws4_request/.test(auth);
}

export class KmsError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

type Body = Record<string, unknown>;

function validation(field: string, value: unknown, constraint: string): KmsError {
  return new KmsError(
    "ValidationException",
    `1 validation error detected: Value '${String(value).slice(0, 256)}' at '${field}' failed to satisfy constraint: ${constraint}`,
  );
}

function str(b: Body, name: string, field: string, required: boolean, max = 2048): string | undefined {
  const v = b[name];
  if (v === undefined || v === null) {
    if (required) throw validation(field, null, "Member must not be null");
    return undefined;
  }
  if (typeof v !== "string") throw new KmsError("SerializationException", `${name} must be a string`);
  if (v.length < 1 || v.length > max) throw validation(field, v, `Member must have length between 1 and ${max}`);
  return v;
}

/** The key a KeyId parameter names (key id, key ARN, alias name, alias ARN), or KMS's NotFoundException. */
function lookupKey(store: KmsStore, ref: string): KmsKey {
  const r = parseKeyRef(ref, store.region);
  if (r.kind === "invalid") throw new KmsError("NotFoundException", `Invalid keyId '${ref.slice(0, 256)}'`);
  if (r.kind === "alias") {
    const a = store.aliases.get(r.name);
    const key = a && store.keys.get(a.targetKeyId);
    if (!key) throw new KmsError("NotFoundException", `Alias ${aliasArn(store.region, r.name)} is not found.`);
    return key;
  }
  const key = store.keys.get(r.id);
  if (!key)
    throw new KmsError(
      "NotFoundException",
      `Key '${ref.startsWith("arn:") ? ref : `arn:aws:kms:${store.region}:${ACCOUNT_ID}:key/${ref}`}' does not exist`,
    );
  return key;
}

/** A key named by id or ARN only (CreateAlias's TargetKeyId, which may not be an alias). */
function lookupKeyNoAlias(store: KmsStore, ref: string): KmsKey {
  if (parseKeyRef(ref, store.region).kind === "alias") throw new KmsError("ValidationException", "Aliases must refer to keys. Not aliases");
  return lookupKey(store, ref);
}

function metadata(k: KmsKey) {
  return {
    AWSAccountId: ACCOUNT_ID,
    KeyId: k.id,
    Arn: k.arn,
    CreationDate: k.creationDate.getTime() / 1000,
    Enabled: k.state === "Enabled",
    Description: k.description,
    KeyUsage: "ENCRYPT_DECRYPT",
    KeyState: k.state,
    DeletionDate: k.deletionDate ? k.deletionDate.getTime() / 1000 : undefined,
    PendingDeletionWindowInDays: k.state === "PendingDeletion" ? k.pendingWindowInDays : undefined,
    Origin: "AWS_KMS",
    KeyManager: k.manager,
    CustomerMasterKeySpec: "SYMMETRIC_DEFAULT",
    KeySpec: "SYMMETRIC_DEFAULT",
    EncryptionAlgorithms: ["SYMMETRIC_DEFAULT"],
    MultiRegion: false,
  };
}

function aliasEntry(region: string, a: KmsAlias) {
  return {
    AliasName: a.name,
    AliasArn: aliasArn(region, a.name),
    TargetKeyId: a.targetKeyId,
    CreationDate: a.creationDate.getTime() / 1000,
    LastUpdatedDate: a.lastUpdatedDate.getTime() / 1000,
  };
}

/** Limit and Marker of ListKeys/ListAliases: the marker is the offset of the next page. */
function page<T>(items: T[], b: Body): { page: T[]; next?: string } {
  const limit = b.Limit === undefined ? 100 : b.Limit;
  if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1 || limit > 1000)
    throw validation("limit", limit, "Member must have value between 1 and 1000");
  let start = 0;
  if (b.Marker !== undefined) {
    if (typeof b.Marker !== "string" || !/^\d{1,6}$/.test(b.Marker)) throw new KmsError("InvalidMarkerException", "Invalid marker.");
    start = Number(b.Marker);
  }
  const out = items.slice(start, start + limit);
  return start + limit < items.length ? { page: out, next: String(start + limit) } : { page: out };
}

/** A key only its service may manage: the AWS-managed aws/ebs key refuses the caller's changes. */
function customerManaged(k: KmsKey, action: string): void {
  if (k.manager === "AWS")
    throw new KmsError(
      "AccessDeniedException",
      `User: ${PRINCIPAL.arn} is not authorized to perform: kms:${action} on resource: ${k.arn} because the key is managed by AWS`,
    );
}

function notPendingDeletion(k: KmsKey): void {
  if (k.state === "PendingDeletion") throw new KmsError("KMSInvalidStateException", `${k.arn} is pending deletion.`);
}

type Authorize = (resource: string) => void;

const ACTIONS: Record<string, (w: World, b: Body, authorize: Authorize) => unknown> = {
  CreateKey(w, b, authorize) {
    const description = b.Description === undefined ? "" : (str(b, "Description", "description", false, 8192) ?? "");
    const usage = str(b, "KeyUsage", "keyUsage", false) ?? "ENCRYPT_DECRYPT";
    if (!KEY_USAGES.includes(usage)) throw validation("keyUsage", usage, `Member must satisfy enum value set: [${KEY_USAGES.join(", ")}]`);
    const spec =
      str(b, "KeySpec", "keySpec", false) ?? str(b, "CustomerMasterKeySpec", "customerMasterKeySpec", false) ?? "SYMMETRIC_DEFAULT";
    if (!KEY_SPECS.includes(spec)) throw validation("keySpec", spec, `Member must satisfy enum value set: [${KEY_SPECS.join(", ")}]`);
    const origin = str(b, "Origin", "origin", false) ?? "AWS_KMS";
    if (!ORIGINS.includes(origin)) throw validation("origin", origin, `Member must satisfy enum value set: [${ORIGINS.join(", ")}]`);
    if (spec === "SYMMETRIC_DEFAULT" && usage !== "ENCRYPT_DECRYPT")
      throw new KmsError("ValidationException", `KeyUsage ${usage} is not compatible with KeySpec SYMMETRIC_DEFAULT`);
    if (spec !== "SYMMETRIC_DEFAULT" || usage !== "ENCRYPT_DECRYPT")
      throw new KmsError(
        "UnsupportedOperationException",
        `localcloud's KMS creates symmetric encryption keys only (KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT), not ${spec}/${usage}`,
      );
    if (origin !== "AWS_KMS")
      throw new KmsError("UnsupportedOperationException", `localcloud's KMS creates keys with Origin AWS_KMS only, not ${origin}`);
    if (b.MultiRegion === true) throw new KmsError("UnsupportedOperationException", "localcloud's KMS creates single-Region keys only");
    if (b.CustomKeyStoreId !== undefined)
      throw new KmsError("CustomKeyStoreNotFoundException", "localcloud's KMS has no custom key stores");
    if (b.Policy !== undefined) str(b, "Policy", "policy", false, 32768);
    const tags: KmsKey["tags"] = [];
    if (b.Tags !== undefined) {
      if (!Array.isArray(b.Tags)) throw new KmsError("SerializationException", "Tags must be a list");
      if (b.Tags.length > 50) throw new KmsError("TagException", "A KMS key can have at most 50 tags");
      for (const t of b.Tags as Body[]) {
        const key = str(t ?? {}, "TagKey", "tags.member.tagKey", true, 128)!;
        const value = str(t ?? {}, "TagValue", "tags.member.tagValue", true, 256) ?? "";
        if (key.startsWith("aws:")) throw new KmsError("TagException", `Tag key ${key} uses the reserved aws: prefix`);
        tags.push({ TagKey: key, TagValue: value });
      }
    }
    authorize("*");
    return { KeyMetadata: metadata(w.kms.createKey({ description, manager: "CUSTOMER", tags })) };
  },

  DescribeKey(w, b, authorize) {
    const key = lookupKey(w.kms, str(b, "KeyId", "keyId", true)!);
    authorize(key.arn);
    return { KeyMetadata: metadata(key) };
  },

  ListKeys(w, b, authorize) {
    authorize("*");
    const { page: keys, next } = page([...w.kms.keys.values()], b);
    return { Keys: keys.map((k) => ({ KeyId: k.id, KeyArn: k.arn })), Truncated: next !== undefined, NextMarker: next };
  },

  CreateAlias(w, b, authorize) {
    const name = str(b, "AliasName", "aliasName", true, 256)!;
    if (!ALIAS_RE.test(name))
      throw validation("aliasName", name, "Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$");
    if (name.startsWith("alias/aws/"))
      throw new KmsError("NotAuthorizedException", `The alias ${name} begins with alias/aws/, which is reserved for AWS managed keys`);
    const key = lookupKeyNoAlias(w.kms, str(b, "TargetKeyId", "targetKeyId", true)!);
    authorize(aliasArn(w.region, name));
    authorize(key.arn);
    if (w.kms.aliases.has(name))
      throw new KmsError("AlreadyExistsException", `An alias with the name ${aliasArn(w.region, name)} already exists`);
    customerManaged(key, "CreateAlias");
    notPendingDeletion(key);
    const now = new Date();
    w.kms.aliases.set(name, { name, targetKeyId: key.id, creationDate: now, lastUpdatedDate: now });
    return {};
  },

  ListAliases(w, b, authorize) {
    let aliases = [...w.kms.aliases.values()].sort((x, y) => x.name.localeCompare(y.name));
    const keyId = str(b, "KeyId", "keyId", false);
    if (keyId !== undefined) {
      const key = lookupKeyNoAlias(w.kms, keyId);
      authorize(key.arn);
      aliases = aliases.filter((a) => a.targetKeyId === key.id);
    } else authorize("*");
    const { page: out, next } = page(aliases, b);
    return { Aliases: out.map((a) => aliasEntry(w.region, a)), Truncated: next !== undefined, NextMarker: next };
  },

  DisableKey(w, b, authorize) {
    const key = lookupKey(w.kms, str(b, "KeyId", "keyId", true)!);
    authorize(key.arn);
    customerManaged(key, "DisableKey");
    notPendingDeletion(key);
    key.state = "Disabled";
    return {};
  },

  EnableKey(w, b, authorize) {
    const key = lookupKey(w.kms, str(b, "KeyId", "keyId", true)!);
    authorize(key.arn);
    customerManaged(key, "EnableKey");
    notPendingDeletion(key);
    key.state = "Enabled";
    return {};
  },

  ScheduleKeyDeletion(w, b, authorize) {
    const key = lookupKey(w.kms, str(b, "KeyId", "keyId", true)!);
    const days = b.PendingWindowInDays === undefined ? 30 : b.PendingWindowInDays;
    if (typeof days !== "number" || !Number.isInteger(days) || days < 7 || days > 30)
      throw validation("pendingWindowInDays", days, "Member must have value between 7 and 30");
    authorize(key.arn);
    customerManaged(key, "ScheduleKeyDeletion");
    notPendingDeletion(key);
    key.state = "PendingDeletion";
    key.pendingWindowInDays = days;
    // KMS deletes the key after the window; localcloud keeps it pending (no run lasts that long).
    key.deletionDate = new Date(Date.now() + days * 86_400_000);
    return { KeyId: key.arn, DeletionDate: key.deletionDate.getTime() / 1000, KeyState: key.state, PendingWindowInDays: days };
  },

  CancelKeyDeletion(w, b, authorize) {
    const key = lookupKey(w.kms, str(b, "KeyId", "keyId", true)!);
    authorize(key.arn);
    customerManaged(key, "CancelKeyDeletion");
    if (key.state !== "PendingDeletion") throw new KmsError("KMSInvalidStateException", `${key.arn} is not pending deletion.`);
    // A cancelled deletion leaves the key disabled, as in KMS.
    key.state = "Disabled";
    key.deletionDate = undefined;
    key.pendingWindowInDays = undefined;
    return { KeyId: key.arn };
  },
};

export const KMS_ACTIONS = Object.keys(ACTIONS);

function authorizer(w: World, action: string): Authorize {
  return (resource) => {
    const policy = enforcerFor(w).policy;
    if (!policy) return;
    const context = contextOf({
      "aws:RequestedRegion": w.region,
      "aws:PrincipalAccount": ACCOUNT_ID,
      "aws:PrincipalArn": PRINCIPAL.arn,
      "kms:CallerAccount": ACCOUNT_ID,
    });
    const d = evaluate(policy, { action: `kms:${action}`, resource, context });
    if (d.allowed) return;
    throw new KmsError(
      "AccessDeniedException",
      `User: ${PRINCIPAL.arn} is not authorized to perform: kms:${action} on resource: ${resource} ` +
        (d.explicitDeny
          ? "with an explicit deny in an identity-based policy"
          : `because no identity-based policy allows the kms:${action} action`),
    );
  };
}

export async function handleKms(req: IncomingMessage, res: ServerResponse, deps: { world: World }): Promise<void> {
  const send = jsonSender(res);
  try {
    const target = String(req.headers["x-amz-target"] ?? "");
    const body = await readJsonObject(req, { maxBytes: MAX_BODY, service: "KMS", fail: (type, message) => new KmsError(type, message) });
    if (!target.startsWith(KMS_TARGET_PREFIX))
      throw new KmsError("UnknownOperationException", "a KMS request needs X-Amz-Target: TrentService.<Action>");
    const action = target.slice(KMS_TARGET_PREFIX.length);
    const handler = Object.hasOwn(ACTIONS, action) ? ACTIONS[action] : undefined;
    if (!handler)
      throw new KmsError(
        "UnknownOperationException",
        `localcloud's KMS does not implement ${action.slice(0, 64)} (it implements ${KMS_ACTIONS.join(", ")})`,
      );
    const fault = deps.world.takeFault(action);
    if (fault) throw new KmsError(fault.code, fault.message ?? `localcloud injected fault: ${fault.code}`);
    send(200, handler(deps.world, body as Body, authorizer(deps.world, action)));
  } catch (err) {
    if (err instanceof KmsError) return send(400, { __type: err.type, message: err.message });
    deps.world.log(`internal error in KMS request: ${(err as Error)?.stack ?? String(err)}`);
    send(500, { __type: "KMSInternalException", message: (err as Error)?.message ?? String(err) });
  }
}
