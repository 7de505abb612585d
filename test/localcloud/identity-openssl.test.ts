/**
 * localcloud's PKCS#7 identity signature checked by the openssl binary, the way AWS documents
 * verifying `/rsa2048`: it runs a child process, so it lives here and not beside
 * localcloud/imds/identity.ts (whose in-process tests are in identity.test.ts there).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadOrCreateSigner } from "../../localcloud/imds/identity.js";

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
