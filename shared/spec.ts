/**
 * The stateful instance spec: what a user writes, in JSON or YAML.
 * `parseSpec` fills defaults and enforces cross-field rules; every error names the path.
 */
import { z } from "zod";
import YAML from "yaml";
import { cronProblem } from "./cron.js";
import { OPERATIONS } from "./operations.js";
import { ValidationError } from "./errors.js";
import { zodToValidationError } from "./zod-errors.js";
import { Health, MAINTENANCE_DEFAULT, Maintenance } from "./spec-health.js";

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** Linux device names EC2 accepts for EBS: /dev/sd[a-z], /dev/sd[a-z][1-15], /dev/xvd[a-z], /dev/xvd[a-z][a-z]. */
export const DEVICE_NAME_RE = /^\/dev\/(sd[a-z]([1-9]|1[0-5])?|xvd[a-z]{1,2}([1-9]|1[0-5])?)$/;
const REGION_RE = /^[a-z]{2}(-gov)?-[a-z]+-\d$/;
const FS_TYPES = ["ext4", "xfs", "ext3", "btrfs"] as const;
const VOLUME_TYPES = ["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"] as const;

/** Size limits per volume type, GiB (EBS documented ranges). */
const SIZE_LIMITS: Record<(typeof VOLUME_TYPES)[number], [number, number]> = {
  gp2: [1, 16384],
  gp3: [1, 16384],
  io1: [4, 16384],
  io2: [4, 65536],
  st1: [125, 16384],
  sc1: [125, 16384],
  standard: [1, 1024],
};

const ipv4 = z.ipv4({ message: "is not an IPv4 address" });

/** Kernel filesystems and device nodes: never a place to mount a data volume. */
const SYSTEM_TREES = ["/proc", "/sys", "/dev"];

/**
 * An absolute, normalised path: no `.` or `..` segment, no empty segment (`//`), no control
 * characters; parseSpec drops a trailing slash. Not `/` and not inside /proc, /sys or /dev.
 */
const MountPoint = z
  .string()
  .max(1024, { message: "is longer than 1024 characters" })
  .superRefine((p, ctx) => {
    const fail = (message: string) => ctx.addIssue({ code: "custom", message });
    if (!p.startsWith("/")) return fail("must be an absolute path");
    if ([...p].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) return fail("must not contain control characters");
    const body = p.length > 1 && p.endsWith("/") ? p.slice(0, -1) : p;
    if (body === "/") return fail("cannot be / (the root volume is persisted with persistence.root)");
    const segments = body.slice(1).split("/");
    if (segments.some((seg) => seg === "")) return fail(`${JSON.stringify(p)} has an empty segment (//)`);
    if (segments.some((seg) => seg === "." || seg === ".."))
      return fail(`${JSON.stringify(p)} has a . or .. segment; write the path it means`);
    const tree = SYSTEM_TREES.find((t) => body === t || body.startsWith(`${t}/`));
    if (tree) return fail(`${JSON.stringify(p)} is inside ${tree}, which belongs to the kernel`);
  });

/**
 * A KMS key as EC2 accepts it in KmsKeyId: a key id (a UUID, or mrk-… for a multi-Region key), a key
 * ARN, an alias name (alias/…) or an alias ARN.
 */
const KMS_KEY_ID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}";
const KMS_ALIAS = "alias/[A-Za-z0-9/_-]{1,250}";
const KMS_KEY_RE = new RegExp(`^((${KMS_KEY_ID})|${KMS_ALIAS}|arn:aws[a-z-]*:kms:[a-z0-9-]+:\\d{12}:(key/(${KMS_KEY_ID})|${KMS_ALIAS}))$`);

/** EBS encryption of every volume, snapshot and image spotkeep creates for the instance. */
const Encryption = z
  .object({
    encrypted: z.boolean().default(false),
    /** Absent: the account's default EBS key (aws/ebs unless the account chose another). */
    kmsKeyId: z
      .string()
      .regex(KMS_KEY_RE, { message: "is not a KMS key id, key ARN, alias name (alias/…) or alias ARN" })
      .refine((k) => !k.startsWith("alias/aws/") || k === "alias/aws/ebs", { message: "names an AWS-managed key other than alias/aws/ebs" })
      .optional(),
  })
  .strict();

/** The root volume of every generation: absent fields keep what the image maps. */
const RootVolume = z
  .object({
    sizeGiB: z.number().int({ message: "must be a whole number of GiB" }).positive({ message: "must be positive" }).optional(),
    type: z
      .enum(["gp2", "gp3", "io1", "io2", "standard"], {
        message: "must be gp2, gp3, io1, io2 or standard (a root volume cannot be st1 or sc1)",
      })
      .optional(),
    iops: z.number().int().positive().optional(),
    throughput: z.number().int().positive().optional(),
  })
  .strict();

const Volume = z
  .object({
    device: z.string().refine((d) => DEVICE_NAME_RE.test(d), {
      error: (iss) => `${JSON.stringify(iss.input)} is not a valid device name (use /dev/sdf…/dev/sdp or /dev/xvdf…)`,
    }),
    sizeGiB: z.number().int({ message: "must be a whole number of GiB" }).positive({ message: "must be positive" }),
    type: z.enum(VOLUME_TYPES).default("gp3"),
    iops: z.number().int().positive().optional(),
    throughput: z.number().int().positive().optional(),
    /** Where the agent mounts it; only a volume adopted by `volumeId` may leave it out (attached, reported unmounted). */
    mountPoint: MountPoint.optional(),
    fsType: z.enum(FS_TYPES).default("ext4"),
    /** Import an existing volume instead of creating one. */
    volumeId: z
      .string()
      .regex(/^vol-[0-9a-f]{8,17}$/, { message: "is not a volume id (vol-…)" })
      .optional(),
  })
  .strict();

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/** "Mon:02:00-Mon:04:00" as minutes from Sunday 00:00 UTC; null when it is not such a window. */
export function parseWeeklyWindow(w: string): { start: number; end: number } | null {
  const m = /^(Sun|Mon|Tue|Wed|Thu|Fri|Sat):([01]\d|2[0-3]):([0-5]\d)-(Sun|Mon|Tue|Wed|Thu|Fri|Sat):([01]\d|2[0-3]):([0-5]\d)$/.exec(w);
  if (!m) return null;
  const at = (d: string, h: string, min: string) => DAYS.indexOf(d) * 1440 + Number(h) * 60 + Number(min);
  const start = at(m[1] as string, m[2] as string, m[3] as string);
  const end = at(m[4] as string, m[5] as string, m[6] as string);
  return start === end ? null : { start, end };
}

/** Whether the instant `at` (epoch ms) lies in the weekly UTC window (which may wrap past Saturday). */
export function inWeeklyWindow(w: string, at: number): boolean {
  const win = parseWeeklyWindow(w);
  if (!win) return false;
  const d = new Date(at);
  const now = d.getUTCDay() * 1440 + d.getUTCHours() * 60 + d.getUTCMinutes();
  return win.start < win.end ? now >= win.start && now < win.end : now >= win.start || now < win.end;
}

const Market = z
  .object({
    type: z.enum(["spot", "on-demand"]).default("spot"),
    fallbackToOnDemand: z.boolean().default(true),
    revertToSpot: z.boolean().default(true),
    /** When (UTC) a move back to spot may happen, e.g. "Mon:02:00-Mon:04:00"; any time when absent. */
    revertWindow: z
      .string()
      .refine((w) => parseWeeklyWindow(w) !== null, { message: 'must be a weekly UTC window such as "Mon:02:00-Mon:04:00"' })
      .optional(),
    maxPrice: z
      .string()
      .regex(/^\d+(\.\d+)?$/, { message: 'must be a decimal price such as "0.05"' })
      .optional(),
  })
  .strict();

const Launch = z
  .object({
    imageId: z.string().regex(/^ami-[0-9a-f]{8,17}$/, { message: "is not an AMI id (ami-…)" }),
    instanceTypes: z
      .array(z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, { message: "is not an instance type (such as m6i.large)" }))
      .min(1, { message: "needs at least one instance type" }),
    subnetIds: z
      .array(z.string().regex(/^subnet-[0-9a-f]{8,17}$/, { message: "is not a subnet id (subnet-…)" }))
      .min(1, { message: "needs at least one subnet" }),
    securityGroupIds: z.array(z.string().regex(/^sg-[0-9a-f]{8,17}$/, { message: "is not a security group id (sg-…)" })).default([]),
    iamInstanceProfile: z.string().min(1).optional(),
    /** An EC2 key pair name, for SSH access to every generation. */
    keyName: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[\x20-\x7e]+$/, { message: "must be printable ASCII (an EC2 key pair name)" })
      .optional(),
    userData: z
      .string()
      .max(12_000, { message: "is longer than 12000 characters (EC2 allows 16 KB after spotkeep's bootstrap)" })
      .default(""),
    tags: z.record(z.string().min(1).max(128), z.string().max(256)).default({}),
    market: Market.default({ type: "spot", fallbackToOnDemand: true, revertToSpot: true }),
    rootVolume: RootVolume.optional(),
  })
  .strict();

const Network = z
  .object({
    privateIp: z.enum(["same-eni", "pool", "none"]).default("same-eni"),
    ipPool: z.array(ipv4).default([]),
    attach: z.enum(["primary", "secondary"]).default("primary"),
  })
  .strict();

const Persistence = z
  .object({
    root: z.boolean().default(false),
    volumes: z.array(Volume).max(26).default([]),
    dataMethod: z.enum(["reattach", "snapshot"]).default("reattach"),
    network: Network.default({ privateIp: "same-eni", ipPool: [], attach: "primary" }),
    encryption: Encryption.default({ encrypted: false }),
  })
  .strict();

/**
 * A region that gets a copy of every snapshot and image spotkeep keeps for the instance (disaster
 * recovery): the region alone, or with the KMS key (of that region) the copies are encrypted with.
 */
const CopyRegion = z.preprocess(
  (v) => (typeof v === "string" ? { region: v } : v),
  z
    .object({
      region: z.string().regex(REGION_RE, { message: "is not an AWS region (such as us-west-2)" }),
      /** Absent: the destination's default EBS key when the copy is encrypted (a copy of an encrypted snapshot always is). */
      kmsKeyId: z.string().regex(KMS_KEY_RE, { message: "is not a KMS key id, key ARN, alias name (alias/…) or alias ARN" }).optional(),
    })
    .strict(),
);

const Snapshots = z
  .object({
    intervalMinutes: z.number().int().min(0).max(10_080).default(0),
    keep: z.number().int().min(1).max(100).default(3),
    consistency: z.enum(["crash", "freeze", "hooks"]).default("freeze"),
    root: z.boolean().default(false),
    /** Regions that hold a copy of every kept data snapshot and root image, deleted with its original. */
    copyToRegions: z.array(CopyRegion).max(5).default([]),
  })
  .strict();

const HooksSpec = z
  .object({
    preStop: z.string().max(4096).optional(),
    postRestore: z.string().max(4096).optional(),
    timeoutSeconds: z.number().int().positive().max(3600).default(60),
  })
  .strict();

/** A scheduled task runs one of the operations an operator starts by name. */
export const SCHEDULE_ACTIONS = OPERATIONS;

/** Scheduled tasks and load-balancer targets (coordinator/tasks.ts, coordinator/workflow/runbooks/targets.ts). */

const ScheduledTask = z
  .object({
    action: z.enum(SCHEDULE_ACTIONS, { message: `must be one of ${SCHEDULE_ACTIONS.join(", ")}` }),
    /** Five fields, UTC: minute hour day-of-month month day-of-week ("0 20 * * 1-5"). */
    cron: z.string().superRefine((c, ctx) => {
      const problem = cronProblem(c);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
  })
  .strict();

const TARGET_GROUP_ARN_RE = /^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:targetgroup\/[A-Za-z0-9-]{1,32}\/[0-9a-f]{16}$/;

const LoadBalancers = z
  .object({
    /** Target groups of target type `instance`; IP-target groups need nothing (the private IP is kept). */
    targetGroupArns: z
      .array(
        z.string().regex(TARGET_GROUP_ARN_RE, {
          message: "is not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)",
        }),
      )
      .min(1, { message: "needs at least one target group ARN" })
      .max(5, { message: "lists more than 5 target groups" }),
    /** Longest wait (model seconds) for the old instance to drain after it is deregistered, before quiesce. */
    drainingSeconds: z.number().int({ message: "must be a whole number of seconds" }).min(0).max(3600).default(30),
  })
  .strict();

export const StatefulInstanceSpec = z
  .object({
    name: z.string().refine((n) => NAME_RE.test(n), {
      error: (iss) =>
        `${JSON.stringify(iss.input)} must be 1-63 lowercase letters, digits or dashes, starting and ending with a letter or digit`,
    }),
    region: z.string().regex(REGION_RE, { message: "is not an AWS region (such as us-east-1)" }).default("us-east-1"),
    launch: Launch,
    persistence: Persistence.default({
      root: false,
      volumes: [],
      dataMethod: "reattach",
      network: { privateIp: "same-eni", ipPool: [], attach: "primary" },
      encryption: { encrypted: false },
    }),
    snapshots: Snapshots.default({ intervalMinutes: 0, keep: 3, consistency: "freeze", root: false, copyToRegions: [] }),
    hooks: HooksSpec.default({ timeoutSeconds: 60 }),
    onRebalance: z.enum(["ignore", "snapshot", "recycle"]).default("snapshot"),
    // Health checks and autohealing (absent: none), and what to do ahead of EC2 scheduled maintenance.
    health: Health.optional(),
    maintenance: Maintenance.default(MAINTENANCE_DEFAULT),
    schedule: z.array(ScheduledTask).max(20, { message: "lists more than 20 tasks" }).default([]),
    loadBalancers: LoadBalancers.optional(),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const add = (path: PropertyKey[], message: string) => ctx.addIssue({ code: "custom", path, message });
    const net = spec.persistence.network;
    if (net.privateIp === "pool" && net.ipPool.length === 0)
      add(["persistence", "network", "ipPool"], "must list at least one address when privateIp is pool");
    if (net.privateIp !== "pool" && net.ipPool.length > 0)
      add(["persistence", "network", "ipPool"], `is only used when privateIp is pool (it is ${net.privateIp})`);
    if (net.attach === "secondary" && net.privateIp !== "same-eni")
      add(["persistence", "network", "attach"], "secondary attachment needs privateIp: same-eni");
    const devices = new Map<string, number>();
    const mounts = new Map<string, number>();
    spec.persistence.volumes.forEach((v, i) => {
      const canon = canonicalDevice(v.device);
      const prevDev = devices.get(canon);
      if (prevDev !== undefined)
        add(["persistence", "volumes", i, "device"], `${JSON.stringify(v.device)} is already used by persistence.volumes[${prevDev}]`);
      devices.set(canon, i);
      if (v.mountPoint === undefined) {
        if (v.volumeId === undefined)
          add(
            ["persistence", "volumes", i, "mountPoint"],
            "is required (only a volume adopted by volumeId may leave it out: it is then attached but not mounted)",
          );
      } else {
        const prevMount = mounts.get(v.mountPoint);
        if (prevMount !== undefined)
          add(
            ["persistence", "volumes", i, "mountPoint"],
            `${JSON.stringify(v.mountPoint)} is already used by persistence.volumes[${prevMount}]`,
          );
        mounts.set(v.mountPoint, i);
      }
      if (/^\/dev\/(sda|xvda)/.test(v.device))
        add(["persistence", "volumes", i, "device"], `${JSON.stringify(v.device)} is the root device; data volumes use /dev/sdf…/dev/sdp`);
      for (const [field, message] of volumeSettingProblems(v.type, v)) add(["persistence", "volumes", i, field], message);
    });
    const root = spec.launch.rootVolume;
    for (const [field, message] of root ? volumeSettingProblems(root.type, root) : []) add(["launch", "rootVolume", field], message);
    const enc = spec.persistence.encryption;
    if (enc.kmsKeyId !== undefined && !enc.encrypted) add(["persistence", "encryption", "kmsKeyId"], "needs encrypted: true");
    const keyRegion = enc.kmsKeyId?.startsWith("arn:") ? enc.kmsKeyId.split(":")[3] : undefined;
    if (keyRegion && keyRegion !== spec.region)
      add(
        ["persistence", "encryption", "kmsKeyId"],
        `is in ${keyRegion}, not in the instance's region ${spec.region} (EBS uses a key of its own region)`,
      );
    const market = spec.launch.market;
    if (market.type === "on-demand" && market.maxPrice !== undefined) add(["launch", "market", "maxPrice"], "is only used with type: spot");
    if (spec.snapshots.intervalMinutes > 0 && spec.snapshots.intervalMinutes < 5)
      add(["snapshots", "intervalMinutes"], "must be 0 (off) or at least 5");
    if (spec.snapshots.root && !spec.persistence.root)
      add(["snapshots", "root"], "needs persistence.root: true (the root images are what the next generation boots from)");
    const copyRegions = new Map<string, number>();
    spec.snapshots.copyToRegions.forEach((c, i) => {
      if (c.region === spec.region) add(["snapshots", "copyToRegions", i, "region"], `is the instance's own region (${spec.region})`);
      const prev = copyRegions.get(c.region);
      if (prev !== undefined) add(["snapshots", "copyToRegions", i, "region"], `repeats snapshots.copyToRegions[${prev}]`);
      copyRegions.set(c.region, i);
      const keyIn = c.kmsKeyId?.startsWith("arn:") ? c.kmsKeyId.split(":")[3] : undefined;
      if (keyIn && keyIn !== c.region)
        add(
          ["snapshots", "copyToRegions", i, "kmsKeyId"],
          `is in ${keyIn}, not in ${c.region} (a copy is encrypted with a key of its own region)`,
        );
    });
    const tasks = new Map<string, number>();
    spec.schedule.forEach((t, i) => {
      const key = `${t.action} ${t.cron}`;
      const prev = tasks.get(key);
      if (prev !== undefined) add(["schedule", i], `repeats schedule[${prev}] (${t.action} at ${JSON.stringify(t.cron)})`);
      tasks.set(key, i);
    });
    const arns = spec.loadBalancers?.targetGroupArns ?? [];
    arns.forEach((arn, i) => {
      if (arns.indexOf(arn) !== i) add(["loadBalancers", "targetGroupArns", i], `repeats targetGroupArns[${arns.indexOf(arn)}]`);
      const region = arn.split(":")[3];
      if (TARGET_GROUP_ARN_RE.test(arn) && region !== spec.region)
        add(["loadBalancers", "targetGroupArns", i], `is in ${region}, not in the instance's region ${spec.region}`);
    });
    for (const key of Object.keys(spec.launch.tags)) {
      if (key.startsWith("aws:")) add(["launch", "tags", key], "the aws: prefix is reserved by AWS");
      if (key.startsWith("spotkeep:")) add(["launch", "tags", key], "the spotkeep: prefix is reserved for spotkeep's own tags");
    }
  });

export type StatefulInstanceSpec = z.infer<typeof StatefulInstanceSpec>;
export type SpecInput = z.input<typeof StatefulInstanceSpec>;
export type VolumeSpec = StatefulInstanceSpec["persistence"]["volumes"][number];

/**
 * What EBS refuses in a volume's size, IOPS and throughput for its type (the documented ranges),
 * as [field, reason] pairs. `type` undefined (a root volume keeping its image's type): only the
 * size's absolute range is checked, and IOPS or throughput need the type named.
 */
function volumeSettingProblems(
  type: (typeof VOLUME_TYPES)[number] | undefined,
  v: { sizeGiB?: number | undefined; iops?: number | undefined; throughput?: number | undefined },
): Array<["sizeGiB" | "iops" | "throughput", string]> {
  const out: Array<["sizeGiB" | "iops" | "throughput", string]> = [];
  if (type === undefined) {
    if (v.sizeGiB !== undefined && v.sizeGiB > 65536) out.push(["sizeGiB", `${v.sizeGiB} is more than EBS's largest volume (65536 GiB)`]);
    if (v.iops !== undefined) out.push(["iops", "needs type (gp3, io1 or io2)"]);
    if (v.throughput !== undefined) out.push(["throughput", "needs type: gp3"]);
    return out;
  }
  const [min, max] = SIZE_LIMITS[type];
  if (v.sizeGiB !== undefined && (v.sizeGiB < min || v.sizeGiB > max))
    out.push(["sizeGiB", `${v.sizeGiB} is outside ${min}..${max} GiB for ${type}`]);
  if (v.iops !== undefined && !["gp3", "io1", "io2"].includes(type))
    out.push(["iops", `is only valid for gp3, io1 and io2 volumes (this one is ${type})`]);
  if (v.throughput !== undefined && type !== "gp3") out.push(["throughput", `is only valid for gp3 volumes (this one is ${type})`]);
  return out;
}

/** A spec's EBS encryption; a spec stored before the field existed has none and asks for no encryption. */
export function encryptionOf(spec: StatefulInstanceSpec): StatefulInstanceSpec["persistence"]["encryption"] {
  return (spec.persistence.encryption as StatefulInstanceSpec["persistence"]["encryption"] | undefined) ?? { encrypted: false };
}

/** /dev/xvdf and /dev/sdf name the same slot. */
export function canonicalDevice(device: string): string {
  return device.replace(/^\/dev\/xvd/, "/dev/sd");
}

/**
 * Parse a spec from JSON or YAML text (or an already-parsed object). Throws ValidationError whose
 * message names every bad path: `persistence.volumes[0].device: "/dev/foo!" is not a valid device name …`.
 */
export function parseSpec(input: string | unknown, source = "spec", o: { region?: string } = {}): StatefulInstanceSpec {
  const data = specData(input, source);
  // A spec without a region is in the region of the coordinator that reads it (us-east-1 elsewhere).
  const parsed = StatefulInstanceSpec.safeParse(o.region && data.region === undefined ? { ...data, region: o.region } : data);
  if (!parsed.success) throw zodToValidationError(parsed.error);
  const spec = parsed.data;
  for (const v of spec.persistence.volumes)
    if (v.mountPoint && v.mountPoint.length > 1 && v.mountPoint.endsWith("/")) v.mountPoint = v.mountPoint.slice(0, -1);
  return spec;
}

/**
 * A spec's text (JSON or YAML) or object as plain data, defaults not filled: what a client sends, so
 * that the coordinator fills what the author left out (the region among them). Throws
 * ValidationError when it is not a mapping.
 */
export function specData(input: string | unknown, source = "spec"): Record<string, unknown> {
  let data: unknown = input;
  if (typeof input === "string") {
    try {
      const doc = YAML.parseDocument(input, { prettyErrors: true, uniqueKeys: true });
      if (doc.errors.length > 0) throw doc.errors[0];
      data = doc.toJS();
    } catch (err) {
      throw new ValidationError([{ path: source, reason: `is not valid JSON or YAML: ${(err as Error).message.split("\n")[0]}` }], {
        cause: err,
      });
    }
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new ValidationError([{ path: source, reason: "must be a mapping with name, launch and persistence" }]);
  }
  return data as Record<string, unknown>;
}
