/**
 * localcloud's instance-identity signer: an RSA-2048 key and a self-signed X.509 certificate that
 * play the role of AWS's per-region identity certificate. A coordinator pins the certificate (the
 * control API serves it) and verifies `/signature` or `/rsa2048` exactly as it would against AWS.
 *
 * Persisted under `<stateDir>/identity/{key.pem,cert.pem}` so a restarted localcloud keeps signing
 * with the same key: instances launched before the restart keep verifiable identities.
 *
 * What is served under /latest/dynamic/instance-identity/:
 *  - `/signature`: base64 RSA-SHA256 (PKCS#1 v1.5) over the exact document bytes, as AWS.
 *  - `/rsa2048` and `/pkcs7`: base64 DER (no PEM armour) of a CMS SignedData (RFC 5652) with the
 *    document attached, one signer identified by issuer+serial, SHA-256 + rsaEncryption, no signed
 *    attributes (so the signature is over the content bytes) and no embedded certificate (the
 *    verifier supplies it, as with AWS). AWS signs `/pkcs7` with DSA-SHA1; localcloud has only the
 *    RSA key, so both paths carry the RSA-SHA256 structure. Verify with
 *    `openssl smime -verify -inform PEM -in <armoured> -certfile cert.pem -noverify`.
 */
import { createPrivateKey, createSign, createVerify, X509Certificate } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { generate } from "selfsigned";
import type { IdentitySigner } from "./types.js";
import { TAG, children, derNull, issuerAndSerial, oid, readTlv, smallInteger, tlv } from "./der.js";

const OID_SIGNED_DATA = "1.2.840.113549.1.7.2";
const OID_DATA = "1.2.840.113549.1.7.1";
const OID_SHA256 = "2.16.840.1.101.3.4.2.1";
const OID_RSA = "1.2.840.113549.1.1.1";

export function identityPaths(stateDir: string): { dir: string; key: string; cert: string } {
  const dir = path.join(stateDir, "identity");
  return { dir, key: path.join(dir, "key.pem"), cert: path.join(dir, "cert.pem") };
}

/** Load the signer persisted in `stateDir`, or create (and persist) a new key + certificate. */
export async function loadOrCreateSigner(stateDir: string): Promise<IdentitySigner> {
  const p = identityPaths(stateDir);
  const existing = await readPair(p.key, p.cert);
  if (existing) return createSigner(existing.keyPem, existing.certPem);

  const now = new Date();
  const generated = await generate(
    [
      { name: "commonName", value: "localcloud instance identity" },
      { name: "organizationName", value: "spotkeep localcloud" },
    ],
    {
      keySize: 2048,
      algorithm: "sha256",
      notBeforeDate: new Date(now.getTime() - 24 * 3600 * 1000),
      notAfterDate: new Date(now.getTime() + 20 * 365 * 24 * 3600 * 1000),
    },
  );
  await mkdir(p.dir, { recursive: true, mode: 0o700 });
  // Write both to temp names, then rename: a crash never leaves a key without its certificate
  // that a later start would pair with a new, different certificate.
  await writeFile(`${p.key}.tmp`, generated.private, { mode: 0o600 });
  await writeFile(`${p.cert}.tmp`, generated.cert);
  await rename(`${p.cert}.tmp`, p.cert);
  await rename(`${p.key}.tmp`, p.key);
  return createSigner(generated.private, generated.cert);
}

async function readPair(keyPath: string, certPath: string): Promise<{ keyPem: string; certPem: string } | null> {
  try {
    const [keyPem, certPem] = await Promise.all([readFile(keyPath, "utf8"), readFile(certPath, "utf8")]);
    return { keyPem, certPem };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new Error(`reading localcloud identity key from ${path.dirname(keyPath)}`, { cause: err });
  }
}

/** A signer from PEM key + certificate (exported for tests that want a throwaway signer). */
export function createSigner(keyPem: string, certPem: string): IdentitySigner {
  const cert = new X509Certificate(certPem);
  if (!cert.checkPrivateKey(createPrivateKey(keyPem))) {
    throw new Error("localcloud identity: the private key does not match the certificate");
  }
  const { issuer, serial } = issuerAndSerial(cert.raw);
  // Identity documents change rarely (launch, stop/start) but are fetched often: cache by content.
  const sigCache = new Map<string, string>();
  const pkcs7Cache = new Map<string, string>();
  const remember = (cache: Map<string, string>, doc: string, make: () => string): string => {
    const hit = cache.get(doc);
    if (hit !== undefined) return hit;
    const value = make();
    if (cache.size >= 1000) cache.clear();
    cache.set(doc, value);
    return value;
  };
  const rsaSha256 = (data: Buffer): Buffer => createSign("sha256").update(data).sign(keyPem);

  return {
    certificatePem: certPem,
    signRsaSha256: (document) => remember(sigCache, document, () => rsaSha256(Buffer.from(document, "utf8")).toString("base64")),
    signPkcs7: (document) =>
      remember(pkcs7Cache, document, () => {
        const content = Buffer.from(document, "utf8");
        const sha256 = tlv(TAG.SEQUENCE, oid(OID_SHA256), derNull());
        const signerInfo = tlv(
          TAG.SEQUENCE,
          smallInteger(1),
          tlv(TAG.SEQUENCE, issuer, serial),
          sha256,
          tlv(TAG.SEQUENCE, oid(OID_RSA), derNull()),
          tlv(TAG.OCTET_STRING, rsaSha256(content)),
        );
        const signedData = tlv(
          TAG.SEQUENCE,
          smallInteger(1),
          tlv(TAG.SET, sha256),
          tlv(TAG.SEQUENCE, oid(OID_DATA), tlv(TAG.CONTEXT_0, tlv(TAG.OCTET_STRING, content))),
          tlv(TAG.SET, signerInfo),
        );
        return tlv(TAG.SEQUENCE, oid(OID_SIGNED_DATA), tlv(TAG.CONTEXT_0, signedData)).toString("base64");
      }),
  };
}

/** Tests only (the coordinator has its own verifier): RSA-SHA256 over the exact document bytes. */
export function verifyIdentity(document: string, signatureB64: string, certificatePem: string): boolean {
  try {
    const key = new X509Certificate(certificatePem).publicKey;
    return createVerify("sha256").update(Buffer.from(document, "utf8")).verify(key, Buffer.from(signatureB64, "base64"));
  } catch {
    return false;
  }
}

/**
 * Tests only: check a `/pkcs7` or `/rsa2048` body built by `signPkcs7`; returns the signed document
 * when the signature verifies against the certificate, else null.
 */
export function verifyIdentityPkcs7(pkcs7B64: string, certificatePem: string): string | null {
  try {
    const der = Buffer.from(pkcs7B64, "base64");
    const contentInfo = readTlv(der, 0);
    const [, explicit] = children(der, contentInfo);
    if (!explicit) return null;
    const signedData = children(der, explicit)[0];
    if (!signedData) return null;
    const [, , encap, signerInfos] = children(der, signedData);
    if (!encap || !signerInfos) return null;
    const eContent = children(der, encap)[1];
    const octets = eContent && children(der, eContent)[0];
    if (!octets) return null;
    const content = der.subarray(octets.contentStart, octets.end);
    const signerInfo = children(der, signerInfos)[0];
    const sig = signerInfo && children(der, signerInfo)[4];
    if (!sig) return null;
    const key = new X509Certificate(certificatePem).publicKey;
    const ok = createVerify("sha256").update(content).verify(key, der.subarray(sig.contentStart, sig.end));
    return ok ? content.toString("utf8") : null;
  } catch {
    return null;
  }
}
