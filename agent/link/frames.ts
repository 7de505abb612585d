/**
 * The agent's side of the wire format without zod: zod and the protocol's schemas cost the agent
 * about 11 MiB of RSS at start, a fifth of its 50 MiB budget. Inbound coordinator frames are checked
 * here by hand to the same rules as shared/protocol.ts (same limits, defaults filled in, unknown
 * fields dropped, errors naming the field); outbound frames get a structural check and the size
 * limit (the coordinator validates them in full). test/agent/frames.test.ts holds both to the same
 * samples, so a change to the protocol that this file misses fails there.
 */
import type { AgentMessage, CoordinatorMessage } from "../../shared/protocol.js";

/** Same values as PROTOCOL_VERSION and MAX_FRAME_BYTES in shared/protocol.ts (checked by a test). */
export const PROTOCOL_VERSION = 1;
export const MAX_FRAME_BYTES = 256 * 1024;

export const COORDINATOR_TYPES = [
  "welcome",
  "quiesce",
  "freeze-for-snapshot",
  "thaw",
  "restore-plan",
  "shutdown",
  "error",
  "ack",
  "volume-change",
];
const AGENT_TYPES = ["hello", "inventory", "notice", "quiesced", "restored", "ready", "heartbeat", "error", "ack", "volume-changed"];

export class FrameError extends Error {
  override name = "FrameError";
}

type Check<T> = (v: unknown, path: string) => T;

const bad = (path: string, reason: string): never => {
  throw new FrameError(`${path}: ${reason}`);
};

function str(o: { min?: number; max?: number; re?: RegExp; what?: string; abs?: boolean } = {}): Check<string> {
  return (v, path) => {
    if (typeof v !== "string") return bad(path, v === undefined ? "is required" : "expected string");
    if (o.min !== undefined && v.length < o.min) bad(path, `must be at least ${o.min} characters`);
    if (o.max !== undefined && v.length > o.max) bad(path, `must be at most ${o.max} characters`);
    if (o.re && !o.re.test(v)) bad(path, o.what ?? "has the wrong format");
    if (o.abs && !v.startsWith("/")) bad(path, "must be an absolute path");
    return v;
  };
}
function int(o: { min?: number; max?: number } = {}): Check<number> {
  return (v, path) => {
    if (typeof v !== "number" || !Number.isInteger(v)) return bad(path, v === undefined ? "is required" : "expected an integer");
    if (o.min !== undefined && v < o.min) bad(path, `must be >= ${o.min}`);
    if (o.max !== undefined && v > o.max) bad(path, `must be <= ${o.max}`);
    return v;
  };
}
const bool: Check<boolean> = (v, path) => (typeof v === "boolean" ? v : bad(path, v === undefined ? "is required" : "expected boolean"));
function opt<T>(c: Check<T>): Check<T | undefined> {
  return (v, path) => (v === undefined ? undefined : c(v, path));
}
function dflt<T>(c: Check<T>, d: T): Check<T> {
  return (v, path) => (v === undefined ? d : c(v, path));
}
function arr<T>(c: Check<T>, max: number): Check<T[]> {
  return (v, path) => {
    if (!Array.isArray(v)) return bad(path, v === undefined ? "is required" : "expected array");
    if (v.length > max) bad(path, `must have at most ${max} items`);
    return v.map((x, i) => c(x, `${path}[${i}]`));
  };
}
function obj<T extends Record<string, unknown>>(shape: { [K in keyof T]: Check<T[K]> }): Check<T> {
  return (v, path) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return bad(path, v === undefined ? "is required" : "expected object");
    const out: Record<string, unknown> = {};
    for (const [k, c] of Object.entries(shape) as Array<[string, Check<unknown>]>) {
      const got = c((v as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
      if (got !== undefined) out[k] = got;
    }
    return out as T;
  };
}

const id = str({ min: 1, max: 128 });
const isoTime: Check<string> = (v, path) => {
  const s = str()(v, path);
  if (Number.isNaN(Date.parse(s))) bad(path, "is not an ISO-8601 time");
  return s;
};
const volumeId = str({ re: /^vol-[0-9a-f]{8,17}$/, what: "is not a volume id (vol-…)" });
const envelope = {
  v: ((v, path) => (v === PROTOCOL_VERSION ? v : bad(path, `must be protocol version ${PROTOCOL_VERSION}`))) as Check<1>,
  id,
  ts: opt(isoTime),
};
const hooks = obj({
  preStop: opt(str()),
  postRestore: opt(str()),
  timeoutSeconds: dflt(int({ min: 1, max: 3600 }), 60),
});
const mount = obj({
  volumeId,
  device: str({ min: 1 }),
  mountPoint: opt(str({ min: 1, abs: true })),
  fsType: dflt(str({ min: 1 }), "ext4"),
  formatIfBlank: opt(bool),
});
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const secondaryEni = obj({
  eniId: str({ re: /^eni-[0-9a-f]{8,17}$/, what: "is not an ENI id (eni-…)" }),
  privateIp: str({ re: IPV4, what: "is not an IPv4 address" }),
});
const lit = <T extends string>(t: T): Check<T> => ((v, path) => (v === t ? t : bad(path, `expected "${t}"`))) as Check<T>;

const coordinatorChecks: Record<string, Check<unknown>> = {
  welcome: obj({
    ...envelope,
    type: lit("welcome"),
    statefulInstance: str({ min: 1 }),
    generation: int({ min: 1 }),
    config: obj({
      hooks,
      mounts: arr(mount, 128),
      pollIntervalMs: int({ min: 50, max: 60_000 }),
      heartbeatMs: int({ min: 100, max: 300_000 }),
      healthCheck: opt(
        obj({
          port: int({ min: 1, max: 65_535 }),
          path: str({ min: 1, max: 1024, abs: true }),
          intervalMs: int({ min: 100, max: 300_000 }),
          timeoutMs: int({ min: 100, max: 60_000 }),
        }),
      ),
    }),
  }),
  quiesce: obj({
    ...envelope,
    type: lit("quiesce"),
    reason: str({ min: 1, max: 256 }),
    deadline: isoTime,
    unmount: dflt(bool, false),
    releaseEni: opt(secondaryEni),
  }),
  "freeze-for-snapshot": obj({
    ...envelope,
    type: lit("freeze-for-snapshot"),
    thawAfterMs: dflt(int({ min: 100, max: 120_000 }), 10_000),
  }),
  thaw: obj({ ...envelope, type: lit("thaw"), ref: opt(id) }),
  "restore-plan": obj({
    ...envelope,
    type: lit("restore-plan"),
    statefulInstance: str({ min: 1 }),
    generation: int({ min: 1 }),
    previousClean: bool,
    volumes: arr(mount, 128),
    eni: opt(secondaryEni),
    hooks,
    deviceTimeoutMs: dflt(int({ min: 100, max: 600_000 }), 120_000),
  }),
  shutdown: obj({ ...envelope, type: lit("shutdown"), reason: opt(str({ max: 256 })) }),
  "volume-change": obj({
    ...envelope,
    type: lit("volume-change"),
    action: ((v, path) => (v === "grow" || v === "mount" ? v : bad(path, 'expected "grow" or "mount"'))) as Check<"grow" | "mount">,
    volume: obj({
      volumeId,
      device: str({ min: 1, max: 64 }),
      mountPoint: opt(str({ min: 1, abs: true })),
      fsType: dflt(str({ min: 1, max: 16 }), "ext4"),
      formatIfBlank: opt(bool),
    }),
    minSizeBytes: opt(int({ min: 1, max: 64 * 2 ** 40 })),
    deviceTimeoutMs: dflt(int({ min: 100, max: 600_000 }), 120_000),
  }),
  error: obj({
    ...envelope,
    type: lit("error"),
    code: str({ min: 1, max: 64 }),
    message: str({ max: 16_384 }),
    ref: opt(id),
  }),
  ack: obj({ ...envelope, type: lit("ack"), ref: id }),
};

export type FrameResult = { ok: true; message: CoordinatorMessage } | { ok: false; error: FrameError };

/** Check one frame from the coordinator. Never throws. */
export function parseCoordinatorFrame(text: string): FrameResult {
  try {
    const size = Buffer.byteLength(text);
    if (size > MAX_FRAME_BYTES) bad("frame", `${size} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (err) {
      bad("frame", `is not valid JSON (${(err as Error).message})`);
    }
    if (typeof data !== "object" || data === null || Array.isArray(data)) bad("frame", "must be a JSON object");
    const o = data as Record<string, unknown>;
    if (o.v !== PROTOCOL_VERSION) bad("v", `must be protocol version ${PROTOCOL_VERSION}, got ${JSON.stringify(o.v)}`);
    if (typeof o.type !== "string") bad("type", "is required and must be a string");
    const check = coordinatorChecks[o.type as string];
    if (!check) return bad("type", `unknown message type ${JSON.stringify(o.type)} from the coordinator`);
    return { ok: true, message: check(o, o.type as string) as CoordinatorMessage };
  } catch (err) {
    if (err instanceof FrameError) return { ok: false, error: err };
    return { ok: false, error: new FrameError(`frame: ${(err as Error).message}`) };
  }
}

/** Serialise an agent message: known type, envelope, size limit. Throws FrameError (a bug on our side). */
export function encodeAgentFrame(m: AgentMessage): string {
  if (m.v !== PROTOCOL_VERSION) bad("v", `must be protocol version ${PROTOCOL_VERSION}`);
  if (!AGENT_TYPES.includes(m.type)) bad("type", `unknown agent message type ${JSON.stringify(m.type)}`);
  id(m.id, `${m.type}.id`);
  const text = JSON.stringify(m);
  if (Buffer.byteLength(text) > MAX_FRAME_BYTES) bad("frame", `exceeds the ${MAX_FRAME_BYTES}-byte limit`);
  return text;
}

let counter = 0;
/** A message id unique within this process and across restarts (time + random + counter), as shared/protocol.ts makes them. */
export function newMessageId(prefix = "m"): string {
  counter = (counter + 1) % 0xffffff;
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}-${counter.toString(36)}`;
}
