/** The static part of the seed world: regions and their AZs, instance types and prices, key pairs, platform billing codes. */
import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
/** The region a localcloud serves when none is named (its home region then). */
export const DEFAULT_REGION = "us-east-1";
export const ACCOUNT_ID = "123456789012";
/** Owner of the seeded base AMI and its snapshot (Amazon's public-image account). */
export const AMAZON_OWNER_ID = "137112412989";

/** A commercial or GovCloud region name as AWS writes them: us-east-1, eu-west-2, us-gov-west-1. */
export const REGION_NAME_RE = /^[a-z]{2}(-gov)?-[a-z]+-\d$/;

/** The per-region part of the catalog: the region's three AZs with their zone ids, and the account's key pairs there. */
export interface RegionCatalog {
  region: string;
  azs: readonly string[];
  /** AZ name -> zone id (use1-az1 style). */
  azIds: Readonly<Record<string, string>>;
  keyPairs: readonly KeyPairInfo[];
}

const DIRECTIONS: Record<string, string> = {
  north: "n",
  south: "s",
  east: "e",
  west: "w",
  central: "c",
  northeast: "ne",
  northwest: "nw",
  southeast: "se",
  southwest: "sw",
};

/** The short form AWS's zone ids start with: us-east-1 -> use1, ap-southeast-2 -> apse2, us-gov-west-1 -> usgw1. */
export function zoneIdPrefix(region: string): string {
  const parts = region.split("-");
  const n = parts.pop() ?? "";
  const gov = parts[1] === "gov" ? "g" : "";
  const dir = parts[parts.length - 1] ?? "";
  return `${parts[0]}${gov}${DIRECTIONS[dir] ?? dir.slice(0, 1)}${n}`;
}

const catalogs = new Map<string, RegionCatalog>();

/** The catalog of one region (us-east-1 keeps the zone ids its AZs have in a real account: az1, az2, az4). */
export function regionCatalog(region: string): RegionCatalog {
  let c = catalogs.get(region);
  if (c) return c;
  if (!REGION_NAME_RE.test(region)) throw new RangeError(`${JSON.stringify(region.slice(0, 64))} is not a region name (like us-east-1)`);
  const azs = ["a", "b", "c"].map((l) => `${region}${l}`);
  const prefix = zoneIdPrefix(region);
  const nums = region === "us-east-1" ? [1, 2, 4] : [1, 2, 3];
  const azIds = Object.fromEntries(azs.map((az, i) => [az, `${prefix}-az${nums[i]}`]));
  c = { region, azs, azIds, keyPairs: ["localcloud-key", "localcloud-ops"].map((name, n) => keyPair(name, n, region)) };
  catalogs.set(region, c);
  return c;
}

export const ARCHITECTURES = ["x86_64", "arm64"] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/** The stock (no-node) images are named as Amazon Linux 2023's AMIs: this prefix, then the architecture. */
export const STOCK_IMAGE_NAME_PREFIX = "al2023-ami-2023.6.20241212.0-kernel-6.1-";

export interface InstanceTypeInfo {
  name: string;
  vcpus: number;
  memoryMiB: number;
  architecture: Architecture;
  /** On-demand USD per hour. */
  onDemand: number;
  maxEnis: number;
  ipsPerEni: number;
}

function t(name: string, vcpus: number, memGiB: number, onDemand: number, maxEnis: number, ipsPerEni: number): InstanceTypeInfo {
  return { name, vcpus, memoryMiB: Math.round(memGiB * 1024), architecture: "x86_64", onDemand, maxEnis, ipsPerEni };
}

/** A Graviton (arm64) type. localcloud runs its instances with the host's node and tools whatever the host is. */
function g(name: string, vcpus: number, memGiB: number, onDemand: number, maxEnis: number, ipsPerEni: number): InstanceTypeInfo {
  return { ...t(name, vcpus, memGiB, onDemand, maxEnis, ipsPerEni), architecture: "arm64" };
}

export const INSTANCE_TYPES: readonly InstanceTypeInfo[] = [
  t("t3.micro", 2, 1, 0.0104, 2, 2),
  t("t3.small", 2, 2, 0.0208, 3, 4),
  t("t3.medium", 2, 4, 0.0416, 3, 6),
  t("t3.large", 2, 8, 0.0832, 3, 12),
  t("m5.large", 2, 8, 0.096, 3, 10),
  t("m5.xlarge", 4, 16, 0.192, 4, 15),
  t("m5.2xlarge", 8, 32, 0.384, 4, 15),
  t("m6i.large", 2, 8, 0.096, 3, 10),
  t("m6i.xlarge", 4, 16, 0.192, 4, 15),
  t("m6i.2xlarge", 8, 32, 0.384, 4, 15),
  t("c6i.large", 2, 4, 0.085, 3, 10),
  t("c6i.xlarge", 4, 8, 0.17, 4, 15),
  t("c6i.2xlarge", 8, 16, 0.34, 4, 15),
  // Graviton: us-east-1 Linux on-demand prices; ENI and IPv4-per-ENI limits as EC2 documents them.
  g("t4g.micro", 2, 1, 0.0084, 2, 2),
  g("t4g.small", 2, 2, 0.0168, 3, 4),
  g("t4g.medium", 2, 4, 0.0336, 3, 6),
  g("t4g.large", 2, 8, 0.0672, 3, 12),
  g("m7g.large", 2, 8, 0.0816, 3, 10),
  g("m7g.xlarge", 4, 16, 0.1632, 4, 15),
  g("m7g.2xlarge", 8, 32, 0.3264, 4, 15),
  g("c7g.large", 2, 4, 0.0725, 3, 10),
  g("c7g.xlarge", 4, 8, 0.145, 4, 15),
  g("c7g.2xlarge", 8, 16, 0.289, 4, 15),
];

export function instanceType(name: string): InstanceTypeInfo | undefined {
  return INSTANCE_TYPES.find((x) => x.name === name);
}

/** Graviton cores run one thread each; the x86_64 types here have two threads per core. */
export function threadsPerCore(type: InstanceTypeInfo): 1 | 2 {
  return type.architecture === "arm64" ? 1 : 2;
}

export function coreCount(type: InstanceTypeInfo): number {
  return Math.max(1, type.vcpus / threadsPerCore(type));
}

/** Deterministic spot price per (type, AZ): 28-40% of on-demand, different per AZ letter (the same in every region). */
export function spotPrice(type: InstanceTypeInfo, az: string): number {
  const i = "abc".indexOf(az.slice(-1));
  const factor = [0.31, 0.36, 0.28][i] ?? 0.4;
  return Math.round(type.onDemand * factor * 1e6) / 1e6;
}

/** Volume types and their size limits (GiB). */
export const VOLUME_TYPES: Record<
  string,
  { min: number; max: number; iops: "none" | "optional" | "required"; defaultIops?: (size: number) => number }
> = {
  standard: { min: 1, max: 1024, iops: "none" },
  gp2: { min: 1, max: 16384, iops: "none", defaultIops: (s) => Math.min(16000, Math.max(100, s * 3)) },
  gp3: { min: 1, max: 16384, iops: "optional", defaultIops: () => 3000 },
  io1: { min: 4, max: 16384, iops: "required" },
  io2: { min: 4, max: 65536, iops: "required" },
  st1: { min: 125, max: 16384, iops: "none" },
  sc1: { min: 125, max: 16384, iops: "none" },
};

export const DEVICE_NAME_RE = /^\/dev\/(sd[a-z][1-9]?|sd[b-z][a-z]?|xvd[a-z][a-z]?|xvd[a-z][1-9]?)$/;

/** A key pair EC2 holds for the account (localcloud seeds a fixed set; there is no Create/Import/DeleteKeyPair). */
export interface KeyPairInfo {
  name: string;
  id: string;
  type: "ed25519";
  /** base64 SHA-256 of the public key blob, as EC2 shows ED25519 fingerprints. */
  fingerprint: string;
  /** OpenSSH `ssh-ed25519 AAAA... name` line. */
  publicKey: string;
  createTime: Date;
}

const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/**
 * A deterministic ED25519 key pair per name (the seed is derived from the name, so restarts show the same keys). The same
 * public key is imported in every region, each import with its own key pair id (us-east-1 keeps the ids it always had).
 */
function keyPair(name: string, n: number, region: string): KeyPairInfo {
  const seed = createHash("sha256").update(`localcloud key pair ${name}`).digest();
  const priv = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
  const raw = createPublicKey(priv).export({ format: "der", type: "spki" }).subarray(-32);
  const sshString = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  const blob = Buffer.concat([sshString(Buffer.from("ssh-ed25519")), sshString(raw)]);
  return {
    name,
    id: `key-${createHash("sha256")
      .update(`key-pair-id ${name}${region === DEFAULT_REGION ? "" : ` ${region}`}`)
      .digest("hex")
      .slice(0, 17)}`,
    type: "ed25519",
    fingerprint: createHash("sha256").update(blob).digest("base64"),
    publicKey: `ssh-ed25519 ${blob.toString("base64")} ${name}`,
    createTime: new Date(Date.UTC(2026, 0, 1 + n)),
  };
}

/** The Windows AMI's name in the seed (alongside the Linux base AMI). */
export const WINDOWS_IMAGE_NAME = "Windows_Server-2022-English-Full-Base-localcloud";

/** EC2's billing view of an image's platform: Platform (only "windows" is ever set), PlatformDetails, UsageOperation. */
export function platformInfo(platform: "windows" | undefined): { platformDetails: string; usageOperation: string } {
  return platform === "windows"
    ? { platformDetails: "Windows", usageOperation: "RunInstances:0002" }
    : { platformDetails: "Linux/UNIX", usageOperation: "RunInstances" };
}
