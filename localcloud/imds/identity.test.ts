/**
 * The identity signer in process: RSA-SHA256 and PKCS#7 signatures checked with node:crypto. The
 * cross-check with the openssl binary runs a child process, so it is in test/localcloud/identity-openssl.test.ts.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { identityPaths, loadOrCreateSigner, verifyIdentity, verifyIdentityPkcs7 } from "./identity.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "spotkeep-identity-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const document = `{
  "accountId" : "000000000000",
  "instanceId" : "i-0123456789abcdef0",
  "billingProducts" : null
}`;

describe("localcloud identity signer", () => {
  it("signs with RSA-SHA256 that verifies against its certificate, and rejects a changed document", async () => {
    const signer = await loadOrCreateSigner(dir);
    const sig = signer.signRsaSha256(document);
    expect(verifyIdentity(document, sig, signer.certificatePem)).toBe(true);
    expect(verifyIdentity(document.replace("000000000000", "111111111111"), sig, signer.certificatePem)).toBe(false);
    expect(verifyIdentity(document, "bm90IGEgc2lnbmF0dXJl", signer.certificatePem)).toBe(false);
  });

  it("keeps the same key and certificate across restarts and stores the key privately", async () => {
    const a = await loadOrCreateSigner(dir);
    const b = await loadOrCreateSigner(dir);
    expect(b.certificatePem).toBe(a.certificatePem);
    expect(verifyIdentity(document, a.signRsaSha256(document), b.certificatePem)).toBe(true);
    expect(statSync(identityPaths(dir).key).mode & 0o077).toBe(0);
  });

  it("a different state dir gets a different certificate whose key does not verify the first one's signatures", async () => {
    const other = mkdtempSync(path.join(os.tmpdir(), "spotkeep-identity-"));
    try {
      const a = await loadOrCreateSigner(dir);
      const b = await loadOrCreateSigner(other);
      expect(b.certificatePem).not.toBe(a.certificatePem);
      expect(verifyIdentity(document, a.signRsaSha256(document), b.certificatePem)).toBe(false);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("builds a PKCS#7 SignedData that carries the document and verifies against the certificate", async () => {
    const signer = await loadOrCreateSigner(dir);
    const p7 = signer.signPkcs7(document);
    expect(p7).toMatch(/^[A-Za-z0-9+/=]+$/);
    expect(verifyIdentityPkcs7(p7, signer.certificatePem)).toBe(document);
    const other = mkdtempSync(path.join(os.tmpdir(), "spotkeep-identity-"));
    try {
      const foreign = await loadOrCreateSigner(other);
      expect(verifyIdentityPkcs7(p7, foreign.certificatePem)).toBeNull();
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
