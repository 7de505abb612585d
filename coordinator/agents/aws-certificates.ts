/**
 * The AWS instance identity certificates shipped with spotkeep (certs/aws-identity/<region>.pem):
 * AWS's published RSA certificate for each region, so a coordinator on AWS verifies identity
 * documents without anyone copying a certificate by hand.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const REGION_RE = /^[a-z]{2}(-gov)?-[a-z]+-\d$/;

/** certs/aws-identity of the spotkeep package this module belongs to (from sources or from dist/cli/). */
export function shippedCertificateDir(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  for (let dir = start; ; ) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "spotkeep")
      return join(dir, "certs", "aws-identity");
    const up = dirname(dir);
    if (up === dir) throw new Error(`no spotkeep package.json at or above ${start}`);
    dir = up;
  }
}

/** Regions with a shipped certificate, sorted. */
export function shippedRegions(dir = shippedCertificateDir()): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".pem"))
    .map((f) => f.slice(0, -".pem".length))
    .filter((r) => REGION_RE.test(r))
    .sort();
}

/** The shipped certificate file for `region`, or null when none ships for it. */
export function shippedCertificatePath(region: string, dir = shippedCertificateDir()): string | null {
  if (!REGION_RE.test(region)) return null;
  const file = join(dir, `${region}.pem`);
  return existsSync(file) ? file : null;
}

const AWS_HOST = /(^|\.)amazonaws\.com(\.cn)?$/;

/** True for AWS itself: no EC2 endpoint override, or one on an amazonaws.com host (a regional or VPC endpoint). */
export function isAwsEc2(ec2Endpoint: string | undefined): boolean {
  if (!ec2Endpoint) return true;
  try {
    return AWS_HOST.test(new URL(ec2Endpoint).hostname);
  } catch {
    return false;
  }
}
