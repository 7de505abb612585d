/**
 * The bundled agent on a localcloud instance (process runtime): user-data starts
 * `node spotkeep-agent.js run`, which talks to the instance's own IMDS and to a test coordinator.
 * Checks hello + inventory against EC2's view (id, AZ, ENI, IP, the attached volume mapped to its
 * device link), then the control API's rebalance and interrupt show up as notices with the right
 * action and deadline. localcloud runs the realistic profile at time scale 0.02.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rmSync } from "node:fs";
import { join } from "node:path";
import {
  AttachVolumeCommand,
  CreateVolumeCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  EC2Client,
  RunInstancesCommand,
} from "@aws-sdk/client-ec2";
import { startLocalCloud, type LocalCloud } from "../../localcloud/index.js";
import type { MessageOf } from "../../shared/protocol.js";
import { byIdName } from "../../agent/storage/devices.js";
import { startFakeCoordinator, type FakeCoordinator } from "./fake-coordinator.js";
import { buildAgentBundle } from "./bundle.js";

const TIME_SCALE = 0.02;
let lc: LocalCloud;
let ec2: EC2Client;
let coord: FakeCoordinator;
let bundle: { file: string; dir: string };

beforeAll(async () => {
  bundle = await buildAgentBundle();
  lc = await startLocalCloud({ port: 0, profile: "realistic", timeScale: TIME_SCALE, runtime: "process", throttle: false });
  ec2 = new EC2Client({ endpoint: lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" } });
  coord = await startFakeCoordinator();
});
afterAll(async () => {
  await coord?.close();
  await lc?.stop();
  if (lc) rmSync(lc.stateDir, { recursive: true, force: true });
  if (bundle) rmSync(bundle.dir, { recursive: true, force: true });
});

async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const control = async (path: string, body: unknown) => {
  const res = await fetch(`${lc.controlUrl}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${await res.text()}`);
  return res.json() as Promise<Record<string, unknown>>;
};

describe("agent on a localcloud instance (process runtime)", () => {
  it("reports hello and inventory matching the instance, then rebalance and interruption notices", async () => {
    const imageId = [...lc.world.images.values()][0]!.id;
    const subnet = [...lc.world.subnets.values()].find((s) => s.az === "us-east-1b")!;
    // Poll every 5 s model time = 100 ms real at this scale.
    const userData = `export SPOTKEEP_COORDINATOR='${coord.url}'\nexport SPOTKEEP_TIME_SCALE=${TIME_SCALE}\nexport SPOTKEEP_POLL_INTERVAL_MS=5000\nexec node '${bundle.file}' run\n`;
    const run = await ec2.send(
      new RunInstancesCommand({
        ImageId: imageId,
        InstanceType: "m5.large",
        MinCount: 1,
        MaxCount: 1,
        SubnetId: subnet.id,
        UserData: Buffer.from(userData).toString("base64"),
        InstanceMarketOptions: {
          MarketType: "spot",
          SpotOptions: { SpotInstanceType: "one-time", InstanceInterruptionBehavior: "terminate" },
        },
      }),
    );
    const instanceId = run.Instances![0]!.InstanceId!;
    const vol = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1b", Size: 1, VolumeType: "gp3" }));
    const volumeId = vol.VolumeId!;
    await until(
      "the volume to be available",
      async () => (await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))).Volumes?.[0]?.State === "available",
    );
    await until(
      "the instance to run",
      async () =>
        (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))).Reservations?.[0]?.Instances?.[0]?.State?.Name ===
        "running",
    );
    await ec2.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceId, Device: "/dev/sdf" }));

    const hello = (await coord.waitFor((m) => m.type === "hello", 30_000)) as MessageOf<"hello">;
    const doc = JSON.parse(hello.identity.document) as { instanceId: string; availabilityZone: string };
    expect(doc).toMatchObject({ instanceId, availabilityZone: "us-east-1b" });
    expect(hello.identity.signature.length).toBeGreaterThan(100);

    const inst = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))).Reservations![0]!.Instances![0]!;
    const eni = inst.NetworkInterfaces![0]!;
    // Inventory is sent on connect and again when the attached volume's link appears.
    const inv = (await coord.waitFor(
      (m) => m.type === "inventory" && (m as MessageOf<"inventory">).devices.some((d) => d.volumeId === volumeId),
      30_000,
    )) as MessageOf<"inventory">;
    expect(inv).toMatchObject({ instanceId, availabilityZone: "us-east-1b", instanceType: "m5.large", imageId });
    expect(inv.enis).toEqual([
      expect.objectContaining({
        interfaceId: eni.NetworkInterfaceId,
        deviceNumber: 0,
        privateIps: [inst.PrivateIpAddress],
        mac: eni.MacAddress,
      }),
    ]);
    const dev = inv.devices.find((d) => d.volumeId === volumeId)!;
    expect(dev).toMatchObject({ kind: "directory", requestedName: "/dev/sdf" });
    expect(dev.device.endsWith(join("dev", byIdName(volumeId)))).toBe(true);
    expect(dev.device).toContain(instanceId);

    await control(`instances/${instanceId}/rebalance`, {});
    const reb = (await coord.waitFor(
      (m) => m.type === "notice" && (m as MessageOf<"notice">).kind === "rebalance",
      20_000,
    )) as MessageOf<"notice">;
    expect(reb.deadline).toBeUndefined();

    const res = (await control(`instances/${instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 })) as {
      notice: { action: string; time: string };
    };
    const notice = (await coord.waitFor(
      (m) => m.type === "notice" && (m as MessageOf<"notice">).kind === "spot-interruption",
      20_000,
    )) as MessageOf<"notice">;
    expect(notice.action).toBe("terminate");
    expect(Date.parse(notice.deadline!)).toBe(Date.parse(res.notice.time));
    // Each notice reported once although IMDS keeps serving it.
    await new Promise((r) => setTimeout(r, 400));
    expect(coord.delivered.filter((m) => m.type === "notice")).toHaveLength(2);
  });
});
