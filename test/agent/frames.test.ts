/**
 * The agent's zod-free frame checks (agent/link/frames.ts) against the protocol's zod schemas
 * (shared/protocol.ts): the same frames are accepted with the same result, the same are refused.
 */
import { describe, expect, it } from "vitest";
import * as frames from "../../agent/link/frames.js";
import * as protocol from "../../shared/protocol.js";

const ts = "2026-11-25T10:00:00.000Z";
const vol = "vol-0123456789abcdef0";
const mount = { volumeId: vol, device: "/dev/sdf", mountPoint: "/var/lib/postgresql", fsType: "ext4" };
const hooks = { preStop: "pg_ctl stop -m fast", postRestore: "pg_ctl start", timeoutSeconds: 30 };

const valid: Array<Record<string, unknown>> = [
  {
    v: 1,
    id: "c1",
    ts,
    type: "welcome",
    statefulInstance: "orders-db",
    generation: 3,
    config: { hooks, mounts: [mount], pollIntervalMs: 1000, heartbeatMs: 15000 },
  },
  {
    v: 1,
    id: "c1b",
    type: "welcome",
    statefulInstance: "x",
    generation: 1,
    config: { hooks: {}, mounts: [], pollIntervalMs: 50, heartbeatMs: 100 },
  },
  {
    v: 1,
    id: "c1c",
    type: "welcome",
    statefulInstance: "x",
    generation: 1,
    config: {
      hooks: {},
      mounts: [],
      pollIntervalMs: 1000,
      heartbeatMs: 5000,
      healthCheck: { port: 8080, path: "/healthz", intervalMs: 5000, timeoutMs: 5000 },
    },
  },
  { v: 1, id: "c2", type: "quiesce", reason: "spot-interruption", deadline: ts, unmount: true },
  { v: 1, id: "c2b", type: "quiesce", reason: "pause", deadline: "9999-12-31T23:59:59Z" },
  {
    v: 1,
    id: "c2c",
    type: "quiesce",
    reason: "cutover",
    deadline: ts,
    unmount: true,
    releaseEni: { eniId: "eni-0a0b0c0d0e0f01234", privateIp: "172.31.0.77" },
  },
  { v: 1, id: "c3", type: "freeze-for-snapshot", thawAfterMs: 10_000 },
  { v: 1, id: "c3b", type: "freeze-for-snapshot" },
  { v: 1, id: "c4", type: "thaw", ref: "c3" },
  { v: 1, id: "c4b", type: "thaw" },
  {
    v: 1,
    id: "c5",
    type: "restore-plan",
    statefulInstance: "orders-db",
    generation: 4,
    previousClean: false,
    volumes: [mount, { volumeId: vol, device: "/dev/sdg", mountPoint: "/data", formatIfBlank: true }],
    hooks,
    deviceTimeoutMs: 60_000,
  },
  { v: 1, id: "c5b", type: "restore-plan", statefulInstance: "s", generation: 1, previousClean: true, volumes: [], hooks: {} },
  {
    v: 1,
    id: "c5c",
    type: "restore-plan",
    statefulInstance: "s",
    generation: 2,
    previousClean: true,
    volumes: [],
    eni: { eniId: "eni-0a0b0c0d0e0f01234", privateIp: "10.0.0.5" },
    hooks: {},
  },
  { v: 1, id: "c6", type: "shutdown", reason: "deallocated" },
  { v: 1, id: "c6b", type: "shutdown" },
  { v: 1, id: "c7", type: "ack", ref: "a3" },
  { v: 1, id: "c8", type: "error", code: "bad-frame", message: "notice.deadline: is not an ISO-8601 time", ref: "a1" },
  { v: 1, id: "c9", type: "thaw", ref: "c3", extra: "dropped" },
];

const invalid: Array<Record<string, unknown>> = [
  { v: 2, id: "x", type: "thaw" },
  { v: 1, id: "", type: "thaw" },
  { v: 1, id: "x".repeat(129), type: "thaw" },
  { v: 1, id: "x", type: "hello" },
  { v: 1, id: "x", type: "nonsense" },
  { v: 1, id: "x", type: "quiesce", reason: "r", deadline: "soon" },
  { v: 1, id: "x", type: "quiesce", reason: "", deadline: ts },
  { v: 1, id: "x", type: "quiesce", reason: "r" },
  { v: 1, id: "x", type: "quiesce", reason: "r", deadline: ts, unmount: "yes" },
  { v: 1, id: "x", type: "quiesce", reason: "r", deadline: ts, releaseEni: { eniId: "eni-0a0b0c0d0e0f01234", privateIp: "10.0.0.256" } },
  { v: 1, id: "x", type: "quiesce", reason: "r", deadline: ts, releaseEni: { eniId: "eth1", privateIp: "10.0.0.5" } },
  { v: 1, id: "x", type: "restore-plan", statefulInstance: "s", generation: 1, previousClean: true, volumes: [], hooks: {}, eni: "eni-1" },
  { v: 1, id: "x", type: "freeze-for-snapshot", thawAfterMs: 99 },
  { v: 1, id: "x", type: "freeze-for-snapshot", thawAfterMs: 120_001 },
  { v: 1, id: "x", type: "freeze-for-snapshot", thawAfterMs: 1.5e3 + 0.5 },
  { v: 1, id: "x", type: "ack" },
  { v: 1, id: "x", type: "ts-bad", ts: "never" },
  { v: 1, id: "x", type: "thaw", ts: "never" },
  {
    v: 1,
    id: "x",
    type: "welcome",
    statefulInstance: "s",
    generation: 0,
    config: { hooks: {}, mounts: [], pollIntervalMs: 1000, heartbeatMs: 1000 },
  },
  {
    v: 1,
    id: "x",
    type: "welcome",
    statefulInstance: "s",
    generation: 1,
    config: { hooks: {}, mounts: [], pollIntervalMs: 49, heartbeatMs: 1000 },
  },
  {
    v: 1,
    id: "x",
    type: "welcome",
    statefulInstance: "s",
    generation: 1,
    config: { hooks: { timeoutSeconds: 0 }, mounts: [], pollIntervalMs: 1000, heartbeatMs: 1000 },
  },
  {
    v: 1,
    id: "x",
    type: "welcome",
    statefulInstance: "s",
    generation: 1,
    config: { hooks: {}, mounts: [{ ...mount, mountPoint: "relative" }], pollIntervalMs: 1000, heartbeatMs: 1000 },
  },
  {
    v: 1,
    id: "x",
    type: "restore-plan",
    statefulInstance: "s",
    generation: 1,
    previousClean: true,
    volumes: [{ ...mount, volumeId: "vol-XYZ" }],
    hooks: {},
  },
  {
    v: 1,
    id: "x",
    type: "restore-plan",
    statefulInstance: "s",
    generation: 1,
    previousClean: true,
    volumes: Array(129).fill(mount),
    hooks: {},
  },
  {
    v: 1,
    id: "x",
    type: "restore-plan",
    statefulInstance: "s",
    generation: 1,
    previousClean: true,
    volumes: [],
    hooks: {},
    deviceTimeoutMs: 50,
  },
  {
    v: 1,
    id: "x",
    type: "welcome",
    statefulInstance: "s",
    generation: 1,
    config: {
      hooks: {},
      mounts: [],
      pollIntervalMs: 1000,
      heartbeatMs: 1000,
      healthCheck: { port: 0, path: "/", intervalMs: 1000, timeoutMs: 1000 },
    },
  },
  {
    v: 1,
    id: "x",
    type: "welcome",
    statefulInstance: "s",
    generation: 1,
    config: {
      hooks: {},
      mounts: [],
      pollIntervalMs: 1000,
      heartbeatMs: 1000,
      healthCheck: { port: 80, path: "x", intervalMs: 1000, timeoutMs: 1000 },
    },
  },
  { v: 1, id: "x", type: "shutdown", reason: "r".repeat(257) },
  { v: 1, id: "x", type: "error", code: "", message: "m" },
];

describe("agent frame checks agree with the protocol's schemas", () => {
  it("uses the protocol's constants", () => {
    expect(frames.PROTOCOL_VERSION).toBe(protocol.PROTOCOL_VERSION);
    expect(frames.MAX_FRAME_BYTES).toBe(protocol.MAX_FRAME_BYTES);
    expect(frames.COORDINATOR_TYPES).toEqual([...protocol.COORDINATOR_MESSAGE_TYPES]);
  });

  it.each(valid.map((m) => [m.id, m]))("accepts %s exactly as zod does (defaults filled, unknown fields dropped)", (_id, m) => {
    const text = JSON.stringify(m);
    const z = protocol.parseMessage(text, "from-coordinator");
    const f = frames.parseCoordinatorFrame(text);
    expect(z.ok).toBe(true);
    expect(f.ok).toBe(true);
    if (z.ok && f.ok) expect(f.message).toEqual(z.message);
  });

  it.each(invalid.map((m, i) => [i, m]))("refuses invalid frame #%s as zod does, naming a field", (_i, m) => {
    const text = JSON.stringify(m);
    expect(protocol.parseMessage(text, "from-coordinator").ok).toBe(false);
    const f = frames.parseCoordinatorFrame(text);
    expect(f.ok).toBe(false);
    if (!f.ok) expect(f.error.message).toMatch(/^[a-z-]+[\w.[\]-]*: /i);
  });

  it("refuses non-JSON, non-objects and oversized frames", () => {
    for (const text of ["{", "[]", "null", "42", JSON.stringify({ v: 1, id: "x", type: "shutdown", reason: "x".repeat(300_000) })]) {
      expect(protocol.parseMessage(text, "from-coordinator").ok).toBe(false);
      expect(frames.parseCoordinatorFrame(text).ok).toBe(false);
    }
  });

  it("encodes agent frames that the protocol accepts, and refuses an unknown type or an oversized frame", () => {
    const hello = {
      v: 1 as const,
      id: frames.newMessageId("a"),
      type: "hello" as const,
      identity: { document: "{}", signature: "c2ln" },
      agentVersion: "0.1.0",
      mode: "run" as const,
      sessionSecret: "s".repeat(43),
    };
    expect(protocol.parseMessage(frames.encodeAgentFrame(hello), "from-agent").ok).toBe(true);
    expect(() => frames.encodeAgentFrame({ ...hello, type: "welcome" } as never)).toThrow(/unknown agent message type/);
    expect(() => frames.encodeAgentFrame({ ...hello, agentVersion: "x".repeat(300_000) })).toThrow(/exceeds the 262144-byte limit/);
  });
});
