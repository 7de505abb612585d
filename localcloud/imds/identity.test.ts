import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
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

function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

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

  it.skipIf(!hasOpenssl())("openssl smime -verify accepts the PKCS#7 exactly as AWS documents for /rsa2048", async () => {
    const signer = await loadOrCreateSigner(dir);
    const armoured = `-----BEGIN PKCS7-----\n${signer
      .signPkcs7(document)
      .match(/.{1,64}/g)!
      .join("\n")}\n-----END PKCS7-----\n`;
    const p7Path = path.join(dir, "doc.p7");
    const certPath = path.join(dir, "cert-copy.pem");
    writeFileSync(p7Path, armoured);
    writeFileSync(certPath, signer.certificatePem);
    const out = execFileSync("openssl", ["smime", "-verify", "-in", p7Path, "-inform", "PEM", "-certfile", certPath, "-noverify"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    expect(out.toString("utf8")).toBe(document);
  });
});
