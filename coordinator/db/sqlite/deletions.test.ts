import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { SqliteStore } from "./index.js";

const spec = { name: "db" } as StatefulInstanceSpec;
let store: SqliteStore;

beforeEach(async () => {
  store = SqliteStore.open(":memory:", () => 1_000);
  await store.instances.insert("db", spec, "running");
  await store.generations.ensure("db", 1, "wf-create");
  await store.volumes.declare("db", "/dev/sdf", "/data", "ext4");
  await store.volumes.setCurrent("db", "/dev/sdf", "vol-1", "us-east-1a");
  await store.network.set({ instance: "db", eniId: "eni-1", privateIp: "10.0.0.5", subnetId: "subnet-1", availabilityZone: "us-east-1a" });
  await store.root.set({ instance: "db", imageId: "ami-1", snapshotId: "snap-1", rootDeviceName: "/dev/xvda", architecture: "x86_64" });
  await store.workflows.insert({ id: "wf-create", kind: "create", instance: "db", input: {}, trigger: null });
  await store.events.add("db", "created", "create requested", "wf-create");
  await store.deletions.keep({ resourceId: "vol-1", instance: "db", kind: "volume", workflowId: "wf-delete", expiresAt: null });
});
afterEach(async () => store.close());

describe("archiving a deleted instance", () => {
  it("moves the instance and everything that refers to it to the archived name in one transaction, freeing the name", async () => {
    await store.tx(async (t) => {
      await t.instances.setState("db", "deleted", "deleted");
      expect(await t.deletions.archive("db", "db~1970-01-01T00:00:01.000Z")).toBe(true);
    });
    const archived = "db~1970-01-01T00:00:01.000Z";
    expect(await store.instances.get("db")).toBeNull();
    expect((await store.instances.list()).map((i) => i.name)).toEqual([]);
    expect((await store.deletions.listDeleted()).map((i) => i.name)).toEqual([archived]);
    expect((await store.generations.list(archived)).map((g) => g.generation)).toEqual([1]);
    expect((await store.volumes.list(archived)).map((v) => v.volumeId)).toEqual(["vol-1"]);
    expect((await store.network.get(archived))?.eniId).toBe("eni-1");
    expect((await store.root.get(archived))?.imageId).toBe("ami-1");
    expect((await store.workflows.listFor(archived)).map((w) => w.id)).toEqual(["wf-create"]);
    expect((await store.events.list(archived)).map((e) => e.kind)).toEqual(["created"]);
    expect((await store.deletions.kept(archived)).map((k) => k.resourceId)).toEqual(["vol-1"]);
    // The foreign keys still hold, and the name is free for a new create.
    expect(store.db.prepare("PRAGMA foreign_key_check").all()).toEqual([]);
    await store.instances.insert("db", spec, "creating");
    await store.volumes.declare("db", "/dev/sdf", "/data", "ext4");
    expect((await store.volumes.list("db"))[0]?.volumeId).toBeNull();
    // A replayed archive finds nothing under the old name (and leaves the new instance alone).
    expect(await store.tx((t) => t.deletions.archive("nope", archived))).toBe(false);
  });

  it("refuses to archive over an existing archived name, changing nothing", async () => {
    await store.instances.insert("db~x", spec, "deleted");
    await expect(store.tx((t) => t.deletions.archive("db", "db~x"))).rejects.toThrow("db~x already exists");
    expect((await store.instances.get("db"))?.state).toBe("running");
  });

  it("forgets the ids of what a delete did not keep", async () => {
    await store.deletions.forgetDeleted("db", { volumes: true, network: false, snapshots: false, images: false });
    expect((await store.volumes.list("db"))[0]?.volumeId).toBe("vol-1");
    expect((await store.network.get("db"))?.eniId).toBeNull();
    expect(await store.root.get("db")).toMatchObject({ imageId: null, snapshotId: null });
  });
});
