/**
 * The store contract (coordinator/db/store.ts), one body run against every backend by
 * contract.test.ts: every query group, idempotent replays and first-wins records, result order,
 * transactions (all or nothing, and nothing interleaves with one), durability across a reopen and
 * row counts. `backend.open(now)` opens a store on the current test's own, empty database; a
 * second call opens another store on the same database (a restarted coordinator).
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Store } from "../../coordinator/db/store.js";
import { parseGroupSpec } from "../../shared/group-spec.js";
import type { StatefulInstanceSpec } from "../../shared/spec.js";

export interface StoreBackend {
  open(now: () => number): Promise<Store>;
}

const spec = (name: string, extra: Record<string, unknown> = {}) => ({ name, ...extra }) as unknown as StatefulInstanceSpec;

/** A value that settles only when asked to. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Whether `p` has settled after the event loop had time to run other I/O. */
async function settledSoon(p: Promise<unknown>, ms = 150): Promise<boolean> {
  let settled = false;
  void p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((r) => setTimeout(r, ms));
  return settled;
}

export function storeContract(backend: StoreBackend): void {
  let t = 1_000;
  const now = () => t;
  const opened: Store[] = [];
  let store: Store;

  async function open(): Promise<Store> {
    const s = await backend.open(now);
    opened.push(s);
    return s;
  }
  async function fresh(): Promise<Store> {
    t = 1_000;
    store = await open();
    return store;
  }
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });

  describe("instances", () => {
    it("inserts, reads and lists by name in byte order without deleted ones; updates stamp the store's clock", async () => {
      await fresh();
      for (const n of ["b-db", "a-db", "B-db", "c-db"]) await store.instances.insert(n, spec(n), "creating");
      expect((await store.instances.list()).map((i) => i.name)).toEqual(["B-db", "a-db", "b-db", "c-db"]);
      expect(await store.instances.get("a-db")).toEqual({
        name: "a-db",
        spec: { name: "a-db" },
        state: "creating",
        stateReason: null,
        generation: 0,
        createdAt: 1_000,
        updatedAt: 1_000,
      });
      t = 2_000;
      await store.instances.setState("a-db", "failed", "launch failed: no capacity");
      await store.instances.setCurrentGeneration("a-db", 3);
      t = 3_000;
      await store.instances.setSpec("a-db", spec("a-db", { instanceTypes: ["m5.large", "m6i.large"], note: "ünïcode ✓" }));
      expect(await store.instances.get("a-db")).toMatchObject({
        state: "failed",
        stateReason: "launch failed: no capacity",
        generation: 3,
        createdAt: 1_000,
        updatedAt: 3_000,
        spec: { name: "a-db", instanceTypes: ["m5.large", "m6i.large"], note: "ünïcode ✓" },
      });
      await store.instances.setState("a-db", "running");
      expect((await store.instances.get("a-db"))?.stateReason).toBeNull();
      await store.instances.setState("c-db", "deleted");
      expect((await store.instances.list()).map((i) => i.name)).toEqual(["B-db", "a-db", "b-db"]);
      expect(await store.instances.get("nope")).toBeNull();
    });

    it("refuses a second insert of a name and changes nothing", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      const before = await store.counts();
      await expect(store.instances.insert("db", spec("db", { other: true }), "creating")).rejects.toThrow();
      expect(await store.counts()).toEqual(before);
      expect(await store.instances.get("db")).toMatchObject({ state: "running", spec: { name: "db" } });
    });
  });

  describe("generations", () => {
    it("ensure is idempotent and launch, live and end keep their first time; end keeps its first reason", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "creating");
      await store.generations.ensure("db", 1, "wf-a");
      await store.generations.ensure("db", 1, "wf-b");
      expect(await store.generations.get("db", 1)).toEqual({
        instance: "db",
        generation: 1,
        ec2InstanceId: null,
        instanceType: null,
        availabilityZone: null,
        market: null,
        privateIp: null,
        status: "launching",
        launchedAt: null,
        readyAt: null,
        endedAt: null,
        endReason: null,
        workflowId: "wf-a",
        sessionSecretHash: null,
        carriedSecret: null,
      });
      const launch = {
        ec2InstanceId: "i-1",
        instanceType: "m5.large",
        availabilityZone: "us-east-1a",
        market: "spot" as const,
        privateIp: "10.0.0.5",
      };
      t = 2_000;
      await store.generations.recordLaunch("db", 1, launch);
      t = 2_500;
      await store.generations.recordLaunch("db", 1, launch);
      t = 3_000;
      await store.generations.markLive("db", 1);
      t = 3_500;
      await store.generations.markLive("db", 1);
      t = 4_000;
      await store.generations.end("db", 1, "spot interruption");
      t = 4_500;
      await store.generations.end("db", 1, "replayed end");
      expect(await store.generations.get("db", 1)).toMatchObject({
        ec2InstanceId: "i-1",
        market: "spot",
        privateIp: "10.0.0.5",
        status: "ended",
        launchedAt: 2_000,
        readyAt: 3_000,
        endedAt: 4_000,
        endReason: "spot interruption",
      });
      expect((await store.generations.byEc2InstanceId("i-1"))?.generation).toBe(1);
      expect(await store.generations.byEc2InstanceId("i-none")).toBeNull();
      expect(await store.generations.get("db", 9)).toBeNull();
    });

    it("lists by generation; live() holds only the current live generation of running instances", async () => {
      await fresh();
      const launch = (id: string) => ({
        ec2InstanceId: id,
        instanceType: "m5.large",
        availabilityZone: "us-east-1a",
        market: "on-demand" as const,
        privateIp: null,
      });
      for (const name of ["web", "db", "paused"]) await store.instances.insert(name, spec(name), "running");
      for (const [name, g] of [
        ["db", 2],
        ["db", 1],
        ["web", 1],
        ["paused", 1],
      ] as const) {
        await store.generations.ensure(name, g, `wf-${name}-${g}`);
        await store.generations.recordLaunch(name, g, launch(`i-${name}-${g}`));
        await store.generations.markLive(name, g);
      }
      await store.instances.setCurrentGeneration("db", 2);
      await store.instances.setCurrentGeneration("web", 1);
      await store.instances.setCurrentGeneration("paused", 1);
      await store.instances.setState("paused", "paused");
      await store.generations.ensure("web", 2, "wf-web-2"); // launching: not live
      expect((await store.generations.list("db")).map((g) => g.generation)).toEqual([1, 2]);
      expect((await store.generations.live()).map((g) => `${g.instance}/${g.generation}`)).toEqual(["db/2", "web/1"]);
    });

    it("keeps each generation's latest inventory: JSON exactly, the later one replacing the earlier, stamped with the store's clock", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      await store.generations.ensure("db", 1, "wf");
      await store.generations.ensure("db", 2, "wf");
      expect(await store.generations.inventory("db", 1)).toBeNull();
      const first = { devices: [{ device: "/dev/nvme1n1", volumeId: "vol-1" }], filesystems: [], note: "ünïcode \u0000" };
      await store.generations.recordInventory("db", 1, "i-1", first, ["usage:/dev/sdf"]);
      t = 2_000;
      await store.generations.recordInventory("db", 2, "i-2", { devices: [] }, []);
      expect(await store.generations.inventory("db", 1)).toEqual({
        instance: "db",
        generation: 1,
        ec2InstanceId: "i-1",
        at: 1_000,
        data: first,
        raised: ["usage:/dev/sdf"],
      });
      t = 3_000;
      const later = { devices: [], filesystems: [{ mountPoint: "/data", usedBytes: 9 }] };
      await store.generations.recordInventory("db", 1, "i-1b", later, []);
      expect(await store.generations.inventory("db", 1)).toEqual({
        instance: "db",
        generation: 1,
        ec2InstanceId: "i-1b",
        at: 3_000,
        data: later,
        raised: [],
      });
      expect((await store.generations.inventory("db", 2))?.data).toEqual({ devices: [] });
      expect(await store.generations.inventory("db", 3)).toBeNull();
      expect((await store.counts()).inventories).toBe(2);
    });

    it("registers an agent's session secret once: the first hash wins", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      await store.generations.ensure("db", 1, "wf");
      await store.generations.recordLaunch("db", 1, {
        ec2InstanceId: "i-1",
        instanceType: "t3.micro",
        availabilityZone: "a",
        market: "spot",
        privateIp: null,
      });
      expect(await store.generations.registerSessionSecret("i-1", "aa")).toBe(true);
      expect(await store.generations.registerSessionSecret("i-1", "aa")).toBe(true);
      expect(await store.generations.registerSessionSecret("i-1", "bb")).toBe(false);
      expect(await store.generations.registerSessionSecret("i-unknown", "aa")).toBe(false);
      expect((await store.generations.get("db", 1))?.sessionSecretHash).toBe("aa");
    });

    it("forgets the session secret when the generation is launched again on another EC2 instance (regression: a make-before-break fallback's agent was refused)", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      await store.generations.ensure("db", 2, "wf");
      const launch = (ec2InstanceId: string) =>
        store.generations.recordLaunch("db", 2, {
          ec2InstanceId,
          instanceType: "t3.micro",
          availabilityZone: "a",
          market: "spot",
          privateIp: null,
        });
      await launch("i-unready");
      expect(await store.generations.registerSessionSecret("i-unready", "aa")).toBe(true);
      await launch("i-unready"); // a replayed record of the same instance keeps it
      expect((await store.generations.get("db", 2))?.sessionSecretHash).toBe("aa");
      await launch("i-again");
      expect((await store.generations.get("db", 2))?.sessionSecretHash).toBeNull();
      expect(await store.generations.byEc2InstanceId("i-unready")).toBeNull();
      expect(await store.generations.registerSessionSecret("i-again", "bb")).toBe(true);
      expect((await store.generations.get("db", 2))?.sessionSecretHash).toBe("bb");
    });

    it("records the secret a persisted root carries with the launch; a later update of the launch keeps it, a launch again replaces it", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      await store.generations.ensure("db", 3, "wf");
      const where = { instanceType: "t3.micro", availabilityZone: "a", market: "spot" as const, privateIp: null };
      expect((await store.generations.get("db", 3))?.carriedSecret).toBeNull();
      await store.generations.recordLaunch("db", 3, {
        ec2InstanceId: "i-one",
        ...where,
        carriedSecret: { hash: "sha256:g2", generation: 2 },
      });
      expect((await store.generations.byEc2InstanceId("i-one"))?.carriedSecret).toEqual({ hash: "sha256:g2", generation: 2 });
      // waitRunning records the same launch again with its address, without a carried secret.
      await store.generations.recordLaunch("db", 3, { ec2InstanceId: "i-one", ...where, privateIp: "10.0.0.5" });
      expect((await store.generations.get("db", 3))?.carriedSecret).toEqual({ hash: "sha256:g2", generation: 2 });
      expect(await store.generations.registerSessionSecret("i-one", "aa")).toBe(true);
      // Launched again from a fresh image: nothing carried, and the first EC2 instance's secret forgotten.
      await store.generations.recordLaunch("db", 3, { ec2InstanceId: "i-two", ...where, carriedSecret: null });
      const again = await store.generations.get("db", 3);
      expect(again?.carriedSecret).toBeNull();
      expect(again?.sessionSecretHash).toBeNull();
    });
  });

  describe("persisted resources", () => {
    it("declares volumes once, keeps 'no mount point', lists by device and updates in place", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      await store.volumes.declare("db", "/dev/sdg", null, "xfs");
      await store.volumes.declare("db", "/dev/sdf", "/data", "ext4");
      await store.volumes.declare("db", "/dev/sdf", "/elsewhere", "xfs");
      await store.volumes.setCurrent("db", "/dev/sdf", "vol-1", "us-east-1a");
      await store.volumes.setLatestSnapshot("db", "/dev/sdf", "snap-1");
      await store.volumes.setMountPoint("db", "/dev/sdg", "/logs");
      await store.volumes.setMountPoint("db", "/dev/sdf", null);
      expect(await store.volumes.list("db")).toEqual([
        {
          instance: "db",
          device: "/dev/sdf",
          mountPoint: null,
          fsType: "ext4",
          volumeId: "vol-1",
          availabilityZone: "us-east-1a",
          latestSnapshotId: "snap-1",
        },
        {
          instance: "db",
          device: "/dev/sdg",
          mountPoint: "/logs",
          fsType: "xfs",
          volumeId: null,
          availabilityZone: null,
          latestSnapshotId: null,
        },
      ]);
      expect(await store.volumes.list("other")).toEqual([]);
    });

    it("sets the network identity and the root lineage as whole rows (the last set wins)", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      expect(await store.network.get("db")).toBeNull();
      expect(await store.root.get("db")).toBeNull();
      await store.network.set({
        instance: "db",
        eniId: "eni-1",
        privateIp: "10.0.0.5",
        subnetId: "subnet-1",
        availabilityZone: "us-east-1a",
      });
      await store.network.set({ instance: "db", eniId: "eni-2", privateIp: null, subnetId: "subnet-1", availabilityZone: null });
      await store.root.set({ instance: "db", imageId: "ami-1", snapshotId: "snap-1", rootDeviceName: "/dev/xvda", architecture: "x86_64" });
      await store.root.set({ instance: "db", imageId: "ami-2", snapshotId: null, rootDeviceName: "/dev/xvda", architecture: "arm64" });
      expect(await store.network.get("db")).toEqual({
        instance: "db",
        eniId: "eni-2",
        privateIp: null,
        subnetId: "subnet-1",
        availabilityZone: null,
      });
      expect(await store.root.get("db")).toEqual({
        instance: "db",
        imageId: "ami-2",
        snapshotId: null,
        rootDeviceName: "/dev/xvda",
        architecture: "arm64",
      });
    });

    it("records artifacts once, lists them newest first (insertion order among equal times), by device, without deleted ones", async () => {
      await fresh();
      const a = (id: string, device: string | null, kind: "data-snapshot" | "image" = "data-snapshot") => ({
        id,
        instance: "db",
        kind,
        device,
        sourceId: "vol-1",
        generation: 1,
      });
      await store.artifacts.record(a("snap-1", "/dev/sdf"));
      await store.artifacts.record(a("snap-2", "/dev/sdg"));
      t = 2_000;
      await store.artifacts.record(a("snap-3", "/dev/sdf"));
      await store.artifacts.record({ ...a("snap-1", "/dev/sdz"), generation: 7 }); // a replay: the first record stays
      await store.artifacts.record(a("ami-1", null, "image"));
      expect((await store.artifacts.list("db", "data-snapshot")).map((x) => x.id)).toEqual(["snap-3", "snap-2", "snap-1"]);
      expect((await store.artifacts.list("db", "data-snapshot", "/dev/sdf")).map((x) => x.id)).toEqual(["snap-3", "snap-1"]);
      expect(await store.artifacts.list("db", "image")).toEqual([
        {
          id: "ami-1",
          instance: "db",
          kind: "image",
          device: null,
          sourceId: "vol-1",
          generation: 1,
          region: null,
          createdAt: 2_000,
          deletedAt: null,
        },
      ]);
      // A disaster-recovery copy carries the region it is in.
      await store.artifacts.record({ ...a("snap-9", "/dev/sdf"), kind: "snapshot-copy", sourceId: "snap-3", region: "us-west-2" });
      expect(await store.artifacts.list("db", "snapshot-copy")).toMatchObject([{ id: "snap-9", sourceId: "snap-3", region: "us-west-2" }]);
      t = 3_000;
      await store.artifacts.markDeleted("snap-1");
      t = 4_000;
      await store.artifacts.markDeleted("snap-1");
      expect((await store.artifacts.list("db", "data-snapshot")).map((x) => x.id)).toEqual(["snap-3", "snap-2"]);
    });

    it("takes a disaster-recovery copy as the instance's own artifact once, and only a copy", async () => {
      await fresh();
      const copy = { instance: "db", device: "/dev/sdf", generation: 2 };
      await store.artifacts.record({ ...copy, id: "snap-w", kind: "snapshot-copy", sourceId: "snap-e", region: "us-west-2" });
      await store.artifacts.record({ ...copy, id: "ami-w", kind: "image-copy", device: null, sourceId: "ami-e", region: "us-west-2" });
      await store.artifacts.record({ ...copy, id: "snap-own", kind: "data-snapshot", sourceId: "vol-1" });
      expect(await store.artifacts.takeCopy("snap-w", "data-snapshot", null)).toBe(true);
      expect(await store.artifacts.takeCopy("snap-w", "data-snapshot", null)).toBe(false);
      expect(await store.artifacts.takeCopy("ami-w", "image", "snap-root-w")).toBe(true);
      expect(await store.artifacts.takeCopy("snap-own", "image", null)).toBe(false);
      expect(await store.artifacts.takeCopy("snap-unknown", "data-snapshot", null)).toBe(false);
      const own = await store.artifacts.list("db", "data-snapshot");
      expect(own.map((x) => [x.id, x.sourceId, x.region ?? null])).toEqual(
        expect.arrayContaining([
          ["snap-w", null, null],
          ["snap-own", "vol-1", null],
        ]),
      );
      expect((await store.artifacts.list("db", "image")).map((x) => [x.id, x.sourceId, x.region ?? null])).toEqual([
        ["ami-w", "snap-root-w", null],
      ]);
      expect(await store.artifacts.list("db", "snapshot-copy")).toEqual([]);
    });
  });

  describe("workflows and steps", () => {
    it("keeps input and result JSON exactly, lists in start order (id breaks ties), finishes once", async () => {
      await fresh();
      const input = { name: "db", n: 2 ** 40, f: 0.25, list: [1, "x", null, { deep: [true, false] }], text: 'ünï ✓ "q" \\ \n' };
      t = 2_000;
      await store.workflows.insert({ id: "wf-b", kind: "replace", instance: "db", input, trigger: "spot-interruption" });
      await store.workflows.insert({ id: "wf-a", kind: "snapshot", instance: "db", input: undefined, trigger: null });
      t = 1_500;
      await store.workflows.insert({ id: "wf-c", kind: "create", instance: "db", input: null, trigger: null });
      await store.workflows.insert({ id: "wf-other", kind: "create", instance: "web", input: {}, trigger: null });
      expect(await store.workflows.get("wf-b")).toEqual({
        id: "wf-b",
        kind: "replace",
        instance: "db",
        owner: { kind: "instance", name: "db" },
        status: "running",
        input,
        trigger: "spot-interruption",
        result: null,
        error: null,
        startedAt: 2_000,
        finishedAt: null,
      });
      expect((await store.workflows.get("wf-a"))?.input).toBeNull();
      expect((await store.workflows.listFor("db")).map((w) => w.id)).toEqual(["wf-c", "wf-a", "wf-b"]);
      expect((await store.workflows.runningFor("db")).map((w) => w.id)).toEqual(["wf-c", "wf-a", "wf-b"]);
      expect((await store.workflows.unfinished()).map((w) => w.id)).toEqual(["wf-c", "wf-other", "wf-a", "wf-b"]);
      expect(await store.workflows.countRunning()).toBe(4);
      t = 5_000;
      await store.workflows.finish("wf-b", "succeeded", { generation: 2, ids: ["i-1"] }, null);
      t = 6_000;
      await store.workflows.finish("wf-b", "failed", null, "a replayed finish changes nothing");
      await store.workflows.finish("wf-a", "failed", undefined, "boom");
      expect(await store.workflows.get("wf-b")).toMatchObject({
        status: "succeeded",
        result: { generation: 2, ids: ["i-1"] },
        error: null,
        finishedAt: 5_000,
      });
      expect(await store.workflows.get("wf-a")).toMatchObject({ status: "failed", result: null, error: "boom", finishedAt: 6_000 });
      expect((await store.workflows.runningFor("db")).map((w) => w.id)).toEqual(["wf-c"]);
      expect(await store.workflows.countRunning()).toBe(2);
      expect(await store.workflows.get("wf-none")).toBeNull();
    });

    it("records a step's attempts, retry time, failure kind and result, in seq order", async () => {
      await fresh();
      await store.workflows.insert({ id: "wf", kind: "replace", instance: "db", input: {}, trigger: null });
      await store.steps.start("wf", 2, "capture");
      t = 1_100;
      await store.steps.start("wf", 1, "quiesce");
      expect(await store.steps.get("wf", 1)).toEqual({
        workflowId: "wf",
        seq: 1,
        name: "quiesce",
        status: "running",
        attempts: 0,
        nextAttemptAt: null,
        result: null,
        failure: null,
        startedAt: 1_100,
        endedAt: null,
      });
      t = 1_200;
      await store.steps.scheduleRetry("wf", 1, { kind: "throttled", code: "RequestLimitExceeded", message: "slow down" }, 9_000);
      expect(await store.steps.get("wf", 1)).toMatchObject({
        status: "pending",
        attempts: 1,
        nextAttemptAt: 9_000,
        failure: { kind: "throttled", code: "RequestLimitExceeded", message: "slow down" },
      });
      t = 9_000;
      await store.steps.start("wf", 1, "quiesce"); // the retry begins: the first start time stays
      expect(await store.steps.get("wf", 1)).toMatchObject({ status: "running", attempts: 1, nextAttemptAt: null, startedAt: 1_100 });
      t = 9_500;
      await store.steps.complete("wf", 1, { clean: true });
      expect(await store.steps.get("wf", 1)).toMatchObject({
        status: "done",
        attempts: 2,
        result: { clean: true },
        failure: null,
        endedAt: 9_500,
      });
      await store.steps.complete("wf", 2, undefined);
      expect((await store.steps.get("wf", 2))?.result).toBeNull();
      await store.steps.start("wf", 3, "launch");
      await store.steps.fail("wf", 3, { kind: "no-capacity", code: null, message: "no capacity in any candidate" });
      expect(await store.steps.get("wf", 3)).toMatchObject({
        status: "failed",
        attempts: 1,
        failure: { kind: "no-capacity", code: null, message: "no capacity in any candidate" },
        endedAt: 9_500,
      });
      expect((await store.steps.list("wf")).map((s) => `${s.seq}:${s.name}:${s.status}`)).toEqual([
        "1:quiesce:done",
        "2:capture:done",
        "3:launch:failed",
      ]);
      expect(await store.steps.get("wf", 4)).toBeNull();
    });
  });

  describe("timeline, agent reports, queue events and notice arrivals", () => {
    it("lists the last events oldest first", async () => {
      await fresh();
      for (let i = 1; i <= 5; i++) {
        t = 1_000 + i;
        await store.events.add("db", "k", `m${i}`, i % 2 ? `wf-${i}` : null);
      }
      await store.events.add("web", "k", "other");
      const all = await store.events.list("db");
      expect(all.map((e) => e.message)).toEqual(["m1", "m2", "m3", "m4", "m5"]);
      expect(all[0]).toEqual({ id: all[0]!.id, at: 1_001, instance: "db", kind: "k", message: "m1", workflowId: "wf-1" });
      expect(all[1]?.workflowId).toBeNull();
      expect(all.every((e, i) => i === 0 || e.id > all[i - 1]!.id)).toBe(true);
      expect((await store.events.list("db", 2)).map((e) => e.message)).toEqual(["m4", "m5"]);
    });

    it("replaces a summary event in place only while every later event of the instance is of a quiet kind", async () => {
      await fresh();
      const quiet = ["agent-impostor", "notice-unconfirmed"];
      t = 2_000;
      await store.events.add("db", "created", "real");
      await store.events.add("db", "agent-impostor", "x, repeated: 1");
      await store.events.add("db", "agent-impostor", "y: first");
      await store.events.add("db", "notice-unconfirmed", "z, repeated: 1");
      await store.events.add("web", "other", "another instance's event does not count");
      t = 3_000;
      expect(await store.events.replaceLatest("db", "agent-impostor", "x, repeated: ", "x, repeated: 5", quiet)).toBe(true);
      // No such summary, another kind, another instance: nothing changes.
      expect(await store.events.replaceLatest("db", "agent-impostor", "w, repeated: ", "w, repeated: 2", quiet)).toBe(false);
      expect(await store.events.replaceLatest("db", "created", "x, repeated: ", "x", quiet)).toBe(false);
      expect(await store.events.replaceLatest("web", "agent-impostor", "x, repeated: ", "x", quiet)).toBe(false);
      const listed = await store.events.list("db");
      expect(listed.map((e) => e.message)).toEqual(["real", "x, repeated: 5", "y: first", "z, repeated: 1"]);
      expect(listed[1]?.at).toBe(2_000);
      // An event of another kind after it: the summary stays as it is.
      await store.events.add("db", "workflow-succeeded", "real again");
      expect(await store.events.replaceLatest("db", "agent-impostor", "x, repeated: ", "x, repeated: 9", quiet)).toBe(false);
      expect((await store.events.list("db")).map((e) => e.message)).toContain("x, repeated: 5");
    });

    it("records an agent report once (first wins) and finds the latest by time, then by arrival", async () => {
      await fresh();
      expect(await store.agentReports.record("i-1", "quiesced", "cmd-1", { clean: true })).toBe(true);
      expect(await store.agentReports.record("i-1", "quiesced", "cmd-1", { clean: false })).toBe(false);
      expect(await store.agentReports.get("i-1", "quiesced", "cmd-1")).toEqual({
        ec2InstanceId: "i-1",
        kind: "quiesced",
        ref: "cmd-1",
        data: { clean: true },
        at: 1_000,
      });
      expect(await store.agentReports.get("i-1", "quiesced")).toBeNull();
      await store.agentReports.record("i-1", "ready", "", { ok: 1 });
      expect((await store.agentReports.get("i-1", "ready"))?.data).toEqual({ ok: 1 });
      await store.agentReports.record("i-1", "hello", "run", { n: 1 });
      await store.agentReports.record("i-1", "hello", "restore", { n: 2 }); // same time: the later arrival is the latest
      expect((await store.agentReports.latest("i-1", "hello"))?.data).toEqual({ n: 2 });
      t = 2_000;
      await store.agentReports.record("i-1", "hello", "a", { n: 3 });
      expect((await store.agentReports.latest("i-1", "hello"))?.ref).toBe("a");
      expect(await store.agentReports.latest("i-2", "hello")).toBeNull();
    });

    it("records a queue event once by id and marks it handled once", async () => {
      await fresh();
      const e = {
        eventId: "ev-1",
        kind: "spot-interruption",
        ec2InstanceId: "i-1",
        instance: "db",
        data: { detail: { action: "terminate" } },
      };
      expect(await store.queueEvents.record(e)).toBe(true);
      expect(await store.queueEvents.record({ ...e, kind: "rebalance" })).toBe(false);
      t = 2_000;
      await store.queueEvents.markHandled("ev-1", "replace started");
      t = 3_000;
      await store.queueEvents.markHandled("ev-1", "a replay");
      expect(await store.queueEvents.get("ev-1")).toEqual({ ...e, receivedAt: 1_000, handledAt: 2_000, outcome: "replace started" });
      expect(await store.queueEvents.get("ev-2")).toBeNull();
    });

    it("records each source's first notice arrival and lists them earliest first", async () => {
      await fresh();
      t = 5_000;
      expect(await store.noticeArrivals.record("i-1", "spot-interruption", "queue")).toBe(true);
      t = 3_000;
      expect(await store.noticeArrivals.record("i-1", "spot-interruption", "agent")).toBe(true);
      t = 9_000;
      expect(await store.noticeArrivals.record("i-1", "spot-interruption", "agent")).toBe(false);
      expect(await store.noticeArrivals.record("i-1", "rebalance", "agent")).toBe(true);
      expect(await store.noticeArrivals.list("i-1", "spot-interruption")).toEqual([
        { ec2InstanceId: "i-1", kind: "spot-interruption", source: "agent", at: 3_000 },
        { ec2InstanceId: "i-1", kind: "spot-interruption", source: "queue", at: 5_000 },
      ]);
    });
  });

  describe("deletions and kept resources", () => {
    async function seeded(): Promise<void> {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      await store.generations.ensure("db", 1, "wf-create");
      await store.volumes.declare("db", "/dev/sdf", "/data", "ext4");
      await store.volumes.setCurrent("db", "/dev/sdf", "vol-1", "us-east-1a");
      await store.volumes.setLatestSnapshot("db", "/dev/sdf", "snap-1");
      await store.network.set({
        instance: "db",
        eniId: "eni-1",
        privateIp: "10.0.0.5",
        subnetId: "subnet-1",
        availabilityZone: "us-east-1a",
      });
      await store.root.set({ instance: "db", imageId: "ami-1", snapshotId: "snap-r", rootDeviceName: "/dev/xvda", architecture: "x86_64" });
      await store.artifacts.record({
        id: "snap-1",
        instance: "db",
        kind: "data-snapshot",
        device: "/dev/sdf",
        sourceId: "vol-1",
        generation: 1,
      });
      await store.workflows.insert({ id: "wf-create", kind: "create", instance: "db", input: {}, trigger: null });
      await store.events.add("db", "created", "create requested", "wf-create");
      await store.queueEvents.record({ eventId: "ev-1", kind: "rebalance", ec2InstanceId: "i-1", instance: "db", data: {} });
      await store.deletions.keep({ resourceId: "vol-1", instance: "db", kind: "volume", workflowId: "wf-delete", expiresAt: null });
      await store.taskRuns.sync("db", ["pause 0 20 * * *"], 500);
      await store.generations.recordInventory("db", 1, "i-1", { devices: [] }, []);
    }

    it("archives an instance and every row that refers to it in one transaction, freeing the name", async () => {
      await seeded();
      const archived = "db~1970-01-01T00:00:01.000Z";
      await store.tx(async (x) => {
        await x.instances.setState("db", "deleted", "deleted");
        expect(await x.deletions.archive("db", archived)).toBe(true);
      });
      expect(await store.instances.get("db")).toBeNull();
      expect(await store.instances.list()).toEqual([]);
      expect((await store.deletions.listDeleted()).map((i) => [i.name, i.state])).toEqual([[archived, "deleted"]]);
      expect((await store.generations.list(archived)).map((g) => g.generation)).toEqual([1]);
      expect((await store.volumes.list(archived)).map((v) => v.volumeId)).toEqual(["vol-1"]);
      expect((await store.network.get(archived))?.eniId).toBe("eni-1");
      expect((await store.root.get(archived))?.imageId).toBe("ami-1");
      expect((await store.artifacts.list(archived, "data-snapshot")).map((a) => a.id)).toEqual(["snap-1"]);
      expect((await store.workflows.listFor(archived)).map((w) => w.id)).toEqual(["wf-create"]);
      expect((await store.events.list(archived)).map((e) => e.kind)).toEqual(["created"]);
      expect((await store.queueEvents.get("ev-1"))?.instance).toBe(archived);
      expect((await store.deletions.kept(archived)).map((k) => k.resourceId)).toEqual(["vol-1"]);
      expect((await store.taskRuns.list(archived)).map((r) => r.taskKey)).toEqual(["pause 0 20 * * *"]);
      expect((await store.generations.inventory(archived, 1))?.ec2InstanceId).toBe("i-1");
      expect(await store.generations.inventory("db", 1)).toBeNull();
      // The name is free again, and a replayed archive finds nothing under it.
      await store.instances.insert("db", spec("db"), "creating");
      await store.volumes.declare("db", "/dev/sdf", "/data", "ext4");
      expect((await store.volumes.list("db"))[0]?.volumeId).toBeNull();
      expect(await store.tx((x) => x.deletions.archive("nope", archived))).toBe(false);
    });

    it("refuses to archive over an existing name, and the whole transaction changes nothing", async () => {
      await seeded();
      await store.instances.insert("db~x", spec("db"), "deleted");
      const before = await store.counts();
      await expect(
        store.tx(async (x) => {
          await x.instances.setState("db", "deleted");
          await x.deletions.archive("db", "db~x");
        }),
      ).rejects.toThrow("db~x already exists");
      expect(await store.counts()).toEqual(before);
      expect((await store.instances.get("db"))?.state).toBe("running");
    });

    it("forgets the ids of what a delete did not keep", async () => {
      await seeded();
      await store.deletions.forgetDeleted("db", { volumes: true, network: false, snapshots: false, images: false });
      expect(await store.volumes.list("db")).toMatchObject([{ volumeId: "vol-1", availabilityZone: "us-east-1a", latestSnapshotId: null }]);
      expect((await store.network.get("db"))?.eniId).toBeNull();
      expect(await store.root.get("db")).toMatchObject({ imageId: null, snapshotId: null });
      await store.root.set({ instance: "db", imageId: "ami-1", snapshotId: "snap-r", rootDeviceName: "/dev/xvda", architecture: "x86_64" });
      await store.deletions.forgetDeleted("db", { volumes: false, network: true, snapshots: true, images: false });
      expect(await store.volumes.list("db")).toMatchObject([{ volumeId: null, availabilityZone: null }]);
      expect(await store.root.get("db")).toMatchObject({ imageId: null, snapshotId: "snap-r" });
    });

    it("keeps a resource once, lists kept ones by kind and id, and sweeps due ones with first-wins marks", async () => {
      await fresh();
      const keep = (resourceId: string, kind: "volume" | "snapshot" | "image", expiresAt: number | null) =>
        store.deletions.keep({ resourceId, instance: "db~x", kind, workflowId: "wf-del", expiresAt });
      await keep("vol-2", "volume", 5_000);
      await keep("snap-1", "snapshot", 3_000);
      await keep("vol-1", "volume", 3_000);
      await keep("ami-1", "image", null);
      await keep("vol-1", "volume", 99_000); // a replay keeps the first record
      expect((await store.deletions.kept("db~x")).map((k) => `${k.kind}:${k.resourceId}:${k.expiresAt}`)).toEqual([
        "image:ami-1:null",
        "snapshot:snap-1:3000",
        "volume:vol-1:3000",
        "volume:vol-2:5000",
      ]);
      expect((await store.deletions.due(4_000)).map((k) => k.resourceId)).toEqual(["snap-1", "vol-1"]);
      t = 6_000;
      await store.deletions.markSweeping("vol-1");
      t = 7_000;
      await store.deletions.markSweeping("vol-1");
      await store.deletions.markGone("vol-1");
      t = 8_000;
      await store.deletions.markGone("vol-1");
      expect((await store.deletions.kept("db~x")).find((k) => k.resourceId === "vol-1")).toEqual({
        resourceId: "vol-1",
        instance: "db~x",
        kind: "volume",
        workflowId: "wf-del",
        keptAt: 1_000,
        expiresAt: 3_000,
        sweepStartedAt: 6_000,
        deletedAt: 7_000,
        adoptedBy: null,
        adoptedAt: null,
      });
      expect((await store.deletions.due(10_000)).map((k) => k.resourceId)).toEqual(["snap-1", "vol-2"]);
    });

    it("names every claim on a resource, and an adopted kept resource is no longer due until its adopter keeps it in turn", async () => {
      await seeded();
      await store.deletions.keep({ resourceId: "vol-9", instance: "old~x", kind: "volume", workflowId: "wf-del", expiresAt: 3_000 });
      // seeded() keeps vol-1 as the delete of db does while db is still deleting.
      expect(await store.deletions.claims("vol-1")).toEqual([
        { instance: "db", as: "volume /dev/sdf" },
        { instance: "db", as: "kept" },
      ]);
      expect(await store.deletions.claims("eni-1")).toEqual([{ instance: "db", as: "network interface" }]);
      expect((await store.deletions.claims("snap-1")).map((c) => c.as).sort()).toEqual(["data-snapshot", "latest snapshot of /dev/sdf"]);
      expect(await store.deletions.claims("ami-1")).toEqual([{ instance: "db", as: "root image" }]);
      expect(await store.deletions.claims("vol-9")).toEqual([{ instance: "old~x", as: "kept" }]);
      expect(await store.deletions.claims("vol-unknown")).toEqual([]);
      // A deleted instance's own rows are no claim; what its delete kept is.
      await store.instances.setState("db", "deleted");
      expect(await store.deletions.claims("vol-1")).toEqual([{ instance: "db", as: "kept" }]);

      t = 2_000;
      expect(await store.deletions.adopt("vol-9", "new-db")).toBe(true);
      expect(await store.deletions.adopt("vol-9", "other-db")).toBe(false);
      expect(await store.deletions.claims("vol-9")).toEqual([]);
      expect(await store.deletions.due(10_000)).toEqual([]);
      expect((await store.deletions.kept("old~x"))[0]).toMatchObject({ adoptedBy: "new-db", adoptedAt: 2_000, deletedAt: null });
      // The adopter's delete keeps it: the row becomes that delete's, with its own TTL.
      t = 4_000;
      await store.deletions.keep({ resourceId: "vol-9", instance: "new-db~y", kind: "volume", workflowId: "wf-del-2", expiresAt: 9_000 });
      await store.deletions.keep({ resourceId: "vol-9", instance: "new-db~z", kind: "volume", workflowId: "wf-del-3", expiresAt: 1 });
      expect((await store.deletions.kept("new-db~y"))[0]).toMatchObject({
        workflowId: "wf-del-2",
        keptAt: 4_000,
        expiresAt: 9_000,
        adoptedBy: null,
        adoptedAt: null,
      });
      expect((await store.deletions.due(10_000)).map((k) => k.resourceId)).toEqual(["vol-9"]);
    });
  });

  describe("scheduled task runs", () => {
    it("syncs the task keys (new ones get the baseline, known ones keep their record) and handles each due time once, newest only", async () => {
      await fresh();
      await store.taskRuns.sync("db", ["pause 0 20 * * *", "resume 0 8 * * 1-5"], 100);
      expect(await store.taskRuns.handled("db", "pause 0 20 * * *", 5_000, "started", "wf-1")).toBe(true);
      expect(await store.taskRuns.handled("db", "pause 0 20 * * *", 5_000, "started", "wf-2")).toBe(false);
      expect(await store.taskRuns.handled("db", "pause 0 20 * * *", 4_000, "missed", null)).toBe(false);
      expect(await store.taskRuns.handled("db", "nope", 4_000, "missed", null)).toBe(false);
      await store.taskRuns.sync("db", ["snapshot 0 * * * *", "pause 0 20 * * *"], 900);
      expect(await store.taskRuns.list("db")).toEqual([
        {
          instance: "db",
          taskKey: "pause 0 20 * * *",
          baselineAt: 100,
          lastDueAt: 5_000,
          lastOutcome: "started",
          lastWorkflowId: "wf-1",
          handledAt: 1_000,
        },
        {
          instance: "db",
          taskKey: "snapshot 0 * * * *",
          baselineAt: 900,
          lastDueAt: null,
          lastOutcome: null,
          lastWorkflowId: null,
          handledAt: null,
        },
      ]);
      await store.taskRuns.sync("db", [], 1_000);
      expect(await store.taskRuns.list("db")).toEqual([]);
    });
  });

  describe("stateful groups", () => {
    const groupSpec = parseGroupSpec({
      kind: "group",
      name: "kafka",
      size: 2,
      ipPool: ["10.0.0.5", "10.0.0.6"],
      template: { launch: { imageId: "ami-0123456789abcdef0", instanceTypes: ["m5.large"], subnetIds: ["subnet-0000000000000000a"] } },
    });
    const member = (ordinal: number, privateIp: string) => ({
      group: "kafka",
      ordinal,
      instance: `kafka-${ordinal}`,
      privateIp,
      subnetId: "subnet-0000000000000000a",
      availabilityZone: "us-east-1a",
    });

    it("stores a group's spec and state, stamps updates, lists by name in byte order and removes it", async () => {
      await fresh();
      await store.groups.insert("kafka", groupSpec, "creating");
      await store.groups.insert("Zoo", { ...groupSpec, name: "Zoo" }, "ready");
      expect(await store.groups.get("kafka")).toEqual({
        name: "kafka",
        spec: groupSpec,
        state: "creating",
        stateReason: null,
        createdAt: 1000,
        updatedAt: 1000,
      });
      t = 2_000;
      await store.groups.setState("kafka", "stopped", "group-update stopped at kafka-1");
      await store.groups.setSpec("kafka", { ...groupSpec, size: 1 });
      expect(await store.groups.get("kafka")).toMatchObject({
        state: "stopped",
        stateReason: "group-update stopped at kafka-1",
        createdAt: 1000,
        updatedAt: 2000,
        spec: { size: 1 },
      });
      expect((await store.groups.list()).map((g) => g.name)).toEqual(["Zoo", "kafka"]);
      await store.groups.remove("kafka");
      expect(await store.groups.get("kafka")).toBeNull();
    });

    it("keeps the first claim of an ordinal and one member per address and per instance until it is removed", async () => {
      await fresh();
      await store.groups.insert("kafka", groupSpec, "ready");
      await store.groups.addMember(member(0, "10.0.0.5"));
      await store.groups.addMember(member(0, "10.0.0.6"));
      expect((await store.groups.members("kafka")).map((m) => [m.ordinal, m.privateIp, m.status])).toEqual([[0, "10.0.0.5", "active"]]);
      const before = await store.counts();
      await expect(store.groups.addMember(member(1, "10.0.0.5"))).rejects.toThrow(/unique/i);
      await expect(store.groups.addMember({ ...member(1, "10.0.0.6"), instance: "kafka-0" })).rejects.toThrow(/unique/i);
      expect(await store.counts()).toEqual(before);
      await store.groups.addMember(member(1, "10.0.0.6"));
      expect(await store.groups.memberOf("kafka-1")).toMatchObject({ group: "kafka", ordinal: 1, subnetId: "subnet-0000000000000000a" });
      expect(await store.groups.memberOf("other")).toBeNull();
      await store.groups.setMemberStatus("kafka", 1, "removing");
      expect((await store.groups.memberOf("kafka-1"))?.status).toBe("removing");
      await store.groups.removeMember("kafka", 1);
      expect((await store.groups.members("kafka")).map((m) => m.instance)).toEqual(["kafka-0"]);
      await store.groups.addMember(member(2, "10.0.0.6"));
      expect((await store.groups.members("kafka")).map((m) => m.ordinal)).toEqual([0, 2]);
      expect((await store.counts()).stateful_group_members).toBe(2);
    });
  });

  describe("transactions", () => {
    it("commits every write of a transaction and returns its value", async () => {
      await fresh();
      const out = await store.tx(async (x) => {
        await x.instances.insert("db", spec("db"), "creating");
        await x.workflows.insert({ id: "wf", kind: "create", instance: "db", input: {}, trigger: null });
        return (await x.instances.get("db"))?.state;
      });
      expect(out).toBe("creating");
      expect((await store.counts()).workflows).toBe(1);
    });

    it("keeps nothing of a transaction that throws, whatever it wrote before the throw", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      const before = await store.counts();
      await expect(
        store.tx(async (x) => {
          await x.instances.setState("db", "replacing");
          await x.workflows.insert({ id: "wf", kind: "replace", instance: "db", input: {}, trigger: null });
          await x.events.add("db", "replace-started", "…");
          await x.agentReports.record("i-1", "notice", "n-1", {});
          throw new Error("the admission check failed");
        }),
      ).rejects.toThrow("the admission check failed");
      expect(await store.counts()).toEqual(before);
      expect((await store.instances.get("db"))?.state).toBe("running");
      // A failing statement inside a transaction rolls the whole of it back too.
      await expect(
        store.tx(async (x) => {
          await x.events.add("db", "k", "kept only with the rest");
          await x.instances.insert("db", spec("db"), "creating");
        }),
      ).rejects.toThrow();
      expect(await store.counts()).toEqual(before);
    });

    it("lets no other call interleave with an open transaction: a concurrent write waits, a read never sees half of it", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      const hold = deferred();
      const inside = deferred();
      const tx = store.tx(async (x) => {
        await x.instances.setState("db", "replacing");
        await x.events.add("db", "first", "written inside the transaction");
        inside.resolve();
        await hold.promise;
        await x.workflows.insert({ id: "wf", kind: "replace", instance: "db", input: {}, trigger: null });
      });
      await inside.promise;
      const write = store.events.add("db", "second", "written outside");
      const read = store.instances
        .get("db")
        .then(async (i) => ({ state: i?.state, workflows: (await store.workflows.listFor("db")).length }));
      expect(await settledSoon(write)).toBe(false);
      hold.resolve();
      await tx;
      await write;
      // Either before the transaction (nothing of it) or after it (all of it), never in between.
      expect([JSON.stringify({ state: "running", workflows: 0 }), JSON.stringify({ state: "replacing", workflows: 1 })]).toContain(
        JSON.stringify(await read),
      );
      expect((await store.events.list("db")).map((e) => e.kind)).toEqual(["first", "second"]);
    });

    it("runs transactions one after another when several are started at once", async () => {
      await fresh();
      await store.instances.insert("db", spec("db"), "running");
      await store.instances.setCurrentGeneration("db", 0);
      // Read-then-write increments: lost updates would show if two ran interleaved.
      await Promise.all(
        Array.from({ length: 8 }, () =>
          store.tx(async (x) => {
            const g = (await x.instances.get("db"))!.generation;
            await new Promise((r) => setTimeout(r, 2));
            await x.instances.setCurrentGeneration("db", g + 1);
          }),
        ),
      );
      expect((await store.instances.get("db"))?.generation).toBe(8);
    });
  });

  describe("the store as a whole", () => {
    it("counts rows per table", async () => {
      await fresh();
      const empty = await store.counts();
      expect(Object.keys(empty).sort()).toEqual(
        [
          "agent_reports",
          "artifacts",
          "events",
          "generations",
          "instances",
          "inventories",
          "kept_resources",
          "network",
          "notice_arrivals",
          "queue_events",
          "root_lineage",
          "stateful_group_members",
          "stateful_groups",
          "steps",
          "task_runs",
          "volumes",
          "workflows",
        ].sort(),
      );
      expect(Object.values(empty).every((n) => n === 0)).toBe(true);
      await store.instances.insert("db", spec("db"), "running");
      await store.events.add("db", "a", "b");
      await store.events.add("db", "a", "c");
      expect(await store.counts()).toMatchObject({ instances: 1, events: 2, workflows: 0 });
    });

    it("keeps everything across a close and a reopen (a restarted coordinator), migrating nothing twice", async () => {
      await fresh();
      await store.instances.insert("db", spec("db", { volumes: [{ device: "/dev/sdf" }] }), "running");
      await store.workflows.insert({ id: "wf", kind: "create", instance: "db", input: { a: 1 }, trigger: null });
      await store.steps.start("wf", 1, "launch");
      await store.steps.complete("wf", 1, { instanceId: "i-1" });
      const before = await store.counts();
      const inst = await store.instances.get("db");
      await store.close();
      opened.splice(opened.indexOf(store), 1);
      const again = await open();
      expect(await again.counts()).toEqual(before);
      expect(await again.instances.get("db")).toEqual(inst);
      expect((await again.steps.get("wf", 1))?.result).toEqual({ instanceId: "i-1" });
      const third = await open(); // a second store on the same database at the same time
      expect((await third.workflows.get("wf"))?.input).toEqual({ a: 1 });
    });
  });
}
