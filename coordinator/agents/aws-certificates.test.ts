import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isAwsEc2, shippedCertificateDir, shippedCertificatePath, shippedRegions } from "./aws-certificates.js";
import { loadCertificate, verifyIdentity } from "./identity.js";
import { startCoordinator } from "../service.js";

const FIXTURES = join(import.meta.dirname, "..", "..", "test", "fixtures", "aws-identity");

describe("shipped AWS identity certificates", () => {
  it("ships one RSA certificate per region, each a parseable X.509 certificate", () => {
    const regions = shippedRegions();
    expect(regions.length).toBeGreaterThanOrEqual(37);
    for (const r of ["us-east-1", "us-west-2", "eu-west-1", "ap-northeast-1", "sa-east-1", "us-gov-west-1", "cn-north-1"])
      expect(regions).toContain(r);
    for (const r of regions) {
      const cert = new X509Certificate(readFileSync(shippedCertificatePath(r)!, "utf8"));
      expect(cert.publicKey.asymmetricKeyType, r).toBe("rsa");
    }
  });

  it("us-east-1's verifies identity documents AWS signed, and refuses one changed by a byte", () => {
    const key = loadCertificate(shippedCertificatePath("us-east-1")!);
    for (const n of ["iid0", "iid1"]) {
      const doc = readFileSync(join(FIXTURES, `${n}.document`), "utf8");
      const sig = readFileSync(join(FIXTURES, `${n}.sig`), "utf8");
      expect(verifyIdentity(doc, sig, key).region).toBe("us-east-1");
      expect(() => verifyIdentity(doc.replace("t2.micro", "t3.micro"), sig, key)).toThrow(/does not verify/);
    }
    // Another region's certificate does not verify us-east-1's documents.
    const other = loadCertificate(shippedCertificatePath("ap-south-2")!);
    const doc = readFileSync(join(FIXTURES, "iid0.document"), "utf8");
    expect(() => verifyIdentity(doc, readFileSync(join(FIXTURES, "iid0.sig"), "utf8"), other)).toThrow(/does not verify/);
  });

  it("with one key per managed region, a document is checked with the key of the region it names", () => {
    const doc = readFileSync(join(FIXTURES, "iid0.document"), "utf8");
    const sig = readFileSync(join(FIXTURES, "iid0.sig"), "utf8");
    const east = loadCertificate(shippedCertificatePath("us-east-1")!);
    const west = loadCertificate(shippedCertificatePath("us-west-2")!);
    const keys = new Map([
      ["us-east-1", east],
      ["us-west-2", west],
    ]);
    expect(verifyIdentity(doc, sig, (r) => keys.get(r) ?? null).region).toBe("us-east-1");
    // Naming another managed region picks that region's key, which did not sign it.
    expect(() => verifyIdentity(doc.replace('"us-east-1"', '"us-west-2"'), sig, (r) => keys.get(r) ?? null)).toThrow(/does not verify/);
    // A region the coordinator does not manage has no key at all.
    expect(() => verifyIdentity(doc, sig, (r) => (r === "us-west-2" ? west : null))).toThrow(
      /names region "us-east-1", which this coordinator does not manage/,
    );
    expect(() => verifyIdentity("not json", sig, () => east)).toThrow(/not JSON/);
  });

  it("has nothing for a region that does not ship or a name that is not a region", () => {
    expect(shippedCertificatePath("xx-east-9")).toBeNull();
    expect(shippedCertificatePath("../../package")).toBeNull();
    expect(shippedCertificateDir()).toMatch(/certs[/\\]aws-identity$/);
  });

  it("tells AWS's EC2 endpoints from others", () => {
    expect(isAwsEc2(undefined)).toBe(true);
    expect(isAwsEc2("https://ec2.eu-west-1.amazonaws.com")).toBe(true);
    expect(isAwsEc2("https://vpce-0123-abcd.ec2.us-east-1.vpce.amazonaws.com")).toBe(true);
    expect(isAwsEc2("http://127.0.0.1:4566")).toBe(false);
    expect(isAwsEc2("https://amazonaws.com.evil.example")).toBe(false);
  });

  it("a coordinator on AWS in a region with no shipped certificate refuses to start, naming the region", async () => {
    await expect(startCoordinator({ config: { region: "xx-east-9", dataDir: "/nonexistent/spotkeep" } })).rejects.toThrow(
      /identityCertificate: none ships for region xx-east-9 \(shipped: af-south-1, .*us-west-2\)/,
    );
  });
});
