import { beforeEach, describe, expect, it } from "vitest";
import { FakeClock } from "../shared/clock.js";
import { SqliteStore } from "./db/sqlite/index.js";
import { type KeptSweepDeps, sweepExpiredKept } from "./kept.js";

let clock: FakeClock;
let store: SqliteStore;
let calls: string[];
let attachedEni: string | null;
let failNextSnapshotDelete: boolean;

const ec2: KeptSweepDeps["ec2"] = {
  deregisterImage: async (id) => void calls.push(`deregister ${id}`),
  deleteSnapshot: async (id) => {
    if (failNextSnapshotDelete) {
      failNextSnapshotDelete = false;
      throw new Error("connection reset");
    }
    calls.push(`delete ${id}`);
  },
  describeVolume: async () => null,
  deleteVolume: async (id) => void calls.push(`delete ${id}`),
  describeNetworkInterface: async (id) => ({
    eniId: id,
    status: attachedEni ? "in-use" : "available",
    privateIp: "10.0.0.5",
    subnetId: "subnet-1",
    availabilityZone: "us-east-1a",
    attachedTo: attachedEni,
    tags: {},
  }),
  deleteNetworkInterface: async (id) => void calls.push(`delete ${id}`),
};

const sweep = () => sweepExpiredKept({ store, ec2, clock, log: () => undefined });
const keep = (resourceId: string, kind: "volume" | "network-interface" | "snapshot" | "image", inMs: number | null) =>
  store.deletions.keep({
    resourceId,
    instance: "db~x",
    kind,
    workflowId: "wf-delete-1",
    expiresAt: inMs === null ? null : clock.now() + inMs,
  });

beforeEach(async () => {
  clock = new FakeClock();
  store = SqliteStore.open(":memory:", () => clock.now());
  calls = [];
  attachedEni = null;
  failNextSnapshotDelete = false;
});

describe("sweepExpiredKept", () => {
  it("deletes only what has expired, images before the snapshots behind them, and never what is kept forever", async () => {
    await keep("snap-1", "snapshot", 1000);
    await keep("ami-1", "image", 1000);
    await keep("vol-1", "volume", 5000);
    await keep("vol-2", "volume", null);
    expect(await sweep()).toEqual([]);
    await clock.advance(1000);
    expect(await sweep()).toEqual(["ami-1", "snap-1"]);
    expect(calls).toEqual(["deregister ami-1", "delete snap-1"]);
    await clock.advance(10_000_000);
    expect(await sweep()).toEqual(["vol-1"]);
    expect(await sweep()).toEqual([]);
    const rows = await store.deletions.kept("db~x");
    expect(
      rows
        .filter((r) => r.deletedAt !== null)
        .map((r) => r.resourceId)
        .sort(),
    ).toEqual(["ami-1", "snap-1", "vol-1"]);
    expect((await store.events.list("db~x")).filter((e) => e.kind === "kept-expired")).toHaveLength(3);
  });

  it("finishes on the next pass what a failed pass left (marked as started, not gone)", async () => {
    await keep("snap-1", "snapshot", 0);
    failNextSnapshotDelete = true;
    expect(await sweep()).toEqual([]);
    const [row] = await store.deletions.kept("db~x");
    expect(row?.sweepStartedAt).not.toBeNull();
    expect(row?.deletedAt).toBeNull();
    expect(await sweep()).toEqual(["snap-1"]);
  });

  it("leaves an ENI attached to something for a later pass, saying so once", async () => {
    await keep("eni-1", "network-interface", 0);
    attachedEni = "i-0123456789abcdef0";
    expect(await sweep()).toEqual([]);
    expect(await sweep()).toEqual([]);
    const deferred = (await store.events.list("db~x")).filter((e) => e.kind === "kept-expiry-deferred");
    expect(deferred.map((e) => e.message)).toEqual([
      "network-interface eni-1 expired but it is attached to i-0123456789abcdef0; retrying later",
    ]);
    attachedEni = null;
    expect(await sweep()).toEqual(["eni-1"]);
  });
});
