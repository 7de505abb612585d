import { describe, expect, it } from "vitest";
import { FakeClock, scaledClock } from "../../../shared/clock.js";
import type { Ec2Gateway, EniInfo, VolumeInfo } from "../../cloud/gateway.js";
import type { WorkflowContext } from "../engine.js";
import type { RunbookDeps } from "./deps.js";
import { attachStableEni, detachDataVolume, detachStableEni } from "./secondary.js";

const ENI = "eni-0a0b0c0d0e0f01234";
const OLD = "i-00000000000000001";
const NEW = "i-00000000000000002";

/** An ENI and a volume whose attachments the test moves by hand; every gateway call is logged. */
function world() {
  const calls: string[] = [];
  let eni: EniInfo = {
    eniId: ENI,
    status: "in-use",
    privateIp: "172.31.0.77",
    subnetId: "subnet-0000000000000000a",
    availabilityZone: "us-east-1a",
    attachedTo: OLD,
    attachment: { attachmentId: "eni-attach-00000000000000001", instanceId: OLD, deviceIndex: 1, status: "attached" },
    tags: {},
  };
  let vol: VolumeInfo = {
    volumeId: "vol-00000000000000001",
    state: "in-use",
    availabilityZone: "us-east-1a",
    sizeGiB: 1,
    volumeType: "gp3",
    iops: 3000,
    throughput: 125,
    multiAttachEnabled: false,
    snapshotId: null,
    attachments: [{ instanceId: OLD, device: "/dev/sdf", state: "attached" }],
    tags: {},
  };
  const ec2 = {
    describeNetworkInterface: async () => ({ ...eni }),
    attachNetworkInterface: async (id: string, instanceId: string, index: number) => {
      calls.push(`attach ${id} ${instanceId} ${index}`);
      eni = {
        ...eni,
        status: "in-use",
        attachedTo: instanceId,
        attachment: { attachmentId: "eni-attach-2", instanceId, deviceIndex: index, status: "attached" },
      };
    },
    detachNetworkInterface: async (id: string, instanceId: string, o?: { force?: boolean }) => {
      calls.push(`detach ${id} ${instanceId}${o?.force ? " force" : ""}`);
    },
    describeVolume: async () => ({ ...vol }),
    detachVolume: async (id: string, instanceId?: string, o?: { force?: boolean }) => {
      calls.push(`detach ${id} ${instanceId}${o?.force ? " force" : ""}`);
    },
  } as unknown as Ec2Gateway;
  return {
    calls,
    ec2,
    freeEni: () => (eni = { ...eni, status: "available", attachedTo: null, attachment: undefined }),
    eniDetaching: () => (eni = { ...eni, status: "detaching", attachment: { ...eni.attachment!, status: "detaching" } }),
    freeVolume: () => (vol = { ...vol, state: "available", attachments: [] }),
  };
}

function setup(w: ReturnType<typeof world>) {
  const base = new FakeClock();
  const events: string[] = [];
  const deps = { ec2: w.ec2, clock: scaledClock(1, base), pollMs: 1000 } as unknown as RunbookDeps;
  const ctx = {
    signal: new AbortController().signal,
    event: async (kind: string, msg: string) => void events.push(`${kind}: ${msg}`),
  } as unknown as WorkflowContext;
  /** Advance the fake clock until `p` settles (bounded). */
  const drive = async <T>(p: Promise<T>, onTick?: (modelMs: number) => void): Promise<T> => {
    let done = false;
    const out = p.finally(() => (done = true));
    out.catch(() => {});
    for (let ms = 0; ms < 600_000 && !done; ms += 250) {
      onTick?.(ms);
      await base.advance(250);
    }
    return out;
  };
  return { deps, ctx, events, drive };
}

describe("moving the stable ENI", () => {
  it("detaches normally when the ENI comes free in time: no Force, no event", async () => {
    const w = world();
    const { deps, ctx, events, drive } = setup(w);
    const r = await drive(detachStableEni(deps, ctx, { eniId: ENI, instanceId: OLD, forceAfterMs: 20_000 }), (ms) => {
      if (ms === 3_000) w.freeEni();
    });
    expect(r).toEqual({ forced: false });
    expect(w.calls).toEqual([`detach ${ENI} ${OLD}`]);
    expect(events).toEqual([]);
  });

  it("uses Force only once the deadline-driven budget is spent, and says so on the timeline", async () => {
    const w = world();
    const { deps, ctx, events, drive } = setup(w);
    const r = await drive(detachStableEni(deps, ctx, { eniId: ENI, instanceId: OLD, forceAfterMs: 10_000 }), (ms) => {
      // Stuck until forced: the forced detach frees it.
      if (w.calls.some((c) => c.endsWith("force"))) w.freeEni();
      if (ms === 9_000) expect(w.calls).toEqual([`detach ${ENI} ${OLD}`]);
    });
    expect(r).toEqual({ forced: true });
    expect(w.calls).toEqual([`detach ${ENI} ${OLD}`, `detach ${ENI} ${OLD} force`]);
    expect(events).toEqual([`forced-detach: ${ENI} still attached to ${OLD} after 10 s: detaching with Force`]);
  });

  it("attaches at device index 1 once the previous holder let go; already attached counts as done", async () => {
    const w = world();
    w.eniDetaching();
    const { deps, ctx, drive } = setup(w);
    await drive(attachStableEni(deps, ctx, ENI, NEW), (ms) => {
      if (ms === 2_000) w.freeEni();
    });
    expect(w.calls).toEqual([`attach ${ENI} ${NEW} 1`]);
    await drive(attachStableEni(deps, ctx, ENI, NEW)); // a replay
    expect(w.calls).toEqual([`attach ${ENI} ${NEW} 1`]);
  });

  it("a data volume that does not detach in time is forced too, with an event", async () => {
    const w = world();
    const { deps, ctx, events, drive } = setup(w);
    const r = await drive(
      detachDataVolume(deps, ctx, { volumeId: "vol-00000000000000001", device: "/dev/sdf", instanceId: OLD, forceAfterMs: 5_000 }),
      () => {
        if (w.calls.some((c) => c.endsWith("force"))) w.freeVolume();
      },
    );
    expect(r).toEqual({ forced: true });
    expect(events[0]).toMatch(/^forced-detach: vol-00000000000000001 \(\/dev\/sdf\) still attached to i-00000000000000001 after 5 s/);
  });
});
