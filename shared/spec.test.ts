import { describe, expect, it } from "vitest";
import YAML from "yaml";
import { encryptionOf, inWeeklyWindow, parseSpec } from "./spec.js";
import { ValidationError } from "./errors.js";

const full = `
name: orders-db
region: us-east-1
launch:
  imageId: ami-0abc0123456789def
  instanceTypes: [m6i.large, m5.large, m6a.large]
  subnetIds: [subnet-0a0000000000000a1, subnet-0b0000000000000b1]
  securityGroupIds: [sg-01234567890abcdef]
  iamInstanceProfile: spotkeep-agent
  userData: "echo hi"
  tags: {team: orders}
  market: {type: spot, fallbackToOnDemand: true, revertToSpot: true}
persistence:
  root: true
  volumes:
    - {device: /dev/sdf, sizeGiB: 100, type: gp3, mountPoint: /var/lib/postgresql, fsType: ext4}
  dataMethod: reattach
  network: {privateIp: same-eni}
snapshots: {intervalMinutes: 5, keep: 3, consistency: freeze}
hooks: {preStop: "systemctl stop postgresql", postRestore: "systemctl start postgresql", timeoutSeconds: 60}
onRebalance: snapshot
`;

const minimal = {
  name: "dev-box",
  launch: { imageId: "ami-0abc0123456789def", instanceTypes: ["t3.medium"], subnetIds: ["subnet-0a0000000000000a1"] },
};

function errorOf(input: unknown): string {
  try {
    parseSpec(input);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as Error).message;
  }
  throw new Error("spec was accepted");
}

function withChange(mutate: (s: any) => void): unknown {
  const s = YAML.parse(full);
  mutate(s);
  return s;
}

describe("spec parsing", () => {
  it("parses the full design example from YAML", () => {
    const spec = parseSpec(full);
    expect(spec.name).toBe("orders-db");
    expect(spec.persistence.volumes[0]).toEqual({
      device: "/dev/sdf",
      sizeGiB: 100,
      type: "gp3",
      mountPoint: "/var/lib/postgresql",
      fsType: "ext4",
    });
    expect(spec.persistence.network).toEqual({ privateIp: "same-eni", ipPool: [], attach: "primary" });
    expect(spec.hooks.timeoutSeconds).toBe(60);
  });

  it("parses JSON and fills defaults", () => {
    const spec = parseSpec(JSON.stringify(minimal));
    expect(spec.region).toBe("us-east-1");
    expect(spec.launch.market).toEqual({ type: "spot", fallbackToOnDemand: true, revertToSpot: true });
    expect(spec.launch.securityGroupIds).toEqual([]);
    expect(spec.persistence).toEqual({
      root: false,
      volumes: [],
      dataMethod: "reattach",
      network: { privateIp: "same-eni", ipPool: [], attach: "primary" },
      encryption: { encrypted: false },
    });
    expect(spec.launch.rootVolume).toBeUndefined();
    expect(spec.snapshots).toEqual({ intervalMinutes: 0, keep: 3, consistency: "freeze", root: false, copyToRegions: [] });
    expect(spec.onRebalance).toBe("snapshot");
  });

  it("fills volume defaults", () => {
    const spec = parseSpec({ ...minimal, persistence: { volumes: [{ device: "/dev/xvdg", sizeGiB: 8, mountPoint: "/data" }] } });
    expect(spec.persistence.volumes[0]).toMatchObject({ type: "gp3", fsType: "ext4" });
  });

  it("allows reattach with subnets in several AZs (the volumes pin the AZ)", () => {
    expect(() => parseSpec(full)).not.toThrow();
  });

  it("accepts a pool with addresses", () => {
    const spec = parseSpec(withChange((s) => (s.persistence.network = { privateIp: "pool", ipPool: ["10.0.1.10", "10.0.1.11"] })));
    expect(spec.persistence.network.ipPool).toHaveLength(2);
  });
});

describe("spec rejections name the path and the reason", () => {
  const cases: Array<[string, unknown, string | RegExp]> = [
    [
      "bad device name",
      withChange((s) => (s.persistence.volumes[0].device = "/dev/foo!")),
      'persistence.volumes[0].device: "/dev/foo!" is not a valid device name',
    ],
    [
      "pool without addresses",
      withChange((s) => (s.persistence.network = { privateIp: "pool" })),
      "persistence.network.ipPool: must list at least one address when privateIp is pool",
    ],
    ["missing launch", { name: "x" }, "launch: is required"],
    ["bad name", { ...minimal, name: "Orders_DB" }, /^name: "Orders_DB" must be 1-63 lowercase/],
    ["negative size", withChange((s) => (s.persistence.volumes[0].sizeGiB = -5)), "persistence.volumes[0].sizeGiB: must be positive"],
    [
      "fractional size",
      withChange((s) => (s.persistence.volumes[0].sizeGiB = 1.5)),
      "persistence.volumes[0].sizeGiB: must be a whole number of GiB",
    ],
    [
      "size over the type's range",
      withChange((s) => (s.persistence.volumes[0] = { ...s.persistence.volumes[0], type: "st1", sizeGiB: 10 })),
      "persistence.volumes[0].sizeGiB: 10 is outside 125..16384 GiB for st1",
    ],
    [
      "duplicate device (sd/xvd alias)",
      withChange((s) => s.persistence.volumes.push({ device: "/dev/xvdf", sizeGiB: 1, mountPoint: "/b" })),
      'persistence.volumes[1].device: "/dev/xvdf" is already used by persistence.volumes[0]',
    ],
    [
      "duplicate mount point",
      withChange((s) => s.persistence.volumes.push({ device: "/dev/sdg", sizeGiB: 1, mountPoint: "/var/lib/postgresql" })),
      'persistence.volumes[1].mountPoint: "/var/lib/postgresql" is already used by persistence.volumes[0]',
    ],
    [
      "root device as data volume",
      withChange((s) => (s.persistence.volumes[0].device = "/dev/sda1")),
      /persistence\.volumes\[0\]\.device: "\/dev\/sda1" is the root device/,
    ],
    [
      "relative mount point",
      withChange((s) => (s.persistence.volumes[0].mountPoint = "data")),
      "persistence.volumes[0].mountPoint: must be an absolute path",
    ],
    [
      "mount point /",
      withChange((s) => (s.persistence.volumes[0].mountPoint = "/")),
      /persistence\.volumes\[0\]\.mountPoint: cannot be \//,
    ],
    [
      "no mount point on a volume spotkeep creates",
      withChange((s) => delete s.persistence.volumes[0].mountPoint),
      "persistence.volumes[0].mountPoint: is required (only a volume adopted by volumeId may leave it out: it is then attached but not mounted)",
    ],
    ["unknown dataMethod", withChange((s) => (s.persistence.dataMethod = "copy")), /^persistence\.dataMethod: /],
    ["unknown field", withChange((s) => (s.persistence.volumes[0].sise = 3)), 'persistence.volumes[0]: unknown field "sise"'],
    ["empty instance types", withChange((s) => (s.launch.instanceTypes = [])), "launch.instanceTypes: needs at least one instance type"],
    ["bad subnet id", withChange((s) => (s.launch.subnetIds = ["subnet-a"])), "launch.subnetIds[0]: is not a subnet id (subnet-…)"],
    ["bad AMI id", withChange((s) => (s.launch.imageId = "ubuntu")), "launch.imageId: is not an AMI id (ami-…)"],
    [
      "bad pool address",
      withChange((s) => (s.persistence.network = { privateIp: "pool", ipPool: ["10.0.1.300"] })),
      "persistence.network.ipPool[0]: is not an IPv4 address",
    ],
    [
      "iops on gp2",
      withChange((s) => (s.persistence.volumes[0] = { ...s.persistence.volumes[0], type: "gp2", iops: 3000 })),
      "persistence.volumes[0].iops: is only valid for gp3, io1 and io2 volumes (this one is gp2)",
    ],
    ["reserved tag prefix", withChange((s) => (s.launch.tags = { "aws:x": "1" })), "launch.tags.aws:x: the aws: prefix is reserved by AWS"],
    [
      "snapshot interval too short",
      withChange((s) => (s.snapshots.intervalMinutes = 2)),
      "snapshots.intervalMinutes: must be 0 (off) or at least 5",
    ],
    ["wrong type for root", withChange((s) => (s.persistence.root = "yes")), /^persistence\.root: expected boolean/],
    ["not a mapping", "- a\n- b\n", "spec: must be a mapping with name, launch and persistence"],
    ["invalid YAML", "name: [unclosed", /^spec: is not valid JSON or YAML/],
  ];
  for (const [what, input, expected] of cases) {
    it(`rejects ${what}`, () => {
      const msg = errorOf(input);
      if (typeof expected === "string") expect(msg).toContain(expected);
      else expect(msg).toMatch(expected);
    });
  }

  it("normalises mount points and refuses ones that are not plain absolute paths, naming the field", () => {
    const withMount = (mountPoint: string) =>
      parseSpec({ ...minimal, persistence: { volumes: [{ device: "/dev/sdf", sizeGiB: 1, mountPoint }] } });
    expect(withMount("/var/lib/postgresql/").persistence.volumes[0]?.mountPoint).toBe("/var/lib/postgresql");
    for (const [bad, why] of [
      ["/data/..", /has a \. or \.\. segment/],
      ["/data/../etc", /has a \. or \.\. segment/],
      ["/./data", /has a \. or \.\. segment/],
      ["//data", /has an empty segment/],
      ["/data//wal", /has an empty segment/],
      ["//", /has an empty segment|cannot be \//],
      ["/proc/x", /inside \/proc/],
      ["/sys", /inside \/sys/],
      ["/dev/shm/db", /inside \/dev/],
      ["/data\nx", /control characters/],
      ["relative/path", /must be an absolute path/],
    ] as const) {
      expect(() => withMount(bad), bad).toThrow(/persistence\.volumes\[0\]\.mountPoint: /);
      expect(() => withMount(bad), bad).toThrow(why);
    }
  });

  it("reads a weekly UTC revert window, also one that wraps past Saturday, and refuses a malformed one naming the field", () => {
    const mon0300 = Date.UTC(2026, 10, 23, 3, 0); // a Monday
    expect(inWeeklyWindow("Mon:02:00-Mon:04:00", mon0300)).toBe(true);
    expect(inWeeklyWindow("Mon:02:00-Mon:04:00", mon0300 + 3_600_000)).toBe(false);
    expect(inWeeklyWindow("Sat:22:00-Sun:02:00", Date.UTC(2026, 10, 22, 1, 0))).toBe(true); // Sunday 01:00
    expect(inWeeklyWindow("Sat:22:00-Sun:02:00", mon0300)).toBe(false);
    const withWindow = (revertWindow: string) => parseSpec({ ...minimal, launch: { ...minimal.launch, market: { revertWindow } } });
    expect(withWindow("Tue:01:30-Tue:03:00").launch.market.revertWindow).toBe("Tue:01:30-Tue:03:00");
    expect(() => withWindow("Monday 2am")).toThrow(/launch\.market\.revertWindow: must be a weekly UTC window/);
    expect(() => withWindow("Mon:02:00-Mon:02:00")).toThrow(/launch\.market\.revertWindow/);
  });

  it("reads scheduled tasks and refuses an unknown action, a bad or impossible cron and a repeated task, naming the field", () => {
    const withSchedule = (schedule: unknown) => parseSpec({ ...minimal, schedule });
    expect(parseSpec(minimal).schedule).toEqual([]);
    expect(
      withSchedule([
        { action: "pause", cron: "0 20 * * 1-5" },
        { action: "resume", cron: "0 7 * * MON-FRI" },
        { action: "snapshot", cron: "@daily" },
      ]).schedule.map((t) => t.action),
    ).toEqual(["pause", "resume", "snapshot"]);
    expect(errorOf({ ...minimal, schedule: [{ action: "stop", cron: "0 20 * * *" }] })).toBe(
      "schedule[0].action: must be one of pause, resume, recycle, snapshot",
    );
    expect(errorOf({ ...minimal, schedule: [{ action: "pause", cron: "0 25 * * *" }] })).toMatch(
      /^schedule\[0\]\.cron: "0 25 \* \* \*" is not a five-field cron expression .*hour/,
    );
    expect(errorOf({ ...minimal, schedule: [{ action: "pause", cron: "0 0 20 * * *" }] })).toMatch(/^schedule\[0\]\.cron: .*five-field/);
    expect(errorOf({ ...minimal, schedule: [{ action: "pause", cron: "0 0 30 2 *" }] })).toBe(
      'schedule[0].cron: "0 0 30 2 *" never runs (no such date)',
    );
    expect(errorOf({ ...minimal, schedule: [{ action: "pause" }] })).toMatch(/^schedule\[0\]\.cron: /);
    expect(errorOf({ ...minimal, schedule: [{ action: "pause", cron: "0 1 * * *", at: 3 }] })).toMatch(/^schedule\[0\]/);
    expect(
      errorOf({
        ...minimal,
        schedule: [
          { action: "pause", cron: "0 1 * * *" },
          { action: "pause", cron: "0 1 * * *" },
        ],
      }),
    ).toBe('schedule[1]: repeats schedule[0] (pause at "0 1 * * *")');
  });

  it("reads load-balancer target groups and refuses a malformed, repeated or other-region ARN, naming the field", () => {
    const arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";
    expect(parseSpec({ ...minimal, loadBalancers: { targetGroupArns: [arn] } }).loadBalancers).toEqual({
      targetGroupArns: [arn],
      drainingSeconds: 30,
    });
    expect(parseSpec(minimal).loadBalancers).toBeUndefined();
    expect(errorOf({ ...minimal, loadBalancers: { targetGroupArns: ["web"] } })).toMatch(
      /^loadBalancers\.targetGroupArns\[0\]: is not a target group ARN/,
    );
    expect(errorOf({ ...minimal, loadBalancers: { targetGroupArns: [] } })).toBe(
      "loadBalancers.targetGroupArns: needs at least one target group ARN",
    );
    expect(errorOf({ ...minimal, loadBalancers: { targetGroupArns: [arn, arn] } })).toBe(
      "loadBalancers.targetGroupArns[1]: repeats targetGroupArns[0]",
    );
    expect(errorOf({ ...minimal, loadBalancers: { targetGroupArns: [arn.replace("us-east-1", "eu-west-1")] } })).toBe(
      "loadBalancers.targetGroupArns[0]: is in eu-west-1, not in the instance's region us-east-1",
    );
    expect(errorOf({ ...minimal, loadBalancers: { targetGroupArns: [arn], drainingSeconds: -1 } })).toMatch(
      /^loadBalancers\.drainingSeconds: /,
    );
  });
});

describe("adopted volumes", () => {
  it("may leave out the mount point (attached, not mounted); two such volumes do not clash", () => {
    const spec = parseSpec({
      ...minimal,
      persistence: {
        volumes: [
          { device: "/dev/sdf", sizeGiB: 8, volumeId: "vol-0123456789abcdef0" },
          { device: "/dev/sdg", sizeGiB: 8, volumeId: "vol-0123456789abcdef1" },
        ],
      },
    });
    expect(spec.persistence.volumes.map((v) => v.mountPoint)).toEqual([undefined, undefined]);
  });
});

describe("disaster-recovery copies", () => {
  const withCopies = (copyToRegions: unknown) => ({ ...minimal, snapshots: { copyToRegions } });
  it("takes regions as names or {region, kmsKeyId}", () => {
    const key = "arn:aws:kms:eu-west-1:123456789012:alias/dr";
    expect(parseSpec(withCopies(["us-west-2", { region: "eu-west-1", kmsKeyId: key }])).snapshots.copyToRegions).toEqual([
      { region: "us-west-2" },
      { region: "eu-west-1", kmsKeyId: key },
    ]);
  });
  it("refuses the instance's own region, a region twice, a key of another region and a malformed region, naming the item", () => {
    expect(errorOf(withCopies(["us-east-1"]))).toBe("snapshots.copyToRegions[0].region: is the instance's own region (us-east-1)");
    expect(errorOf(withCopies(["us-west-2", { region: "us-west-2" }]))).toBe(
      "snapshots.copyToRegions[1].region: repeats snapshots.copyToRegions[0]",
    );
    expect(errorOf(withCopies([{ region: "us-west-2", kmsKeyId: "arn:aws:kms:eu-west-1:123456789012:alias/dr" }]))).toBe(
      "snapshots.copyToRegions[0].kmsKeyId: is in eu-west-1, not in us-west-2 (a copy is encrypted with a key of its own region)",
    );
    expect(errorOf(withCopies(["mars-1"]))).toMatch(/^snapshots\.copyToRegions\[0\]\.region: is not an AWS region/);
    expect(errorOf(withCopies([{ region: "us-west-2", key: "x" }]))).toMatch(/^snapshots\.copyToRegions\[0\]: .*key/);
  });
});

describe("encryption and the root volume", () => {
  const keyArn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  const withEnc = (encryption: unknown) => ({ ...minimal, persistence: { encryption } });
  it("accepts a key id, key ARN, alias name or alias ARN, and encrypted without a key (the account's default key)", () => {
    for (const kmsKeyId of [
      "1234abcd-12ab-34cd-56ef-1234567890ab",
      "mrk-1234abcd12ab34cd56ef1234567890ab",
      keyArn,
      "alias/db-volumes",
      "alias/aws/ebs",
      "arn:aws:kms:us-east-1:123456789012:alias/db-volumes",
    ])
      expect(parseSpec(withEnc({ encrypted: true, kmsKeyId })).persistence.encryption).toEqual({ encrypted: true, kmsKeyId });
    expect(parseSpec(withEnc({ encrypted: true })).persistence.encryption).toEqual({ encrypted: true });
  });
  it("refuses a key without encrypted, a malformed key, another AWS-managed key and a key in another region, naming the field", () => {
    expect(errorOf(withEnc({ kmsKeyId: "alias/db" }))).toBe("persistence.encryption.kmsKeyId: needs encrypted: true");
    expect(errorOf(withEnc({ encrypted: true, kmsKeyId: "my key" }))).toMatch(
      /^persistence\.encryption\.kmsKeyId: is not a KMS key id, key ARN, alias name/,
    );
    expect(errorOf(withEnc({ encrypted: true, kmsKeyId: "alias/aws/s3" }))).toBe(
      "persistence.encryption.kmsKeyId: names an AWS-managed key other than alias/aws/ebs",
    );
    expect(errorOf(withEnc({ encrypted: true, kmsKeyId: keyArn.replace("us-east-1", "eu-west-1") }))).toMatch(
      /^persistence\.encryption\.kmsKeyId: is in eu-west-1, not in the instance's region us-east-1/,
    );
    expect(errorOf(withEnc({ encrypted: "yes" }))).toMatch(/^persistence\.encryption\.encrypted: /);
    expect(errorOf(withEnc({ encrypted: true, key: "alias/x" }))).toMatch(/^persistence\.encryption: .*key/);
  });
  it("takes the root volume's size, type, IOPS and throughput within EBS's ranges, naming the field otherwise", () => {
    const withRoot = (rootVolume: unknown) => ({ ...minimal, launch: { ...minimal.launch, rootVolume } });
    expect(parseSpec(withRoot({ sizeGiB: 50, type: "gp3", iops: 4000, throughput: 250 })).launch.rootVolume).toEqual({
      sizeGiB: 50,
      type: "gp3",
      iops: 4000,
      throughput: 250,
    });
    expect(parseSpec(withRoot({ sizeGiB: 30 })).launch.rootVolume).toEqual({ sizeGiB: 30 });
    expect(errorOf(withRoot({ type: "st1" }))).toMatch(/^launch\.rootVolume\.type: must be gp2, gp3, io1, io2 or standard/);
    expect(errorOf(withRoot({ type: "io1", sizeGiB: 2 }))).toBe("launch.rootVolume.sizeGiB: 2 is outside 4..16384 GiB for io1");
    expect(errorOf(withRoot({ type: "gp2", throughput: 200 }))).toBe(
      "launch.rootVolume.throughput: is only valid for gp3 volumes (this one is gp2)",
    );
    expect(errorOf(withRoot({ iops: 3000 }))).toBe("launch.rootVolume.iops: needs type (gp3, io1 or io2)");
    expect(errorOf(withRoot({ sizeGiB: 70000 }))).toBe("launch.rootVolume.sizeGiB: 70000 is more than EBS's largest volume (65536 GiB)");
    expect(errorOf(withRoot({ size: 30 }))).toMatch(/^launch\.rootVolume: .*size/);
  });
  it("reads a stored spec from before the field existed as unencrypted", () => {
    const spec = parseSpec(minimal);
    const { encryption: _dropped, ...old } = spec.persistence;
    expect(encryptionOf({ ...spec, persistence: old } as typeof spec)).toEqual({ encrypted: false });
  });
});
