import { beforeEach, describe, expect, it } from "vitest";
import { parseSpec } from "../shared/spec.js";
import type { Ec2Gateway, ImageInfo, SnapshotInfo } from "./cloud/gateway.js";
import { TAG } from "./cloud/gateway.js";
import { Regions } from "./cloud/regions.js";
import { SqliteStore } from "./db/sqlite/index.js";
import { copyImageName, deleteCopiesOf, syncRegionCopies } from "./region-copies.js";

/** One region's EC2, as far as copies go: snapshots and images by id, and a call log. */
class FakeRegion {
  snapshots = new Map<string, SnapshotInfo>();
  images = new Map<string, ImageInfo>();
  calls: string[] = [];
  failDeleteSnapshot = 0;
  private n = 0;
  constructor(readonly region: string) {}
  gateway(): Ec2Gateway {
    const self = this;
    return {
      async describeSnapshot(id: string) {
        return self.snapshots.get(id) ?? null;
      },
      async describeImage(id: string) {
        return self.images.get(id) ?? null;
      },
      async copySnapshot(req: Parameters<NonNullable<Ec2Gateway["copySnapshot"]>>[0]) {
        const found = [...self.snapshots.values()].find((s) => s.tags[TAG.copyOf] === req.tags[TAG.copyOf]);
        if (found) return found;
        self.calls.push(`copy-snapshot ${req.sourceRegion}/${req.sourceSnapshotId} encrypted=${req.encrypted} key=${req.kmsKeyId ?? "-"}`);
        const s = { snapshotId: `snap-${self.region}-${++self.n}`, state: "pending", volumeId: null, tags: req.tags, encrypted: true };
        self.snapshots.set(s.snapshotId, s);
        return s;
      },
      async copyImage(req: Parameters<NonNullable<Ec2Gateway["copyImage"]>>[0]) {
        const found = [...self.images.values()].find((i) => i.name === req.name);
        if (found) return found.imageId;
        self.calls.push(`copy-image ${req.sourceRegion}/${req.sourceImageId} as ${req.name} token ${req.clientToken}`);
        const snap = `snap-${self.region}-${++self.n}`;
        self.snapshots.set(snap, { snapshotId: snap, state: "pending", volumeId: null, tags: req.tags });
        const i = image(`ami-${self.region}-${++self.n}`, "pending", snap, req.name);
        self.images.set(i.imageId, i);
        return i.imageId;
      },
      async deleteSnapshot(id: string) {
        if (self.failDeleteSnapshot > 0) {
          self.failDeleteSnapshot--;
          throw new Error("connection reset");
        }
        self.calls.push(`delete-snapshot ${id}`);
        self.snapshots.delete(id);
      },
      async deregisterImage(id: string) {
        self.calls.push(`deregister ${id}`);
        self.images.delete(id);
      },
    } as unknown as Ec2Gateway;
  }
}

function image(imageId: string, state: string, rootSnapshotId: string, name = imageId): ImageInfo {
  return {
    imageId,
    state,
    name,
    rootDeviceName: "/dev/xvda",
    architecture: "x86_64",
    rootSnapshotId,
    platform: null,
    instanceStoreDevices: [],
    tags: {},
  };
}

const spec = (copyToRegions: unknown[], encryption: unknown = { encrypted: false }) =>
  parseSpec({
    name: "db",
    launch: {
      imageId: "ami-0123456789abcdef0",
      instanceTypes: ["m5.large"],
      subnetIds: ["subnet-0123456789abcdef0"],
      tags: { team: "data" },
    },
    persistence: { root: true, volumes: [{ device: "/dev/sdf", sizeGiB: 10, mountPoint: "/data" }], encryption },
    snapshots: { copyToRegions },
  });

let store: SqliteStore;
let east: FakeRegion;
let west: FakeRegion;
let regions: Regions;
const logs: string[] = [];
const sync = () => syncRegionCopies({ store, regions, log: (l) => logs.push(l) });

/** A store holding instance db (copies to us-west-2), its data snapshot snap-a and its root image ami-1. */
async function freshStore(): Promise<SqliteStore> {
  const st = SqliteStore.open(":memory:", () => 1_000);
  await st.instances.insert("db", spec(["us-west-2"]), "running");
  await st.artifacts.record({
    id: "snap-a",
    instance: "db",
    kind: "data-snapshot",
    device: "/dev/sdf",
    sourceId: "vol-1",
    generation: 1,
  });
  await st.artifacts.record({ id: "ami-1", instance: "db", kind: "image", device: null, sourceId: "snap-root", generation: 2 });
  return st;
}

beforeEach(async () => {
  store = await freshStore();
  east = new FakeRegion("us-east-1");
  west = new FakeRegion("us-west-2");
  regions = new Regions({ home: "us-east-1", allowed: ["us-west-2"], homeClients: { ec2: east.gateway() } }, (r) => {
    if (r !== "us-west-2") throw new Error(`no ${r}`);
    return { ec2: west.gateway() };
  });
  logs.length = 0;
  east.snapshots.set("snap-a", { snapshotId: "snap-a", state: "pending", volumeId: "vol-1", tags: {} });
  east.images.set("ami-1", image("ami-1", "pending", "snap-root"));
});

describe("disaster-recovery copies", () => {
  it("copies a snapshot and an image once each is complete, tagged with their origin, and records each copy with its region", async () => {
    expect(await sync()).toEqual({ copied: [], deleted: [] });
    expect(west.calls).toEqual([]);

    east.snapshots.get("snap-a")!.state = "completed";
    east.images.set("ami-1", image("ami-1", "available", "snap-root"));
    const pass = await sync();
    expect(pass.copied).toHaveLength(2);
    expect(west.calls).toEqual([
      "copy-snapshot us-east-1/snap-a encrypted=false key=-",
      `copy-image us-east-1/ami-1 as ${copyImageName("db", "ami-1")} token spotkeep-copy-ami-1`,
    ]);
    const [snapCopy] = await store.artifacts.list("db", "snapshot-copy");
    expect(snapCopy).toMatchObject({ sourceId: "snap-a", region: "us-west-2", device: "/dev/sdf", generation: 1 });
    expect(west.snapshots.get(snapCopy!.id)!.tags).toMatchObject({
      team: "data",
      [TAG.instance]: "db",
      [TAG.copyOf]: "snap-a",
      [TAG.device]: "/dev/sdf",
    });
    expect((await store.artifacts.list("db", "image-copy"))[0]).toMatchObject({ sourceId: "ami-1", region: "us-west-2" });
    expect((await store.events.list("db", 10)).filter((e) => e.kind === "region-copy")).toHaveLength(2);

    // Another pass copies nothing again.
    expect(await sync()).toEqual({ copied: [], deleted: [] });
    expect(west.calls).toHaveLength(2);
  });

  it("a copy lost from the store by a crash is found again by its tags or name, not made twice", async () => {
    east.snapshots.get("snap-a")!.state = "completed";
    east.images.set("ami-1", image("ami-1", "available", "snap-root"));
    await sync();
    const ids = [...(await store.artifacts.list("db", "snapshot-copy")), ...(await store.artifacts.list("db", "image-copy"))]
      .map((a) => a.id)
      .sort();
    // The coordinator was killed after EC2 answered, before the store recorded: a fresh store sees no copy.
    store = await freshStore();
    await sync();
    expect(west.calls.filter((c) => c.startsWith("copy-"))).toHaveLength(2);
    expect(
      [...(await store.artifacts.list("db", "snapshot-copy")), ...(await store.artifacts.list("db", "image-copy"))].map((a) => a.id).sort(),
    ).toEqual(ids);
  });

  it("encrypts copies of an encrypted instance with the key given for the region", async () => {
    const key = "arn:aws:kms:us-west-2:123456789012:alias/dr";
    await store.instances.setSpec("db", spec([{ region: "us-west-2", kmsKeyId: key }], { encrypted: true }));
    east.snapshots.get("snap-a")!.state = "completed";
    await sync();
    expect(west.calls).toEqual([`copy-snapshot us-east-1/snap-a encrypted=true key=${key}`]);
  });

  it("deletes the copies of an original retention deleted, and an image copy's snapshot even when that delete failed once", async () => {
    east.snapshots.get("snap-a")!.state = "completed";
    east.images.set("ami-1", image("ami-1", "available", "snap-root"));
    await sync();
    const imageCopy = (await store.artifacts.list("db", "image-copy"))[0]!;
    const imageCopySnapshot = west.images.get(imageCopy.id)!.rootSnapshotId!;
    await store.artifacts.markDeleted("ami-1");
    west.failDeleteSnapshot = 1;
    await sync();
    expect(logs.join("\n")).toMatch(/region copies: connection reset/);
    expect(west.images.has(imageCopy.id)).toBe(false);
    expect(west.snapshots.has(imageCopySnapshot)).toBe(true);
    // The next pass finds the image copy's snapshot recorded and deletes it.
    const pass = await sync();
    expect(west.snapshots.has(imageCopySnapshot)).toBe(false);
    expect(pass.deleted).toContain(imageCopySnapshot);
    expect(await store.artifacts.list("db", "image-copy")).toEqual([]);
    // The data snapshot's copy stays while its original does.
    expect((await store.artifacts.list("db", "snapshot-copy")).map((a) => a.sourceId)).toEqual(["snap-a"]);
  });

  it("deletes every copy when the region leaves copyToRegions, and deleteCopiesOf removes the copies of given originals", async () => {
    east.snapshots.get("snap-a")!.state = "completed";
    east.images.set("ami-1", image("ami-1", "available", "snap-root"));
    await sync();
    expect(await deleteCopiesOf({ store, regions, log: () => undefined }, "db", ["snap-a"])).toHaveLength(1);
    expect(await store.artifacts.list("db", "snapshot-copy")).toEqual([]);
    await store.instances.setSpec("db", spec([]));
    const imageCopy = (await store.artifacts.list("db", "image-copy"))[0]!;
    expect((await sync()).deleted).toEqual([imageCopy.id]);
    // The image copy and the snapshot behind it.
    expect(west.images.size + west.snapshots.size).toBe(0);
  });
});
