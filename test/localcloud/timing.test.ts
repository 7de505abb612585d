/**
 * The realistic profile on a fake clock: every transition happens exactly at the profile's delay
 * (published AWS figures: RunInstances call 1.5 s, pending->running 15 s, boot to user-data 10 s,
 * shutting-down->terminated 30 s, ENI free +2 s, attach 3 s, detach 5 s, volume create 5 s,
 * snapshot 15 s + size, image 10 s), and every intermediate state is observable before it.
 * Nothing sleeps.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AttachVolumeCommand,
  CreateNetworkInterfaceCommand,
  CreateSnapshotCommand,
  CreateVolumeCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSnapshotsCommand,
  DescribeSubnetsCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
} from "@aws-sdk/client-ec2";
import { FakeClock } from "../../shared/clock.js";
import { PROFILES, replacementCriticalPath } from "../../localcloud/index.js";
import { startEnv, until, type Env } from "./helpers.js";

const P = PROFILES.realistic;
let env: Env;
const clock = new FakeClock();
beforeAll(async () => {
  env = await startEnv({ clock, profile: "realistic", throttle: false });
});
afterAll(async () => {
  await env?.stop();
});

const instState = async (id: string) =>
  (await env.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!.State!.Name;
const volState = async (id: string) => {
  const v = (await env.ec2.send(new DescribeVolumesCommand({ VolumeIds: [id] }))).Volumes![0]!;
  return v.Attachments?.[0]?.State ?? v.State;
};

describe("realistic profile timing (model time, fake clock)", () => {
  it("exports the realistic profile's published figures", () => {
    expect(P).toMatchObject({
      runInstancesCall: 1500,
      pendingToRunning: 15000,
      bootToUserData: 10000,
      shuttingDownToTerminated: 30000,
      eniFree: 2000,
      attachVolume: 3000,
      detachVolume: 5000,
      createVolume: 5000,
      snapshotBase: 15000,
      image: 10000,
    });
    expect(replacementCriticalPath(P)).toBe(30000 + 2000 + 1500 + 15000 + 10000);
  });

  it("RunInstances answers after 1.5 s; pending for 15 s; shutting-down for 30 s; a kept ENI frees 2 s later", async () => {
    const subnet = (await env.ec2.send(new DescribeSubnetsCommand({}))).Subnets![0]!;
    const eni = (await env.ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: subnet.SubnetId! }))).NetworkInterface!
      .NetworkInterfaceId!;
    let answered = false;
    const n = clock.pending;
    const call = env.ec2
      .send(
        new RunInstancesCommand({
          ImageId: env.cloud.world.baseImageId,
          MinCount: 1,
          MaxCount: 1,
          NetworkInterfaces: [{ DeviceIndex: 0, NetworkInterfaceId: eni }],
        }),
      )
      .then((r) => {
        answered = true;
        return r;
      });
    // the call is in flight once it has scheduled its launch timer and its own 1.5 s answer delay
    await until(() => clock.pending >= n + 2, "RunInstances to reach the server");
    await clock.advance(P.runInstancesCall - 1);
    expect(answered).toBe(false);
    await clock.advance(1);
    const id = (await call).Instances![0]!.InstanceId!;
    await clock.advance(P.pendingToRunning - 1);
    expect(await instState(id)).toBe("pending");
    await clock.advance(1);
    expect(await instState(id)).toBe("running");
    await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    await clock.advance(P.shuttingDownToTerminated - 1);
    expect(await instState(id)).toBe("shutting-down");
    await clock.advance(1);
    expect(await instState(id)).toBe("terminated");
    const eniStatus = async () =>
      (await env.ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [eni] }))).NetworkInterfaces![0]!.Status;
    expect(await eniStatus()).toBe("detaching");
    await clock.advance(P.eniFree - 1);
    expect(await eniStatus()).toBe("detaching");
    await clock.advance(1);
    expect(await eniStatus()).toBe("available");
  });

  it("volume creating 5 s, attaching 3 s, detaching 5 s; snapshot pending 15 s + size with progress; image pending 10 s", async () => {
    const n = clock.pending;
    const run = env.ec2.send(new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, MinCount: 1, MaxCount: 1 }));
    await until(() => clock.pending >= n + 2, "RunInstances to reach the server");
    await clock.advance(P.runInstancesCall);
    const id = (await run).Instances![0]!.InstanceId!;
    await clock.advance(P.pendingToRunning);
    const vol = (await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 10 }))).VolumeId!;
    await clock.advance(P.createVolume - 1);
    expect(await volState(vol)).toBe("creating");
    await clock.advance(1);
    expect(await volState(vol)).toBe("available");
    await env.ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: id, Device: "/dev/sdf" }));
    await clock.advance(P.attachVolume - 1);
    expect(await volState(vol)).toBe("attaching");
    await clock.advance(1);
    expect(await volState(vol)).toBe("attached");
    await env.ec2.send(new DetachVolumeCommand({ VolumeId: vol }));
    await clock.advance(P.detachVolume - 1);
    expect(await volState(vol)).toBe("detaching");
    await clock.advance(1);
    expect(await volState(vol)).toBe("available");

    const snap = (await env.ec2.send(new CreateSnapshotCommand({ VolumeId: vol }))).SnapshotId!;
    const snapOf = async () => (await env.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snap] }))).Snapshots![0]!;
    const total = P.snapshotBase + P.snapshotPerGiB * 10;
    await clock.advance(total / 2);
    expect(await snapOf()).toMatchObject({ State: "pending", Progress: "50%" });
    await clock.advance(total / 2);
    expect(await snapOf()).toMatchObject({ State: "completed", Progress: "100%" });
    const img = (
      await env.ec2.send(
        new RegisterImageCommand({
          Name: "timed",
          RootDeviceName: "/dev/xvda",
          BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snap } }],
        }),
      )
    ).ImageId!;
    const imgState = async () => (await env.ec2.send(new DescribeImagesCommand({ ImageIds: [img] }))).Images![0]!.State;
    await clock.advance(P.image - 1);
    expect(await imgState()).toBe("pending");
    await clock.advance(1);
    expect(await imgState()).toBe("available");
  });
});
