/**
 * Agent <-> coordinator protocol.
 *
 * WebSocket at /agent/v1/ws, JSON text frames. Every message is `{v, id, type, ...}`.
 * Delivery is at-least-once: the receiver answers `ack` with `ref` = the message id and drops
 * duplicates by id. `ack` itself is never acked.
 */
import { z } from "zod";
import { zodToValidationError } from "./zod-errors.js";
import { ValidationError } from "./errors.js";

export const PROTOCOL_VERSION = 1;
/** Largest frame either side accepts; larger frames close the connection. */
export const MAX_FRAME_BYTES = 256 * 1024;

const id = z.string().min(1).max(128);
const isoTime = z.string().refine((s) => !Number.isNaN(Date.parse(s)), { message: "is not an ISO-8601 time" });
const instanceId = z.string().regex(/^i-[0-9a-f]{8,17}$/, { message: "is not an instance id (i-…)" });
const volumeId = z.string().regex(/^vol-[0-9a-f]{8,17}$/, { message: "is not a volume id (vol-…)" });
const absPath = z.string().min(1).startsWith("/", { message: "must be an absolute path" });
const nonNegMs = z.number().int().nonnegative();

const envelope = {
  v: z.literal(PROTOCOL_VERSION, { message: `must be protocol version ${PROTOCOL_VERSION}` }),
  id,
  /** Sender's wall-clock time, informative only. */
  ts: isoTime.optional(),
};

export const StepTiming = z.object({
  name: z.string().min(1),
  ok: z.boolean(),
  ms: nonNegMs,
  detail: z.string().max(16_384).optional(),
});
export type StepTiming = z.infer<typeof StepTiming>;

export const Hooks = z.object({
  preStop: z.string().optional(),
  postRestore: z.string().optional(),
  timeoutSeconds: z.number().int().positive().max(3600).default(60),
});
export type Hooks = z.infer<typeof Hooks>;

// ---------- agent -> coordinator ----------

/**
 * POST /agent/v1/boot-report: the bootstrap user-data could not start the agent (no usable node and
 * no runtime, a download that fails or does not match its hash, an agent that does not start). The
 * identity document is base64 (the shell sends it as it read it from IMDS), the signature as IMDS
 * serves it; the reason is what the bootstrap logged, reduced to plain characters.
 */
export const BootReport = z
  .object({
    stage: z.enum(["runtime", "agent"]),
    reason: z.string().min(1).max(400),
    document: z
      .string()
      .min(4)
      .max(12_000)
      .regex(/^[A-Za-z0-9+/=]+$/, { message: "must be base64" }),
    signature: z.string().min(1).max(8192),
  })
  .strict();
export type BootReport = z.infer<typeof BootReport>;

export const Hello = z.object({
  ...envelope,
  type: z.literal("hello"),
  /** The instance identity document exactly as IMDS served it, and its base64 RSA-SHA256 signature. */
  identity: z.object({ document: z.string().min(2).max(8192), signature: z.string().min(1).max(8192) }),
  agentVersion: z.string().min(1).max(64),
  mode: z.enum(["run", "restore"]),
  /**
   * The per-generation secret the agent created at its first start on this instance (root-only file).
   * The coordinator registers it at the instance's first hello and requires it afterwards: the
   * identity document alone is readable by any process on the instance.
   */
  sessionSecret: z.string().min(32).max(128),
  /**
   * The secret of the earlier generation whose root disk this instance booted from (found in the
   * same root-only file). A first hello on a persisted root must present it: the coordinator
   * registers `sessionSecret` only once this proves the hello comes from whoever can read the root.
   */
  carriedSecret: z.string().min(32).max(128).optional(),
  /** Message ids the agent already has; lets the coordinator skip resending. */
  lastSeen: z.array(id).max(1000).optional(),
});

export const Eni = z.object({
  mac: z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i, { message: "is not a MAC address" }),
  interfaceId: z.string().regex(/^eni-[0-9a-f]{8,17}$/, { message: "is not an ENI id (eni-…)" }),
  deviceNumber: z.number().int().nonnegative(),
  privateIps: z
    .array(z.ipv4({ message: "is not an IPv4 address" }))
    .min(1)
    .max(64),
  subnetId: z.string().max(64).optional(),
});
export type Eni = z.infer<typeof Eni>;

/**
 * The stable ENI of an `attach: secondary` instance, as the coordinator names it to the agent: the
 * agent finds it in IMDS by id (its MAC, device number and subnet) and the link by MAC.
 */
export const SecondaryEni = z.object({
  eniId: z.string().regex(/^eni-[0-9a-f]{8,17}$/, { message: "is not an ENI id (eni-…)" }),
  privateIp: z.ipv4({ message: "is not an IPv4 address" }),
});
export type SecondaryEni = z.infer<typeof SecondaryEni>;

/** What the agent did with the stable ENI (configure on restore, release on quiesce). */
export const EniReport = z.object({
  eniId: z.string().min(1).max(64),
  ok: z.boolean(),
  /** The OS link that carries it (`eth1`), when found. */
  link: z.string().max(64).optional(),
  reason: z.string().max(4096).optional(),
});

/** A path or device name the agent reports: bounded, as everything an instance says is. */
const reportedPath = z.string().min(1).max(4096);
/** A byte count: finite and nonnegative (zod's number() already refuses Infinity and NaN). */
const byteCount = z.number().nonnegative();

export const BlockDevice = z.object({
  /** Kernel device path, e.g. /dev/nvme1n1 (or the link path in localcloud's process runtime). */
  device: reportedPath,
  volumeId: volumeId.optional(),
  /** Device name requested at attach (/dev/sdf) when known. */
  requestedName: z.string().max(64).optional(),
  sizeBytes: byteCount.optional(),
  fsType: z.string().max(64).optional(),
  uuid: z.string().max(128).optional(),
  mountPoint: reportedPath.optional(),
  kind: z.enum(["block", "directory"]).default("block"),
  /** The device holds the root filesystem (itself or a partition of it is mounted at /). */
  root: z.boolean().optional(),
});
export type BlockDevice = z.infer<typeof BlockDevice>;

/** A mounted filesystem and its usage (statfs / df): what the usage checks read. */
export const FilesystemUsage = z.object({
  /** The source device (/dev/nvme1n1p1), or the volume's link path for a directory volume. */
  device: reportedPath,
  /** The EBS volume it is on, when the agent matched its device to a volume link. */
  volumeId: volumeId.optional(),
  mountPoint: reportedPath,
  fsType: z.string().max(64),
  sizeBytes: byteCount,
  usedBytes: byteCount,
  availableBytes: byteCount,
});
export type FilesystemUsage = z.infer<typeof FilesystemUsage>;

/** An OS network interface: its name, MAC and every address on it (CIDR notation). */
export const NetworkInterface = z.object({
  name: z.string().min(1).max(64),
  mac: z.string().max(64),
  addresses: z.array(z.string().min(1).max(64)).max(64),
});
export type NetworkInterface = z.infer<typeof NetworkInterface>;

export const Inventory = z.object({
  ...envelope,
  type: z.literal("inventory"),
  instanceId,
  instanceType: z.string().min(1).max(64),
  availabilityZone: z.string().min(1).max(64),
  imageId: z.string().min(1).max(64),
  enis: z.array(Eni).max(64),
  devices: z.array(BlockDevice).max(128),
  /** Absent from agents older than the usage checks; those inventories are recorded without them. */
  filesystems: z.array(FilesystemUsage).max(128).optional(),
  networkInterfaces: z.array(NetworkInterface).max(64).optional(),
});
export type Inventory = z.infer<typeof Inventory>;

export const NoticeKind = z.enum(["spot-interruption", "rebalance", "scheduled-event", "lost"]);
export type NoticeKind = z.infer<typeof NoticeKind>;

export const Notice = z.object({
  ...envelope,
  type: z.literal("notice"),
  /** Stable id: a hash of the notice payload, so a repeated poll reports it once. */
  noticeId: z.string().min(1).max(128),
  kind: NoticeKind,
  /** spot-interruption: terminate | stop | hibernate; scheduled-event: the event code. */
  action: z.string().min(1).max(64).optional(),
  /** When the instance goes away (from the notice's own `time`, not the local clock). */
  deadline: isoTime.optional(),
  observedAt: isoTime,
  raw: z.string().max(16_384),
});

export const FilesystemQuiesce = z.object({
  mountPoint: z.string().min(1),
  frozen: z.boolean(),
  unmounted: z.boolean().default(false),
  reason: z.string().optional(),
});

export const Quiesced = z.object({
  ...envelope,
  type: z.literal("quiesced"),
  /**
   * The command id (quiesce / freeze-for-snapshot) this answers. The coordinator acts only on a
   * reply to a command it sent and has not had answered; one without ref (the agent quiesced on its
   * own) is acknowledged and dropped. Optional on the wire so such a report is not a malformed
   * frame, which would close the session and be resent from the agent's outbox forever.
   */
  ref: id.optional(),
  clean: z.boolean(),
  steps: z.array(StepTiming).max(64),
  filesystems: z.array(FilesystemQuiesce).max(128),
  /** Set when the quiesce was asked to release the stable ENI (addresses removed, link down). */
  network: EniReport.optional(),
  /** When a frozen filesystem will be thawed at the latest. */
  thawDeadline: isoTime.optional(),
});

export const RestoredVolume = z.object({
  volumeId,
  device: z.string().min(1),
  /** Absent: found and left unmounted (the plan gave no mount point). */
  mountPoint: z.string().min(1).optional(),
  checked: z.boolean(),
  ms: nonNegMs,
});

export const Restored = z.object({
  ...envelope,
  type: z.literal("restored"),
  ref: id.optional(),
  ok: z.boolean(),
  volumes: z.array(RestoredVolume).max(128),
  /** Set when the plan named a stable ENI to configure. */
  network: EniReport.optional(),
  steps: z.array(StepTiming).max(64),
  reason: z.string().optional(),
});

/**
 * The answer to a `volume-change` (`ref` = its id): the volume found, mounted or its filesystem grown.
 * `deviceBytes` is the size of the block device the agent saw, `filesystemBytes` the size of the
 * mounted filesystem afterwards (statfs); both absent for a directory volume (process runtime).
 */
export const VolumeChanged = z.object({
  ...envelope,
  type: z.literal("volume-changed"),
  ref: id.optional(),
  ok: z.boolean(),
  volumeId,
  device: reportedPath.optional(),
  mountPoint: reportedPath.optional(),
  deviceBytes: byteCount.optional(),
  filesystemBytes: byteCount.optional(),
  steps: z.array(StepTiming).max(64),
  reason: z.string().max(4096).optional(),
});

export const Ready = z.object({
  ...envelope,
  type: z.literal("ready"),
  instanceId,
  steps: z.array(StepTiming).max(64),
});

/** The agent's last probe of the application's health endpoint (welcome.config.healthCheck). */
export const HealthReport = z.object({
  ok: z.boolean(),
  /** HTTP status or why the probe failed. */
  detail: z.string().max(256),
  checkedAt: isoTime,
});
export type HealthReport = z.infer<typeof HealthReport>;

export const Heartbeat = z.object({
  ...envelope,
  type: z.literal("heartbeat"),
  seq: z.number().int().nonnegative(),
  uptimeMs: nonNegMs,
  health: HealthReport.optional(),
});

export const ErrorMsg = z.object({
  ...envelope,
  type: z.literal("error"),
  code: z.string().min(1).max(64),
  message: z.string().max(16_384),
  ref: id.optional(),
});

/** Either side: acknowledges the message whose id is `ref`. */
export const Ack = z.object({
  ...envelope,
  type: z.literal("ack"),
  ref: id,
});

// ---------- coordinator -> agent ----------

export const Mount = z.object({
  volumeId,
  device: z.string().min(1),
  /** Absent: attach only; the agent finds the device and reports it, unmounted. */
  mountPoint: absPath.optional(),
  fsType: z.string().min(1).default("ext4"),
  /**
   * Create the filesystem when the device carries no signature at all. Set only for a volume
   * spotkeep itself created and has never mounted; a device with any signature is never formatted.
   */
  formatIfBlank: z.boolean().optional(),
});
export type Mount = z.infer<typeof Mount>;

export const Welcome = z.object({
  ...envelope,
  type: z.literal("welcome"),
  statefulInstance: z.string().min(1),
  generation: z.number().int().positive(),
  config: z.object({
    hooks: Hooks,
    mounts: z.array(Mount).max(128),
    pollIntervalMs: z.number().int().min(50).max(60_000),
    heartbeatMs: z.number().int().min(100).max(300_000),
    /** Probe http://127.0.0.1:PORT/PATH every intervalMs (model ms) and report it in each heartbeat. */
    healthCheck: z
      .object({
        port: z.number().int().min(1).max(65_535),
        path: absPath.max(1024),
        intervalMs: z.number().int().min(100).max(300_000),
        timeoutMs: z.number().int().min(100).max(60_000),
      })
      .optional(),
  }),
});

export const Quiesce = z.object({
  ...envelope,
  type: z.literal("quiesce"),
  reason: z.string().min(1).max(256),
  /** Must be thawed/finished by then whatever happens. */
  deadline: isoTime,
  /** Unmount instead of freezing (the instance is going away). */
  unmount: z.boolean().default(false),
  /** Release this stable ENI after unmounting (addresses and routes removed, link down): it is about to be detached. */
  releaseEni: SecondaryEni.optional(),
});

export const FreezeForSnapshot = z.object({
  ...envelope,
  type: z.literal("freeze-for-snapshot"),
  /** Thaw on our own after this many ms if no `thaw` arrives. */
  thawAfterMs: z.number().int().min(100).max(120_000).default(10_000),
});

export const Thaw = z.object({
  ...envelope,
  type: z.literal("thaw"),
  ref: id.optional(),
});

export const RestorePlan = z.object({
  ...envelope,
  type: z.literal("restore-plan"),
  statefulInstance: z.string().min(1),
  generation: z.number().int().positive(),
  /** Whether the previous generation quiesced cleanly; when false, filesystems are checked before mounting. */
  previousClean: z.boolean(),
  volumes: z.array(Mount).max(128),
  /** `attach: secondary`: wait for this ENI and configure it before mounting (deviceTimeoutMs bounds the wait too). */
  eni: SecondaryEni.optional(),
  hooks: Hooks,
  deviceTimeoutMs: z.number().int().min(100).max(600_000).default(120_000),
});

/**
 * A data volume of a running instance changes: `grow` its filesystem online once the device shows at
 * least `minSizeBytes` (ext2/3/4: resize2fs on the device; xfs: xfs_growfs on the mount point), or
 * `mount` a volume just attached (found by id, formatted only with formatIfBlank and no signature at
 * all, mounted as a restore does). Idempotent: a grown filesystem or a volume already mounted there
 * is reported as it is. Answered with `volume-changed`.
 */
export const VolumeChange = z.object({
  ...envelope,
  type: z.literal("volume-change"),
  action: z.enum(["grow", "mount"]),
  volume: Mount.extend({ device: z.string().min(1).max(64), fsType: z.string().min(1).max(16).default("ext4") }),
  /** grow: the device must show at least this many bytes first (the volume's new size); at most 64 TiB. */
  minSizeBytes: z
    .number()
    .int()
    .positive()
    .max(64 * 2 ** 40)
    .optional(),
  /** How long to wait for the device to appear (mount) or reach minSizeBytes (grow), model ms. */
  deviceTimeoutMs: z.number().int().min(100).max(600_000).default(120_000),
});

export const Shutdown = z.object({
  ...envelope,
  type: z.literal("shutdown"),
  reason: z.string().max(256).optional(),
});

export const AgentMessage = z.discriminatedUnion("type", [
  Hello,
  Inventory,
  Notice,
  Quiesced,
  Restored,
  Ready,
  Heartbeat,
  ErrorMsg,
  Ack,
  VolumeChanged,
]);
export const CoordinatorMessage = z.discriminatedUnion("type", [
  Welcome,
  Quiesce,
  FreezeForSnapshot,
  Thaw,
  RestorePlan,
  Shutdown,
  ErrorMsg,
  Ack,
  VolumeChange,
]);
export const AnyMessage = z.union([AgentMessage, CoordinatorMessage]);

export type AgentMessage = z.infer<typeof AgentMessage>;
export type CoordinatorMessage = z.infer<typeof CoordinatorMessage>;
export type Message = AgentMessage | CoordinatorMessage;
export type MessageType = Message["type"];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

export const AGENT_MESSAGE_TYPES = [
  "hello",
  "inventory",
  "notice",
  "quiesced",
  "restored",
  "ready",
  "heartbeat",
  "error",
  "ack",
  "volume-changed",
] as const;
export const COORDINATOR_MESSAGE_TYPES = [
  "welcome",
  "quiesce",
  "freeze-for-snapshot",
  "thaw",
  "restore-plan",
  "shutdown",
  "error",
  "ack",
  "volume-change",
] as const;

export type ParseResult<T> = { ok: true; message: T } | { ok: false; error: ValidationError };

type Direction = "from-agent" | "from-coordinator";

/**
 * Parse and validate one frame. Never throws: a bad frame yields an error naming the field and why
 * (`notice.deadline: is not an ISO-8601 time`, `frame: 300000 bytes exceeds the 262144-byte limit`).
 */
export function parseMessage(text: string | Buffer, direction: Direction = "from-agent"): ParseResult<Message> {
  const size = typeof text === "string" ? Buffer.byteLength(text) : text.length;
  if (size > MAX_FRAME_BYTES) return fail("frame", `${size} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`);
  let data: unknown;
  try {
    data = JSON.parse(typeof text === "string" ? text : text.toString("utf8"));
  } catch (err) {
    return fail("frame", `is not valid JSON (${(err as Error).message})`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) return fail("frame", "must be a JSON object");
  const obj = data as Record<string, unknown>;
  if (obj.v !== PROTOCOL_VERSION) return fail("v", `must be protocol version ${PROTOCOL_VERSION}, got ${JSON.stringify(obj.v)}`);
  const allowed: readonly string[] = direction === "from-agent" ? AGENT_MESSAGE_TYPES : COORDINATOR_MESSAGE_TYPES;
  if (typeof obj.type !== "string") return fail("type", "is required and must be a string");
  if (!allowed.includes(obj.type)) {
    return fail(
      "type",
      `unknown message type ${JSON.stringify(obj.type)} ${direction === "from-agent" ? "from an agent" : "from the coordinator"} ` +
        `(expected one of ${allowed.join(", ")})`,
    );
  }
  const schema = direction === "from-agent" ? AgentMessage : CoordinatorMessage;
  const parsed = schema.safeParse(obj);
  if (!parsed.success) return { ok: false, error: zodToValidationError(parsed.error, obj.type) };
  return { ok: true, message: parsed.data };
}

/** Serialise a message; validates it first so a bug never puts a bad frame on the wire. */
export function encodeMessage(message: Message, direction: Direction): string {
  const schema = direction === "from-agent" ? AgentMessage : CoordinatorMessage;
  const parsed = schema.safeParse(message);
  if (!parsed.success) throw zodToValidationError(parsed.error, message.type);
  const text = JSON.stringify(parsed.data);
  if (Buffer.byteLength(text) > MAX_FRAME_BYTES)
    throw new ValidationError([{ path: "frame", reason: `exceeds the ${MAX_FRAME_BYTES}-byte limit` }]);
  return text;
}

let counter = 0;
/** A message id unique within this process and across restarts (time + random + counter). */
export function newMessageId(prefix = "m"): string {
  counter = (counter + 1) % 0xffffff;
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${counter.toString(36)}`;
}

function fail(path: string, reason: string): ParseResult<never> {
  return { ok: false, error: new ValidationError([{ path, reason }]) };
}
