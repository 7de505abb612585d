/**
 * End-to-end wiring of the EC2 model to the process runtime and IMDS: user-data runs at boot and
 * sees its IMDS, an attached volume's device link appears after AttachVolume, termination stops the
 * process group, volume content survives detach/reattach, a snapshot restores it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  AttachVolumeCommand,
  CreateSnapshotCommand,
  CreateVolumeCommand,
  DetachVolumeCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  waitUntilInstanceRunning,
  waitUntilInstanceTerminated,
  waitUntilSnapshotCompleted,
  waitUntilVolumeAvailable,
  waitUntilVolumeInUse,
} from "@aws-sdk/client-ec2";
import type { ProcessRuntime } from "../../localcloud/runtime/process.js";
import { control, fast, startEnv, until, type Env } from "./helpers.js";

let env: Env;
let rt: ProcessRuntime;
beforeAll(async () => {
  env = await startEnv({ runtime: "process" });
  rt = env.cloud.runtime as ProcessRuntime;
});
afterAll(async () => {
  await env?.stop();
});

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** Writes what it sees into its root folder; waits for /dev/sdf, writes into it; records SIGTERM. */
const writer = `#!/bin/bash
trap 'echo got-term > "$SPOTKEEP_ROOT_DIR/term.txt"; exit 0' TERM
echo "$AWS_EC2_METADATA_SERVICE_ENDPOINT" > endpoint.txt
node -e 'fetch(process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT + "/latest/meta-data/instance-id").then(r => r.text()).then(t => require("fs").writeFileSync("imds-instance-id.txt", t))'
echo "$SPOTKEEP_TIME_SCALE" > time-scale.txt
while [ ! -e "$SPOTKEEP_DEV_DIR/sdf" ]; do sleep 0.02; done
echo hello-from-writer > "$SPOTKEEP_DEV_DIR/sdf/data.txt"
sync
echo wrote > wrote.txt
while true; do sleep 0.05; done
`;

/** Waits for /dev/sdf and copies what it finds into its root folder. */
const reader = `#!/bin/bash
while [ ! -e "$SPOTKEEP_DEV_DIR/sdf/data.txt" ]; do sleep 0.02; done
cp "$SPOTKEEP_DEV_DIR/sdf/data.txt" seen.txt
`;

async function fileIn(dir: string, name: string, timeoutMs = 10_000): Promise<string> {
  return until(
    async () => (existsSync(path.join(dir, name)) ? (await readFile(path.join(dir, name), "utf8")).trim() || null : null),
    `${name} in ${dir}`,
    timeoutMs,
  );
}

describe("process runtime wiring", () => {
  it("runs user-data with IMDS, shows attached volumes, stops on terminate; content survives reattach and snapshot restore", async () => {
    const a = (
      await env.ec2.send(
        new RunInstancesCommand({
          ImageId: env.cloud.world.baseImageId,
          MinCount: 1,
          MaxCount: 1,
          UserData: b64(writer),
          BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { DeleteOnTermination: false } }],
        }),
      )
    ).Instances![0]!.InstanceId!;
    const rootVolA = env.cloud.world.instances.get(a)!.rootVolumeId;
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [a] });
    const rootA = rt.rootDir(a);
    expect(await fileIn(rootA, "imds-instance-id.txt")).toBe(a);
    const state = await control(env.cloud, "GET", "state");
    const me = state.json.instances.find((i: { id: string }) => i.id === a);
    expect(await fileIn(rootA, "endpoint.txt")).toBe(me.imdsEndpoint);
    expect(me.logPath).toBe(rt.logPath(a));
    expect(await fileIn(rootA, "time-scale.txt")).toBe("1");

    const vol = (await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }))).VolumeId!;
    await waitUntilVolumeAvailable(fast(env), { VolumeIds: [vol] });
    expect(existsSync(path.join(rt.devDir(a), "sdf"))).toBe(false);
    await env.ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: a, Device: "/dev/sdf" }));
    await waitUntilVolumeInUse(fast(env), { VolumeIds: [vol] });
    await fileIn(rootA, "wrote.txt");
    expect(existsSync(path.join(rt.devDir(a), `nvme-Amazon_Elastic_Block_Store_${vol.replace("-", "")}`))).toBe(true);

    await env.ec2.send(new DetachVolumeCommand({ VolumeId: vol }));
    await waitUntilVolumeAvailable(fast(env), { VolumeIds: [vol] });
    expect(existsSync(path.join(rt.devDir(a), "sdf"))).toBe(false);

    const b = (
      await env.ec2.send(new RunInstancesCommand({ ImageId: env.cloud.world.baseImageId, MinCount: 1, MaxCount: 1, UserData: b64(reader) }))
    ).Instances![0]!.InstanceId!;
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [b] });
    await env.ec2.send(new AttachVolumeCommand({ VolumeId: vol, InstanceId: b, Device: "/dev/sdf" }));
    expect(await fileIn(rt.rootDir(b), "seen.txt")).toBe("hello-from-writer");

    const snap = (await env.ec2.send(new CreateSnapshotCommand({ VolumeId: vol }))).SnapshotId!;
    await waitUntilSnapshotCompleted(fast(env), { SnapshotIds: [snap] });
    const restored = (await env.ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1b", SnapshotId: snap }))).VolumeId!;
    await waitUntilVolumeAvailable(fast(env), { VolumeIds: [restored] });
    expect((await readFile(path.join(rt.volumeDir(restored), "data.txt"), "utf8")).trim()).toBe("hello-from-writer");

    expect(rt.pgidOf(a)).not.toBeNull();
    await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [a] }));
    await waitUntilInstanceTerminated(fast(env), { InstanceIds: [a] });
    expect(rt.pgidOf(a)).toBeNull();
    // the root volume outlives the instance (DeleteOnTermination=false) and shows the TERM handler ran
    expect(await fileIn(rt.volumeDir(rootVolA), "term.txt")).toBe("got-term");
    await waitUntilVolumeAvailable(fast(env), { VolumeIds: [rootVolA] });
  });
});
