/**
 * The `volume-change` command and its `volume-changed` answer: the agent's zod-free frame check
 * (agent/link/frames.ts) accepts and refuses the same frames as the protocol's schema, with the
 * same result, and the answer the agent builds is a valid `volume-changed`.
 */
import { describe, expect, it } from "vitest";
import * as frames from "../../agent/link/frames.js";
import * as protocol from "../../shared/protocol.js";

const vol = "vol-0123456789abcdef0";
const volume = { volumeId: vol, device: "/dev/sdf", mountPoint: "/data", fsType: "ext4" };

const valid: Array<Record<string, unknown>> = [
  { v: 1, id: "g1", type: "volume-change", action: "grow", volume, minSizeBytes: 2 * 2 ** 30, deviceTimeoutMs: 120_000 },
  { v: 1, id: "g2", type: "volume-change", action: "grow", volume: { volumeId: vol, device: "/dev/sdf", mountPoint: "/data" } },
  {
    v: 1,
    id: "g3",
    type: "volume-change",
    action: "mount",
    volume: { ...volume, device: "/dev/sdg", fsType: "xfs", formatIfBlank: true },
    extra: "dropped",
  },
];

const invalid: Array<Record<string, unknown>> = [
  { v: 1, id: "x", type: "volume-change", action: "shrink", volume },
  { v: 1, id: "x", type: "volume-change", action: "grow" },
  { v: 1, id: "x", type: "volume-change", action: "grow", volume: { ...volume, volumeId: "vol-nope" } },
  { v: 1, id: "x", type: "volume-change", action: "grow", volume: { ...volume, mountPoint: "data" } },
  { v: 1, id: "x", type: "volume-change", action: "grow", volume: { ...volume, device: "d".repeat(65) } },
  { v: 1, id: "x", type: "volume-change", action: "grow", volume: { ...volume, fsType: "f".repeat(17) } },
  { v: 1, id: "x", type: "volume-change", action: "grow", volume, minSizeBytes: 0 },
  { v: 1, id: "x", type: "volume-change", action: "grow", volume, minSizeBytes: 65 * 2 ** 40 },
  { v: 1, id: "x", type: "volume-change", action: "grow", volume, minSizeBytes: 1.5 },
  { v: 1, id: "x", type: "volume-change", action: "grow", volume, deviceTimeoutMs: 600_001 },
];

describe("volume-change frames", () => {
  it("is a coordinator message type both sides know", () => {
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

  it("encodes the agent's volume-changed answer as a frame the protocol accepts", () => {
    const answer = {
      v: 1 as const,
      id: frames.newMessageId("a"),
      type: "volume-changed" as const,
      ref: "g1",
      ok: true,
      volumeId: vol,
      device: "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0",
      mountPoint: "/data",
      deviceBytes: 2 * 2 ** 30,
      filesystemBytes: 2 * 2 ** 30 - 2 ** 24,
      steps: [{ name: "grow:/data", ok: true, ms: 12, detail: "resize2fs: grown online" }],
    };
    const parsed = protocol.parseMessage(frames.encodeAgentFrame(answer), "from-agent");
    expect(parsed.ok).toBe(true);
    expect(protocol.parseMessage(JSON.stringify({ ...answer, volumeId: "nope" }), "from-agent").ok).toBe(false);
  });
});
