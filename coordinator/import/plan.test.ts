import { describe, expect, it } from "vitest";
import { ValidationError } from "../../shared/errors.js";
import type { InstanceDetails, VolumeInfo } from "../cloud/gateway.js";
import { type ImportFacts, ImportRefused, mergeOverrides, planImport } from "./plan.js";

function instance(o: Partial<InstanceDetails> = {}): InstanceDetails {
  return {
    instanceId: "i-0123456789abcdef0",
    state: "running",
    stateReason: null,
    instanceType: "m6i.large",
    availabilityZone: "us-east-1a",
    subnetId: "subnet-0123456789abcdef0",
    privateIp: "10.0.1.25",
    lifecycle: "on-demand",
    imageId: "ami-0123456789abcdef0",
    rootDeviceName: "/dev/xvda",
    volumes: [],
    enis: [],
    tags: { Name: "orders", team: "db", "aws:cloudformation:stack-name": "x" },
    vpcId: "vpc-0123456789abcdef0",
    rootDeviceType: "ebs",
    platform: null,
    keyName: "ops",
    iamInstanceProfile: "orders-role",
    securityGroupIds: ["sg-0123456789abcdef0"],
    architecture: "x86_64",
    spotInstanceRequestId: null,
    blockDevices: [
      { deviceName: "/dev/xvda", volumeId: "vol-000000000000000a1", deleteOnTermination: true },
      { deviceName: "/dev/sdf", volumeId: "vol-000000000000000b2", deleteOnTermination: false },
    ],
    networkInterfaces: [
      {
        eniId: "eni-0123456789abcdef0",
        deviceIndex: 0,
        attachmentId: "eni-attach-0123456789abcdef0",
        deleteOnTermination: true,
        privateIp: "10.0.1.25",
        subnetId: "subnet-0123456789abcdef0",
        interfaceType: "interface",
        secondaryPrivateIps: 0,
      },
    ],
    ...o,
  };
}

const volume = (id: string, o: Partial<VolumeInfo> = {}): VolumeInfo => ({
  volumeId: id,
  state: "in-use",
  availabilityZone: "us-east-1a",
  sizeGiB: 100,
  volumeType: "gp3",
  iops: 3000,
  throughput: 125,
  multiAttachEnabled: false,
  snapshotId: null,
  attachments: [],
  tags: {},
  ...o,
});

function facts(o: Partial<ImportFacts> = {}, inst: Partial<InstanceDetails> = {}): ImportFacts {
  return {
    instance: instance(inst),
    image: {
      imageId: "ami-0123456789abcdef0",
      state: "available",
      name: "base",
      rootDeviceName: "/dev/xvda",
      architecture: "x86_64",
      rootSnapshotId: null,
      platform: null,
      instanceStoreDevices: [],
      tags: {},
    },
    volumes: [volume("vol-000000000000000a1", { sizeGiB: 8 }), volume("vol-000000000000000b2")],
    userData: Buffer.from("#!/bin/sh\necho hello > /tmp/hello\n"),
    managedBy: null,
    region: "us-east-1",
    ...o,
  };
}

const mounts = { persistence: { volumes: [{ device: "/dev/sdf", mountPoint: "/var/lib/postgresql" }] } };

function refusal(f: () => unknown): { code: string; message: string } {
  try {
    f();
  } catch (err) {
    if (err instanceof ImportRefused) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("planImport", () => {
  it("keeps the volumes' encryption in the spec when they all share one key, and leaves it off for mixed volumes", () => {
    const key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const enc = { encrypted: true, kmsKeyId: key };
    const both = facts({ volumes: [volume("vol-000000000000000a1", { sizeGiB: 8, ...enc }), volume("vol-000000000000000b2", enc)] });
    expect(planImport("orders-db", both, mounts).spec.persistence.encryption).toEqual(enc);
    const mixed = facts({ volumes: [volume("vol-000000000000000a1", { sizeGiB: 8, ...enc }), volume("vol-000000000000000b2")] });
    expect(planImport("orders-db", mixed, mounts).spec.persistence.encryption).toEqual({ encrypted: false });
  });
  it("builds the spec from what EC2 says: root persisted, data volume adopted by id, own ENI kept, spot", () => {
    const { spec, input, steps } = planImport("orders-db", facts(), mounts);
    expect(spec.launch).toMatchObject({
      imageId: "ami-0123456789abcdef0",
      instanceTypes: ["m6i.large"],
      subnetIds: ["subnet-0123456789abcdef0"],
      securityGroupIds: ["sg-0123456789abcdef0"],
      iamInstanceProfile: "orders-role",
      keyName: "ops",
      userData: "#!/bin/sh\necho hello > /tmp/hello\n",
      tags: { Name: "orders", team: "db" },
      market: { type: "spot", fallbackToOnDemand: true },
    });
    expect(spec.persistence).toMatchObject({ root: true, dataMethod: "reattach", network: { privateIp: "same-eni", attach: "primary" } });
    expect(spec.persistence.volumes).toEqual([
      {
        device: "/dev/sdf",
        volumeId: "vol-000000000000000b2",
        sizeGiB: 100,
        type: "gp3",
        iops: 3000,
        throughput: 125,
        mountPoint: "/var/lib/postgresql",
        fsType: "ext4",
      },
    ]);
    expect(input).toMatchObject({
      instanceId: "i-0123456789abcdef0",
      wasRunning: true,
      stopFirst: true,
      rootDevice: "/dev/xvda",
      rootVolumeId: "vol-000000000000000a1",
      eni: { eniId: "eni-0123456789abcdef0", attachmentId: "eni-attach-0123456789abcdef0", deleteOnTermination: true },
    });
    // The original flags are kept for a rollback.
    expect(input.blockDevices.map((b) => b.deleteOnTermination)).toEqual([true, false]);
    expect(steps.join("\n")).toMatch(/stop i-0123456789abcdef0/);
    expect(steps.join("\n")).toMatch(/mounts it at \/var\/lib\/postgresql/);
  });

  it("a one-time spot instance is captured after termination instead of stopped", () => {
    const { input, steps } = planImport("orders-db", facts({}, { lifecycle: "spot" }), mounts);
    expect(input.stopFirst).toBe(false);
    expect(steps.join("\n")).toMatch(/cannot be stopped/);
  });

  it.each([
    ["wrong-state", facts({}, { state: "stopping" }), /is stopping/],
    ["already-managed", facts({ managedBy: "billing-db" }), /already managed by spotkeep \(stateful instance billing-db\)/],
    ["not-ebs-backed", facts({}, { rootDeviceType: "instance-store" }), /instance-store-backed/],
    ["not-in-vpc", facts({}, { vpcId: null }), /not in a VPC/],
    ["windows", facts({}, { platform: "windows" }), /Windows/],
    ["instance-store", facts({ image: { ...facts().image!, instanceStoreDevices: ["/dev/sdb"] } }), /instance store volumes \(\/dev\/sdb/],
    [
      "eni-cannot-be-kept",
      facts(
        {},
        {
          networkInterfaces: [
            ...instance().networkInterfaces,
            { ...instance().networkInterfaces[0]!, eniId: "eni-0000000000000000f", deviceIndex: 1 },
          ],
        },
      ),
      /2 network interfaces \(eni-0000000000000000f at device index 1\)/,
    ],
    [
      "eni-cannot-be-kept",
      facts({}, { networkInterfaces: [{ ...instance().networkInterfaces[0]!, interfaceType: "efa" }] }),
      /of type efa/,
    ],
    [
      "volume-cannot-be-kept",
      facts({ volumes: [volume("vol-000000000000000a1"), volume("vol-000000000000000b2", { multiAttachEnabled: true })] }),
      /Multi-Attach/,
    ],
    [
      "volume-cannot-be-kept",
      facts(
        {},
        {
          blockDevices: [
            instance().blockDevices[0]!,
            { deviceName: "/dev/nvme1n1", volumeId: "vol-000000000000000b2", deleteOnTermination: false },
          ],
        },
      ),
      /attached as \/dev\/nvme1n1/,
    ],
    ["user-data", facts({ userData: Buffer.from([0x1f, 0x8b, 8, 0]) }), /gzip-compressed/],
    ["user-data", facts({ userData: Buffer.from([0xff, 0xfe, 0x41]) }), /not UTF-8 text/],
    ["user-data", facts({ userData: Buffer.alloc(12_001, "a") }), /12001 characters/],
  ])("refuses %s with the reason", (code, f, message) => {
    const r = refusal(() => planImport("orders-db", f, mounts));
    expect(r.code).toBe(code);
    expect(r.message).toMatch(message);
  });

  it("a data volume without a mount point is adopted to be attached only (the agent reports it unmounted)", () => {
    const { spec, steps } = planImport("orders-db", facts(), undefined);
    expect(spec.persistence.volumes[0]).toMatchObject({ device: "/dev/sdf", volumeId: "vol-000000000000000b2" });
    expect(spec.persistence.volumes[0]!.mountPoint).toBeUndefined();
    expect(steps.join("\n")).toMatch(/attach vol-000000000000000b2 at \/dev\/sdf; no mountPoint given/);
  });

  it("an instance without data volumes needs no overrides", () => {
    const f = facts({}, { blockDevices: [instance().blockDevices[0]!] });
    expect(planImport("dev-box", f, undefined).spec.persistence.volumes).toEqual([]);
  });
});

describe("overrides", () => {
  const discovered = () => ({
    name: "orders-db",
    launch: { instanceTypes: ["m6i.large"], tags: { a: "1" } },
    persistence: { volumes: [{ device: "/dev/sdf", volumeId: "vol-000000000000000b2", sizeGiB: 100 }] },
  });

  it("merge key by key, replace lists, and match volumes by device (/dev/xvdf is /dev/sdf)", () => {
    const m = mergeOverrides(
      discovered(),
      {
        launch: { instanceTypes: ["m6i.large", "m5.large"], tags: { b: "2" } },
        persistence: { volumes: [{ device: "/dev/xvdf", mountPoint: "/data", fsType: "xfs" }] },
        hooks: { preStop: "pg_ctl stop" },
      },
      "orders-db",
    );
    expect(m).toEqual({
      name: "orders-db",
      launch: { instanceTypes: ["m6i.large", "m5.large"], tags: { a: "1", b: "2" } },
      persistence: {
        volumes: [{ device: "/dev/sdf", volumeId: "vol-000000000000000b2", sizeGiB: 100, mountPoint: "/data", fsType: "xfs" }],
      },
      hooks: { preStop: "pg_ctl stop" },
    });
  });

  it.each([
    [{ name: "other" }, /overrides\.name: is "other" but the import is named orders-db/],
    [{ launch: { imageId: "ami-0000000000000000f" } }, /overrides\.launch\.imageId: comes from the instance/],
    [{ launch: { subnetIds: ["subnet-0000000000000000f"] } }, /overrides\.launch\.subnetIds/],
    [{ persistence: { root: false } }, /overrides\.persistence\.root/],
    [{ persistence: { network: { privateIp: "none" } } }, /overrides\.persistence\.network/],
    [{ region: "eu-west-1" }, /overrides\.region/],
    [
      { persistence: { volumes: [{ device: "/dev/sdg", mountPoint: "/x" }] } },
      /\/dev\/sdg is not a data volume of the instance \(it has: \/dev\/sdf\)/,
    ],
    [{ persistence: { volumes: [{ device: "/dev/sdf", sizeGiB: 200 }] } }, /volumes\[0\]\.sizeGiB: describes the existing volume/],
    [{ persistence: { volumes: [{ device: "/dev/sdf", volumeId: "vol-0000000000000000f" }] } }, /volumes\[0\]\.volumeId/],
    [{ persistence: { volumes: [{ device: "/dev/sdf", color: "red" }] } }, /volumes\[0\]\.color: is not a volume field/],
    [{ persistence: { volumes: [{ mountPoint: "/x" }] } }, /volumes\[0\]: must be a mapping with the device/],
    [{ persistence: { volumes: "nope" } }, /overrides\.persistence\.volumes: must be a list/],
    [["a"], /overrides: must be a mapping/],
  ])("refuses %j by field", (over, message) => {
    expect(() => mergeOverrides(discovered(), over, "orders-db")).toThrow(ValidationError);
    expect(() => mergeOverrides(discovered(), over, "orders-db")).toThrow(message);
  });

  it("the merged spec is validated like any spec (a bad value in the overrides is named)", () => {
    expect(() => planImport("orders-db", facts(), { ...mounts, launch: { instanceTypes: ["NOT A TYPE"] } })).toThrow(
      /launch\.instanceTypes\[0\]: is not an instance type/,
    );
    expect(() => planImport("orders-db", facts(), { ...mounts, launch: { colour: "blue" } })).toThrow(/colour/);
  });

  it("ignores prototype keys", () => {
    const over = JSON.parse('{"__proto__": {"polluted": true}, "launch": {"tags": {"x": "y"}}}');
    const m = mergeOverrides(discovered(), over, "orders-db");
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((m.launch as { tags: Record<string, string> }).tags).toEqual({ a: "1", x: "y" });
  });
});
