import { describe, expect, it } from "vitest";
import { MAX_FRAME_BYTES, encodeMessage, parseMessage, type Message } from "./protocol.js";

const ts = "2026-11-25T10:00:00.000Z";
const vol = "vol-0123456789abcdef0";
const steps = [{ name: "sync", ok: true, ms: 12 }];
const hooks = { preStop: "pg_ctl stop -m fast", postRestore: "pg_ctl start", timeoutSeconds: 30 };
const mount = { volumeId: vol, device: "/dev/sdf", mountPoint: "/var/lib/postgresql", fsType: "ext4" };

const agentSamples: Message[] = [
  {
    v: 1,
    id: "a1",
    type: "hello",
    identity: { document: '{"instanceId":"i-0123456789abcdef0"}', signature: "c2ln" },
    agentVersion: "0.1.0",
    mode: "run",
    sessionSecret: "test-session-secret-0123456789abcdefghijklmno",
  },
  {
    v: 1,
    id: "a2",
    type: "inventory",
    instanceId: "i-0123456789abcdef0",
    instanceType: "m6i.large",
    availabilityZone: "us-east-1a",
    imageId: "ami-0123456789abcdef0",
    enis: [{ mac: "0e:49:61:0f:c3:11", interfaceId: "eni-0123456789abcdef0", deviceNumber: 0, privateIps: ["172.31.0.10"] }],
    devices: [
      {
        device: "/dev/nvme1n1",
        volumeId: vol,
        requestedName: "/dev/sdf",
        sizeBytes: 1073741824,
        fsType: "ext4",
        mountPoint: "/data",
        kind: "block",
      },
    ],
  },
  {
    v: 1,
    id: "a3",
    type: "notice",
    noticeId: "n-abc",
    kind: "spot-interruption",
    action: "terminate",
    deadline: ts,
    observedAt: ts,
    raw: '{"action":"terminate","time":"2026-11-25T10:00:00Z"}',
  },
  {
    v: 1,
    id: "a4",
    type: "quiesced",
    ref: "c2",
    clean: true,
    steps,
    filesystems: [{ mountPoint: "/data", frozen: true, unmounted: false }],
    thawDeadline: ts,
  },
  {
    v: 1,
    id: "a5",
    type: "restored",
    ref: "c5",
    ok: true,
    volumes: [{ volumeId: vol, device: "/dev/nvme1n1", mountPoint: "/data", checked: false, ms: 40 }],
    steps,
  },
  { v: 1, id: "a6", type: "ready", instanceId: "i-0123456789abcdef0", steps },
  { v: 1, id: "a7", type: "heartbeat", seq: 3, uptimeMs: 1000 },
  { v: 1, id: "a8", type: "error", code: "mount-failed", message: "mount /data: EBUSY", ref: "c5" },
  { v: 1, id: "a9", type: "ack", ref: "c1" },
];

const coordinatorSamples: Message[] = [
  {
    v: 1,
    id: "c1",
    type: "welcome",
    statefulInstance: "orders-db",
    generation: 2,
    config: { hooks, mounts: [mount], pollIntervalMs: 1000, heartbeatMs: 5000 },
  },
  { v: 1, id: "c2", type: "quiesce", reason: "spot-interruption", deadline: ts, unmount: true },
  { v: 1, id: "c3", type: "freeze-for-snapshot", thawAfterMs: 10_000 },
  { v: 1, id: "c4", type: "thaw", ref: "c3" },
  {
    v: 1,
    id: "c5",
    type: "restore-plan",
    statefulInstance: "orders-db",
    generation: 2,
    previousClean: false,
    volumes: [mount],
    hooks,
    deviceTimeoutMs: 60_000,
  },
  { v: 1, id: "c6", type: "shutdown", reason: "deallocated" },
  { v: 1, id: "c7", type: "ack", ref: "a3" },
];

describe("protocol round trip", () => {
  for (const msg of agentSamples) {
    it(`round-trips agent message ${msg.type}`, () => {
      const parsed = parseMessage(encodeMessage(msg, "from-agent"), "from-agent");
      expect(parsed.ok).toBe(true);
      if (parsed.ok) expect(parsed.message).toEqual(msg);
    });
  }
  for (const msg of coordinatorSamples) {
    it(`round-trips coordinator message ${msg.type}`, () => {
      const parsed = parseMessage(encodeMessage(msg, "from-coordinator"), "from-coordinator");
      expect(parsed.ok).toBe(true);
      if (parsed.ok) expect(parsed.message).toEqual(msg);
    });
  }
});

function rejectReason(text: string, dir: "from-agent" | "from-coordinator" = "from-agent"): string {
  const parsed = parseMessage(text, dir);
  expect(parsed.ok).toBe(false);
  return parsed.ok ? "" : parsed.error.message;
}

describe("protocol rejects malformed frames with the field and reason", () => {
  const all = [...agentSamples.map((m) => [m, "from-agent"] as const), ...coordinatorSamples.map((m) => [m, "from-coordinator"] as const)];
  for (const [msg, dir] of all) {
    it(`${dir} ${msg.type}: missing id`, () => {
      const { id: _id, ...rest } = msg;
      expect(rejectReason(JSON.stringify(rest), dir)).toMatch(new RegExp(`^${msg.type}\\.id: is required`));
    });
    it(`${dir} ${msg.type}: wrong type for id`, () => {
      expect(rejectReason(JSON.stringify({ ...msg, id: 42 }), dir)).toMatch(new RegExp(`^${msg.type}\\.id: expected string`));
    });
  }
  it("names a missing nested field", () => {
    const { identity: _i, ...rest } = agentSamples[0] as Extract<Message, { type: "hello" }>;
    expect(rejectReason(JSON.stringify(rest))).toBe("hello.identity: is required");
  });
  it("names a bad nested value", () => {
    expect(rejectReason(JSON.stringify({ ...agentSamples[2], deadline: "tomorrow" }))).toBe("notice.deadline: is not an ISO-8601 time");
    expect(rejectReason(JSON.stringify({ ...agentSamples[2], kind: "meteor" }))).toMatch(/^notice\.kind: /);
  });
  it("rejects a bad volume id inside a list", () => {
    const bad = { ...coordinatorSamples[4], volumes: [{ ...mount, volumeId: "disk-1" }] };
    expect(rejectReason(JSON.stringify(bad), "from-coordinator")).toBe("restore-plan.volumes[0].volumeId: is not a volume id (vol-…)");
  });
  it("rejects an unknown type", () => {
    expect(rejectReason(JSON.stringify({ v: 1, id: "x", type: "explode" }))).toMatch(/^type: unknown message type "explode" from an agent/);
  });
  it("rejects a coordinator-only type sent by an agent", () => {
    expect(rejectReason(JSON.stringify(coordinatorSamples[1]))).toMatch(/^type: unknown message type "quiesce" from an agent/);
  });
  it("rejects a missing type", () => {
    expect(rejectReason(JSON.stringify({ v: 1, id: "x" }))).toBe("type: is required and must be a string");
  });
  it("rejects the wrong protocol version", () => {
    expect(rejectReason(JSON.stringify({ ...agentSamples[6], v: 2 }))).toBe("v: must be protocol version 1, got 2");
  });
  it("rejects an oversized frame before parsing it", () => {
    const big = JSON.stringify({ ...agentSamples[7], message: "x".repeat(MAX_FRAME_BYTES) });
    expect(rejectReason(big)).toMatch(/^frame: \d+ bytes exceeds the 262144-byte limit$/);
  });
  it("rejects non-JSON and non-objects", () => {
    expect(rejectReason("{not json")).toMatch(/^frame: is not valid JSON/);
    expect(rejectReason("[1,2]")).toBe("frame: must be a JSON object");
    expect(rejectReason("null")).toBe("frame: must be a JSON object");
  });
  it("refuses to encode an invalid message", () => {
    expect(() => encodeMessage({ ...(agentSamples[6] as Message), seq: -1 } as Message, "from-agent")).toThrow(/heartbeat\.seq/);
  });
});

describe("inventory: filesystems and network interfaces", () => {
  const old = agentSamples[1] as Extract<Message, { type: "inventory" }>;
  const fsRow = { device: "/dev/nvme1n1", mountPoint: "/data", fsType: "ext4", sizeBytes: 1000, usedBytes: 950, availableBytes: 50 };
  const nic = { name: "ens5", mac: "0e:49:61:0f:c3:11", addresses: ["172.31.0.10/20", "fe80::c49:61ff:fe0f:c311/64"] };

  it("accepts an agent's inventory without the new fields (older agents) and one with them", () => {
    expect(parseMessage(JSON.stringify(old)).ok).toBe(true);
    const full = { ...old, filesystems: [fsRow], networkInterfaces: [nic] };
    const parsed = parseMessage(encodeMessage(full, "from-agent"));
    expect(parsed.ok && parsed.message).toEqual(full);
  });
  it("refuses negative or non-numeric byte counts, naming the field", () => {
    expect(rejectReason(JSON.stringify({ ...old, filesystems: [{ ...fsRow, usedBytes: -1 }] }))).toMatch(
      /^inventory\.filesystems\[0\]\.usedBytes: /,
    );
    expect(rejectReason(JSON.stringify({ ...old, filesystems: [{ ...fsRow, sizeBytes: "1e400" }] }))).toMatch(
      /^inventory\.filesystems\[0\]\.sizeBytes: /,
    );
  });
  it("refuses too many rows and too long strings", () => {
    const many = Array.from({ length: 129 }, () => fsRow);
    expect(rejectReason(JSON.stringify({ ...old, filesystems: many }))).toMatch(/^inventory\.filesystems: /);
    expect(rejectReason(JSON.stringify({ ...old, filesystems: [{ ...fsRow, mountPoint: `/${"d".repeat(4096)}` }] }))).toMatch(
      /^inventory\.filesystems\[0\]\.mountPoint: /,
    );
    const nics = Array.from({ length: 65 }, () => nic);
    expect(rejectReason(JSON.stringify({ ...old, networkInterfaces: nics }))).toMatch(/^inventory\.networkInterfaces: /);
    expect(rejectReason(JSON.stringify({ ...old, networkInterfaces: [{ ...nic, name: "x".repeat(65) }] }))).toMatch(
      /^inventory\.networkInterfaces\[0\]\.name: /,
    );
  });
});
