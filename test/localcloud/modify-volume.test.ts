/**
 * Contract: localcloud's ModifyVolume and DescribeVolumesModifications follow EC2's rules and
 * answer with EC2's error codes, through the real SDK: one modification per volume at a time,
 * modifying → optimizing (new size in place) → completed, the 6-hour cool-down, size only up, and
 * the limits of each volume type.
 */
import {
  CreateVolumeCommand,
  DescribeVolumesCommand,
  DescribeVolumesModificationsCommand,
  ModifyVolumeCommand,
  type VolumeModification,
} from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectEc2Error, startEnv, until, type Env } from "./helpers.js";

let env: Env;

beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  await env?.stop();
});

async function volume(e: Env, o: { Size: number; VolumeType?: "gp2" | "gp3" | "io1" | "io2" | "st1"; Iops?: number }): Promise<string> {
  const id = (await e.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", VolumeType: "gp3", ...o }))).VolumeId!;
  await until(async () => (await e.ec2.send(new DescribeVolumesCommand({ VolumeIds: [id] }))).Volumes![0]!.State === "available", id);
  return id;
}

async function latest(e: Env, id: string): Promise<VolumeModification> {
  return (await e.ec2.send(new DescribeVolumesModificationsCommand({ VolumeIds: [id] }))).VolumesModifications![0]!;
}

describe("ModifyVolume", () => {
  it("grows a volume: modifying → optimizing (the size is in place) → completed, then refuses another for 6 hours", async () => {
    const id = await volume(env, { Size: 1 });
    const out = await env.ec2.send(new ModifyVolumeCommand({ VolumeId: id, Size: 2 }));
    expect(out.VolumeModification).toMatchObject({
      VolumeId: id,
      ModificationState: "modifying",
      OriginalSize: 1,
      TargetSize: 2,
      OriginalVolumeType: "gp3",
      TargetVolumeType: "gp3",
    });
    const done = await until(async () => {
      const m = await latest(env, id);
      return m.ModificationState === "completed" ? m : null;
    }, "the modification to complete");
    expect(done.Progress).toBe(100);
    expect(done.EndTime).toBeInstanceOf(Date);
    expect((await env.ec2.send(new DescribeVolumesCommand({ VolumeIds: [id] }))).Volumes![0]!.Size).toBe(2);
    await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: id, Size: 3 })), "VolumeModificationRateExceeded", 400);
  });

  it("refuses a second modification while the first is still modifying (IncorrectModificationState)", async () => {
    const id = await volume(env, { Size: 1 });
    const world = env.cloud.world;
    const profile = world.profile;
    // An hour of modifying: it holds for the rest of the test.
    world.profile = { ...profile, modifyVolume: 3_600_000 };
    try {
      await env.ec2.send(new ModifyVolumeCommand({ VolumeId: id, Size: 2 }));
    } finally {
      world.profile = profile;
    }
    const m = await latest(env, id);
    expect(m.ModificationState).toBe("modifying");
    expect(m.Progress).toBeLessThan(50);
    const err = await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: id, Size: 3 })), "IncorrectModificationState", 400);
    expect(err.message).toContain("MODIFYING");
  });

  it("never shrinks, and refuses a request that changes nothing", async () => {
    const id = await volume(env, { Size: 4 });
    const err = await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: id, Size: 3 })), "InvalidParameterValue", 400);
    expect(err.message).toBe("New size cannot be smaller than existing size");
    await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: id })), "MissingParameter", 400);
    await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: id, Size: 4 })), "InvalidParameterValue", 400);
  });

  it("holds each type to its limits", async () => {
    const gp3 = await volume(env, { Size: 4 });
    // gp3: at most 500 IOPS per GiB above 3,000; throughput at most 0.25 MiB/s per IOPS; st1 starts at 125 GiB.
    await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: gp3, Iops: 4000 })), "InvalidParameterValue", 400);
    await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: gp3, Throughput: 1000 })), "InvalidParameterValue", 400);
    await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: gp3, Iops: 20000, Size: 100 })), "InvalidParameterValue", 400);
    await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: gp3, VolumeType: "st1" })), "InvalidParameterValue", 400);
    await expectEc2Error(
      env.ec2.send(new ModifyVolumeCommand({ VolumeId: gp3, VolumeType: "gp2", Iops: 3000 })),
      "InvalidParameterDependency",
      400,
    );
    // io1: at most 50 IOPS per GiB.
    const io1 = await volume(env, { Size: 10, VolumeType: "io1", Iops: 500 });
    await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: io1, Iops: 501 })), "InvalidParameterValue", 400);
    // Nothing was started by a refused request.
    await expectEc2Error(
      env.ec2.send(new DescribeVolumesModificationsCommand({ VolumeIds: [gp3] })),
      "InvalidVolumeModification.NotFound",
      400,
    );
  });

  it("changes the type and performance of a volume", async () => {
    const id = await volume(env, { Size: 10, VolumeType: "gp2" });
    await env.ec2.send(new ModifyVolumeCommand({ VolumeId: id, VolumeType: "gp3", Iops: 4000, Throughput: 250 }));
    await until(async () => (await latest(env, id)).ModificationState === "completed", "completed");
    expect((await env.ec2.send(new DescribeVolumesCommand({ VolumeIds: [id] }))).Volumes![0]).toMatchObject({
      VolumeType: "gp3",
      Iops: 4000,
      Throughput: 250,
      Size: 10,
    });
  });

  it("answers for unknown and malformed volumes as EC2 does, and lists modifications by filter", async () => {
    await expectEc2Error(
      env.ec2.send(new ModifyVolumeCommand({ VolumeId: "vol-0123456789abcdef0", Size: 2 })),
      "InvalidVolume.NotFound",
      400,
    );
    await expectEc2Error(env.ec2.send(new ModifyVolumeCommand({ VolumeId: "vol-nope", Size: 2 })), "InvalidVolumeID.Malformed", 400);
    const id = await volume(env, { Size: 1 });
    const never = await volume(env, { Size: 1 });
    await env.ec2.send(new ModifyVolumeCommand({ VolumeId: id, Size: 5 }));
    const listed = await env.ec2.send(new DescribeVolumesModificationsCommand({ Filters: [{ Name: "volume-id", Values: [id, never] }] }));
    expect(listed.VolumesModifications!.map((m) => m.VolumeId)).toEqual([id]);
  });
});
