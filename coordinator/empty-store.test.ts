import { beforeEach, describe, expect, it } from "vitest";
import { FakeClock } from "../shared/clock.js";
import type { EniInfo, InstanceDetails, TaggedResources, VolumeInfo } from "./cloud/gateway.js";
import { SqliteStore } from "./db/sqlite/index.js";
import { EmptyStoreRefused, type EmptyStoreGateway, guardEmptyStore } from "./empty-store.js";

const TAGS = { "spotkeep:managed": "true", "spotkeep:instance": "orders-db", "spotkeep:generation": "3" };

function details(o: Partial<InstanceDetails> = {}): InstanceDetails {
  return {
    instanceId: "i-0123456789abcdef0",
    state: "running",
    stateReason: null,
    instanceType: "m6i.large",
    availabilityZone: "us-east-1a",
    subnetId: "subnet-0123456789abcdef0",
    privateIp: "10.0.1.25",
    lifecycle: "spot",
    imageId: "ami-0123456789abcdef0",
    rootDeviceName: "/dev/xvda",
    volumes: [],
    enis: [],
    tags: { ...TAGS, team: "db" },
    vpcId: "vpc-0123456789abcdef0",
    rootDeviceType: "ebs",
    platform: null,
    keyName: null,
    iamInstanceProfile: null,
    securityGroupIds: ["sg-0123456789abcdef0"],
    architecture: "x86_64",
    spotInstanceRequestId: "sir-1",
    blockDevices: [
      { deviceName: "/dev/xvda", volumeId: "vol-000000000000000a1", deleteOnTermination: false },
      { deviceName: "/dev/sdf", volumeId: "vol-000000000000000b2", deleteOnTermination: false },
    ],
    networkInterfaces: [
      {
        eniId: "eni-0123456789abcdef0",
        deviceIndex: 0,
        attachmentId: "eni-attach-0123456789abcdef0",
        deleteOnTermination: false,
        privateIp: "10.0.1.25",
        subnetId: "subnet-0123456789abcdef0",
        interfaceType: "interface",
        secondaryPrivateIps: 0,
      },
    ],
    ...o,
  };
}

const volume = (id: string, tags: Record<string, string>): VolumeInfo => ({
  volumeId: id,
  state: "in-use",
  availabilityZone: "us-east-1a",
  sizeGiB: 10,
  volumeType: "gp3",
  iops: 3000,
  throughput: 125,
  multiAttachEnabled: false,
  snapshotId: null,
  attachments: [],
  tags,
});

let clock: FakeClock;
let store: SqliteStore;
let found: TaggedResources;
let lines: string[];

const ec2: EmptyStoreGateway = {
  findTagged: async () => found,
  describeInstanceDetails: async (id) => (id === "i-0123456789abcdef0" ? details() : null),
  describeImage: async (id) => ({
    imageId: id,
    state: "available",
    name: "orders-db-gen-2",
    rootDeviceName: "/dev/xvda",
    architecture: "x86_64",
    rootSnapshotId: "snap-1",
    platform: null,
    instanceStoreDevices: [],
    tags: TAGS,
  }),
  describeVolume: async (id) =>
    volume(id, id.endsWith("b2") ? { ...TAGS, "spotkeep:device": "/dev/sdf" } : { ...TAGS, "spotkeep:root": "true" }),
};

const guard = (o: { adoptFromEc2?: boolean; acceptEmptyStore?: boolean } = {}) =>
  guardEmptyStore(
    { store, ec2, region: "us-east-1", log: (l) => lines.push(l) },
    { adoptFromEc2: o.adoptFromEc2 ?? false, acceptEmptyStore: o.acceptEmptyStore ?? false, restoreHint: "restore the latest backup" },
  );

beforeEach(() => {
  clock = new FakeClock();
  store = SqliteStore.open(":memory:", () => clock.now());
  lines = [];
  const d = details();
  found = {
    instances: [d],
    volumes: [
      volume("vol-000000000000000a1", TAGS),
      volume("vol-000000000000000b2", TAGS),
      volume("vol-000000000000000c3", { ...TAGS, "spotkeep:instance": "paused-db" }),
    ],
    networkInterfaces: [{ eniId: "eni-0123456789abcdef0", tags: TAGS } as unknown as EniInfo],
    snapshots: [],
    images: [],
  };
});

describe("guardEmptyStore", () => {
  it("refuses to start an empty store beside spotkeep-tagged resources, naming them and the ways forward (regression: it started with 0 instances, all orphaned)", async () => {
    const err = await guard().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EmptyStoreRefused);
    const m = (err as Error).message;
    expect(m).toMatch(/the store is empty, but EC2 in us-east-1 holds 5 resource\(s\) tagged by spotkeep/);
    expect(m).toMatch(/instances i-0123456789abcdef0 \(orders-db\)/);
    expect(m).toMatch(
      /volumes vol-000000000000000a1 \(orders-db\), vol-000000000000000b2 \(orders-db\), vol-000000000000000c3 \(paused-db\)/,
    );
    expect(m).toMatch(/network interfaces eni-0123456789abcdef0 \(orders-db\)/);
    expect(m).toMatch(/restore the latest backup; or start once with --adopt-from-ec2 .*; or start once with --accept-empty-store/);
    expect((await store.counts()).instances).toBe(0);
  });

  it("starts empty when EC2 holds nothing of spotkeep's, or when the store is not empty", async () => {
    found = { instances: [], volumes: [], networkInterfaces: [], snapshots: [], images: [] };
    expect(await guard()).toEqual([]);
    found = { ...found, instances: [details()] };
    await store.instances.insert("other", {} as never, "running");
    expect(await guard()).toEqual([]);
    await expect(guard({ adoptFromEc2: true })).rejects.toThrow(/--adopt-from-ec2: the store is not empty/);
  });

  // Regression: a coordinator killed right after a group's first step was refused at restart.
  it("a store holding only a group recorded before its first member is not empty", async () => {
    await store.groups.insert("kafka", {} as never, "creating");
    expect(await guard()).toEqual([]);
  });

  it("with --accept-empty-store starts empty and names what stays unmanaged", async () => {
    const out = await guard({ acceptEmptyStore: true });
    expect(out[0]).toMatch(/--accept-empty-store: starting on an empty store although EC2 in us-east-1 holds 5 resource/);
    expect(out.join("\n")).toMatch(/vol-000000000000000c3 \(paused-db\)/);
    expect(lines).toEqual(out);
    expect((await store.counts()).instances).toBe(0);
  });

  it("with --adopt-from-ec2 rebuilds the instance with its live generation, volumes, ENI and image, and names what it left", async () => {
    const out = await guard({ adoptFromEc2: true });
    expect(out[0]).toBe("rebuilt stateful instance orders-db: generation 3 is i-0123456789abcdef0");
    expect(out[1]).toMatch(/left alone, not rebuilt .*volumes vol-000000000000000c3 \(paused-db\)/);
    const inst = (await store.instances.get("orders-db"))!;
    expect(inst.state).toBe("running");
    expect(inst.generation).toBe(3);
    expect(inst.spec.launch.instanceTypes).toEqual(["m6i.large"]);
    expect(inst.spec.launch.userData ?? "").toBe("");
    const g = (await store.generations.byEc2InstanceId("i-0123456789abcdef0"))!;
    expect([g.instance, g.generation, g.status]).toEqual(["orders-db", 3, "live"]);
    expect((await store.volumes.list("orders-db")).map((v) => [v.device, v.volumeId])).toEqual([["/dev/sdf", "vol-000000000000000b2"]]);
    expect((await store.network.get("orders-db"))?.eniId).toBe("eni-0123456789abcdef0");
    expect((await store.root.get("orders-db"))?.imageId).toBe("ami-0123456789abcdef0");
    const [event] = await store.events.list("orders-db");
    expect(event?.kind).toBe("adopted-from-ec2");
    expect(event?.message).toMatch(/Not rebuilt .*mount points, hooks, health checks, schedules/);
    // Ownership follows: the rebuilt records claim the volume and the ENI.
    expect(await store.deletions.claims("vol-000000000000000b2")).toEqual([{ instance: "orders-db", as: "volume /dev/sdf" }]);
  });
});
