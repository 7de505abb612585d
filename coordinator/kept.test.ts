import { beforeEach, describe, expect, it } from "vitest";
import { FakeClock } from "../shared/clock.js";
import { Ec2Error } from "./cloud/errors.js";
import { SqliteStore } from "./db/sqlite/index.js";
import { type KeptSweepDeps, sweepExpiredKept } from "./kept.js";

let clock: FakeClock;
let store: SqliteStore;
let calls: string[];
let attachedEni: string | null;
let failNextSnapshotDelete: boolean;
let volumeTags: Record<string, string>;
let snapshotInUse: boolean;

const ec2: KeptSweepDeps["ec2"] = {
  deregisterImage: async (id) => void calls.push(`deregister ${id}`),
  deleteSnapshot: async (id) => {
    if (snapshotInUse) throw new Ec2Error(`deleting snapshot ${id}`, "InvalidSnapshot.InUse", "The snapshot is currently in use by ami-2");
    if (failNextSnapshotDelete) {
      failNextSnapshotDelete = false;
      throw new Error("connection reset");
    }
    calls.push(`delete ${id}`);
  },
  describeVolume: async (id) =>
    ({ volumeId: id, state: "available", attachments: [], tags: volumeTags }) as unknown as Awaited<
      ReturnType<KeptSweepDeps["ec2"]["describeVolume"]>
    >,
  describeImage: async () => null,
  describeSnapshot: async () => null,
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
  volumeTags = {};
  snapshotInUse = false;
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
      "network-interface eni-1 expired but it is attached to i-0123456789abcdef0; not deleted, retrying later",
    ]);
    attachedEni = null;
    expect(await sweep()).toEqual(["eni-1"]);
  });

  it("never deletes a kept volume the store records for a stateful instance that is not deleted (regression: an imported, then paused, instance lost it)", async () => {
    await keep("vol-1", "volume", 1000);
    // Another instance took the volume over without adopting it explicitly (say, before adoption existed).
    await store.instances.insert("new-db", {} as never, "paused");
    await store.volumes.declare("new-db", "/dev/sdf", "/data", "ext4");
    await store.volumes.setCurrent("new-db", "/dev/sdf", "vol-1", "us-east-1a");
    await clock.advance(2000);
    expect(await sweep()).toEqual([]);
    expect(await sweep()).toEqual([]);
    expect(calls).toEqual([]);
    expect((await store.events.list("db~x")).filter((e) => e.kind === "kept-expiry-deferred").map((e) => e.message)).toEqual([
      "volume vol-1 expired but the store records it for stateful instance new-db (volume /dev/sdf); not deleted, retrying later",
    ]);
  });

  it("leaves an adopted kept resource alone: it is no longer due", async () => {
    await keep("vol-1", "volume", 1000);
    expect(await store.deletions.adopt("vol-1", "new-db")).toBe(true);
    expect(await store.deletions.adopt("vol-1", "other-db")).toBe(false);
    await clock.advance(2000);
    expect(await store.deletions.due(clock.now())).toEqual([]);
    expect(await sweep()).toEqual([]);
    expect(calls).toEqual([]);
    // The adopter's own delete keeps it in turn: the row is the new owner's again, with its TTL.
    await store.deletions.keep({
      resourceId: "vol-1",
      instance: "new-db~y",
      kind: "volume",
      workflowId: "wf-delete-2",
      expiresAt: clock.now(),
    });
    expect(await sweep()).toEqual(["vol-1"]);
  });

  it("re-checks EC2 right before the delete: a volume tagged to another owner, or a snapshot an image uses, is left", async () => {
    await keep("vol-1", "volume", 0);
    await keep("snap-1", "snapshot", 0);
    volumeTags = { "spotkeep:instance": "new-db" };
    snapshotInUse = true;
    expect(await sweep()).toEqual([]);
    expect(calls).toEqual([]);
    const deferred = (await store.events.list("db~x")).filter((e) => e.kind === "kept-expiry-deferred").map((e) => e.message);
    expect(deferred).toEqual([
      "volume vol-1 expired but it is tagged spotkeep:instance=new-db; not deleted, retrying later",
      "snapshot snap-1 expired but a registered image uses it; not deleted, retrying later",
    ]);
    // Its own (the deleted instance's) tag is no obstacle.
    volumeTags = { "spotkeep:instance": "db" };
    snapshotInUse = false;
    expect((await sweep()).sort()).toEqual(["snap-1", "vol-1"]);
  });
});
