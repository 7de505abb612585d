/**
 * Instance identity verification: the document IMDS serves at dynamic/instance-identity/document
 * must carry a valid RSA-SHA256 signature (dynamic/instance-identity/signature) from the pinned
 * certificate (AWS's per-region RSA certificate, or localcloud's).
 */
import { X509Certificate, verify, type KeyObject } from "node:crypto";
import { readFileSync, existsSync } from "node:fs";

export interface IdentityDocument {
  instanceId: string;
  region: string;
  availabilityZone: string;
  instanceType: string;
  imageId: string;
  privateIp: string | null;
  accountId: string;
  pendingTime: string | null;
}

export class IdentityError extends Error {
  override name = "IdentityError";
}

/** PEM text, or a path to a PEM file. */
export function loadCertificate(pemOrPath: string): KeyObject {
  const pem = pemOrPath.includes("-----BEGIN") ? pemOrPath : existsSync(pemOrPath) ? readFileSync(pemOrPath, "utf8") : null;
  if (pem === null) throw new IdentityError(`identityCertificate: ${JSON.stringify(pemOrPath)} is neither PEM text nor a readable file`);
  try {
    return new X509Certificate(pem).publicKey;
  } catch (err) {
    throw new IdentityError(`identityCertificate: not a valid X.509 certificate (${(err as Error).message})`);
  }
}

/** The certificate's key, or the key of the region a document names (AWS signs each region's documents with its own). */
export type IdentityKeys = KeyObject | ((region: string) => KeyObject | null);

/** Verify and parse; throws IdentityError saying why the identity is refused. */
export function verifyIdentity(document: string, signatureB64: string, keys: IdentityKeys): IdentityDocument {
  let publicKey: KeyObject;
  if (typeof keys === "function") {
    // The region is read before the signature is checked only to pick the key: a document that names
    // another region than the one that signed it fails the check like any forgery.
    let claimed: unknown;
    try {
      claimed = (JSON.parse(document) as Record<string, unknown>).region;
    } catch {
      throw new IdentityError("identity document is not JSON");
    }
    const region = typeof claimed === "string" ? claimed : "";
    const key = keys(region);
    if (!key)
      throw new IdentityError(
        `identity document names region ${JSON.stringify(region.slice(0, 32))}, which this coordinator does not manage`,
      );
    publicKey = key;
  } else publicKey = keys;
  let sig: Buffer;
  try {
    sig = Buffer.from(signatureB64.replace(/\s+/g, ""), "base64");
  } catch {
    throw new IdentityError("identity signature is not base64");
  }
  let ok = false;
  try {
    ok = sig.length > 0 && verify("sha256", Buffer.from(document, "utf8"), publicKey, sig);
  } catch {
    ok = false;
  }
  if (!ok) throw new IdentityError("identity document signature does not verify against the configured certificate");
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(document) as Record<string, unknown>;
  } catch {
    throw new IdentityError("identity document is not JSON");
  }
  const str = (k: string) => (typeof doc[k] === "string" ? (doc[k] as string) : null);
  const instanceId = str("instanceId");
  if (!instanceId || !/^i-[0-9a-f]{8,17}$/.test(instanceId)) throw new IdentityError("identity document has no valid instanceId");
  return {
    instanceId,
    region: str("region") ?? "",
    availabilityZone: str("availabilityZone") ?? "",
    instanceType: str("instanceType") ?? "",
    imageId: str("imageId") ?? "",
    privateIp: str("privateIp"),
    accountId: str("accountId") ?? "",
    pendingTime: str("pendingTime"),
  };
}
