import { describe, expect, it } from "vitest";
import { parseSpec, type StatefulInstanceSpec } from "../shared/spec.js";
import type { VolumeModificationInfo } from "./cloud/gateway.js";
import { immutableChanges } from "./operations.js";
import { coolDownProblems, ebsLimitProblem, MODIFICATION_COOLDOWN_MS, planVolumeChanges } from "./volume-changes.js";

const base = parseSpec({
  name: "db",
  launch: { imageId: "ami-0123456789abcdef0", instanceTypes: ["m5.large"], subnetIds: ["subnet-0123456789abcdef0"] },
  persistence: {
    volumes: [
      { device: "/dev/sdf", sizeGiB: 10, mountPoint: "/data" },
      { device: "/dev/sdg", sizeGiB: 10, volumeId: "vol-0123456789abcdef0" },
    ],
  },
});

function edit(f: (s: StatefulInstanceSpec) => void): StatefulInstanceSpec {
  const s = structuredClone(base);
  f(s);
  return s;
}

describe("planVolumeChanges", () => {
  it("accepts a larger size and a type/IOPS/throughput change EC2 can make, as live modifications", () => {
    const plan = planVolumeChanges(
      base,
      edit((s) => {
        s.persistence.volumes[0]!.sizeGiB = 20;
        s.persistence.volumes[1]!.iops = 4000;
        s.persistence.volumes[1]!.throughput = 250;
      }),
    );
    expect(plan.problems).toEqual([]);
    expect(plan.grow).toEqual([
      { device: "/dev/sdf", sizeGiB: 20, volumeType: "gp3", grows: true, mountPoint: "/data", fsType: "ext4" },
      { device: "/dev/sdg", sizeGiB: 10, volumeType: "gp3", iops: 4000, throughput: 250, grows: false, mountPoint: null, fsType: "ext4" },
    ]);
    expect(plan.add).toEqual([]);
  });

  it("accepts a new device as a new volume, which needs a mount point and no volumeId", () => {
    const plan = planVolumeChanges(
      base,
      edit((s) => s.persistence.volumes.push({ device: "/dev/sdh", sizeGiB: 5, type: "gp3", mountPoint: "/logs", fsType: "xfs" })),
    );
    expect(plan).toMatchObject({ problems: [], grow: [], add: ["/dev/sdh"] });
    const adopted = planVolumeChanges(
      base,
      edit((s) =>
        s.persistence.volumes.push({ device: "/dev/sdh", sizeGiB: 5, type: "gp3", fsType: "ext4", volumeId: "vol-0123456789abcdef1" }),
      ),
    );
    expect(adopted.add).toEqual([]);
    expect(adopted.problems.join("; ")).toMatch(/persistence\.volumes\[2\]\.volumeId: .*created by spotkeep/);
    expect(adopted.problems.join("; ")).toMatch(/persistence\.volumes\[2\]\.mountPoint: .*needs a mount point/);
  });

  it("refuses shrinking, and each field that cannot change on an existing volume, naming it", () => {
    const problems = planVolumeChanges(
      base,
      edit((s) => {
        s.persistence.volumes[0]!.sizeGiB = 5;
        s.persistence.volumes[0]!.fsType = "xfs";
        s.persistence.volumes[0]!.mountPoint = "/other";
        s.persistence.volumes[1]!.volumeId = "vol-0123456789abcdef9";
      }),
    ).problems;
    expect(problems).toEqual([
      "persistence.volumes[0].fsType: cannot change on an existing volume (ext4)",
      "persistence.volumes[0].mountPoint: cannot change on an existing volume (/data)",
      "persistence.volumes[0].sizeGiB: cannot shrink from 10 to 5 GiB (EBS volumes only grow)",
      "persistence.volumes[1].volumeId: cannot change on an existing volume (vol-0123456789abcdef0)",
    ]);
  });

  it("lets an adopted volume without a mount point get one (mounted from the next generation on)", () => {
    const plan = planVolumeChanges(
      base,
      edit((s) => {
        s.persistence.volumes[1]!.mountPoint = "/adopted";
      }),
    );
    expect(plan).toMatchObject({ problems: [], grow: [], add: [], newMountPoints: ["/dev/sdg"] });
  });

  it("refuses removing a volume and changing a device", () => {
    expect(
      planVolumeChanges(
        base,
        edit((s) => s.persistence.volumes.pop()),
      ).problems,
    ).toEqual([
      "persistence.volumes[1]: /dev/sdg cannot be removed from a running instance (its volume holds data; delete the instance with keep to take it away)",
    ]);
    expect(
      planVolumeChanges(
        base,
        edit((s) => {
          s.persistence.volumes[0]!.device = "/dev/sdk";
        }),
      ).problems,
    ).toEqual(["persistence.volumes[0].device: cannot change on an existing volume (/dev/sdf); add a new volume with a device of its own"]);
  });

  it("refuses what EC2's limits refuse: io1/io2 IOPS per GiB, gp3 IOPS and throughput ranges", () => {
    const tooFast = planVolumeChanges(
      base,
      edit((s) => {
        s.persistence.volumes[0]!.iops = 6000; // 10 GiB: at most 5,000
      }),
    );
    expect(tooFast.problems).toEqual(["persistence.volumes[0].iops: 6000 is more than 500 per GiB of a 10 GiB gp3 volume"]);
    expect(tooFast.grow).toEqual([]);
    expect(ebsLimitProblem({ type: "io1", sizeGiB: 10, iops: 501 })).toBe("iops: 501 is more than 50 per GiB of a 10 GiB io1 volume");
    expect(ebsLimitProblem({ type: "io2", sizeGiB: 10, iops: undefined })).toBe("iops: io2 volumes need iops");
    expect(ebsLimitProblem({ type: "gp3", sizeGiB: 100, iops: 3000, throughput: 1001 })).toBe(
      "throughput: 1001 is outside 125..1000 MiB/s for gp3",
    );
    expect(ebsLimitProblem({ type: "gp3", sizeGiB: 100, iops: 3000, throughput: 800 })).toBe(
      "throughput: 800 MiB/s is more than 0.25 per IOPS (3000 IOPS)",
    );
    expect(ebsLimitProblem({ type: "gp3", sizeGiB: 100, iops: 16000, throughput: 1000 })).toBeNull();
  });

  it("is what immutableChanges reports for an instance's volumes; a group template's volumes cannot change at all", () => {
    const grown = edit((s) => {
      s.persistence.volumes[0]!.sizeGiB = 11;
    });
    const removed = edit((s) => {
      s.persistence.volumes.pop();
    });
    expect(immutableChanges(base, removed, { liveVolumes: true })).toHaveLength(1);
    expect(immutableChanges(base, grown, { liveVolumes: true })).toEqual([]);
    expect(immutableChanges(base, grown)).toEqual(["persistence.volumes[0].sizeGiB: cannot change on an existing volume (10)"]);
    // A stored spec naming another region than the coordinator's (ignored before) may be corrected to it, not the reverse.
    const elsewhere = { ...base, region: "us-east-1" };
    const corrected = { ...base, region: "eu-west-1" };
    expect(immutableChanges(elsewhere, corrected, { coordinatorRegion: "eu-west-1" })).toEqual([]);
    expect(immutableChanges(corrected, elsewhere, { coordinatorRegion: "eu-west-1" })).toEqual(["region: cannot change (eu-west-1)"]);
  });
});

describe("coolDownProblems", () => {
  const mod = (o: Partial<VolumeModificationInfo>): VolumeModificationInfo => ({
    volumeId: "vol-0123456789abcdef0",
    state: "completed",
    targetSizeGiB: 20,
    targetVolumeType: "gp3",
    targetIops: 3000,
    targetThroughput: 125,
    progress: 100,
    statusMessage: null,
    startTime: 0,
    endTime: 1_000,
    ...o,
  });
  const grow = [{ device: "/dev/sdg" }];
  const volumeOf = () => "vol-0123456789abcdef0";

  it("refuses a volume whose previous modification still runs or completed less than 6 hours ago", () => {
    expect(coolDownProblems(grow, volumeOf, [mod({ state: "optimizing" })], () => 0)[0]).toMatch(/still optimizing/);
    expect(coolDownProblems(grow, volumeOf, [mod({})], () => MODIFICATION_COOLDOWN_MS - 60_000)[0]).toMatch(
      /only 6 hours after its previous modification completed \(1 min from now\)/,
    );
  });

  it("accepts one modified more than 6 hours ago, or never", () => {
    expect(coolDownProblems(grow, volumeOf, [mod({})], () => MODIFICATION_COOLDOWN_MS)).toEqual([]);
    expect(coolDownProblems(grow, volumeOf, [], () => 0)).toEqual([]);
  });
});
