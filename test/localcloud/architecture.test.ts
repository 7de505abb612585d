/**
 * localcloud's arm64 (Graviton) types and its images per architecture, through the real SDK: the
 * catalog lists and prices them, RunInstances refuses a type/image architecture mismatch with EC2's
 * error, an arm64 instance says arm64 in DescribeInstances and IMDS, and the no-node flag of the
 * stock images travels to the images made from their instances.
 */
import {
  CreateImageCommand,
  CreateSnapshotCommand,
  DescribeImagesCommand,
  DescribeInstanceTypesCommand,
  DescribeInstancesCommand,
  DescribeSpotPriceHistoryCommand,
  ModifyInstanceAttributeCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  StopInstancesCommand,
  waitUntilImageAvailable,
  waitUntilInstanceRunning,
  waitUntilInstanceStopped,
  waitUntilSnapshotCompleted,
} from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STOCK_IMAGE_NAME_PREFIX } from "../../localcloud/world/catalog.js";
import { specIds } from "../../localcloud/world/spec-ids.js";
import { expectEc2Error, fast, startEnv, type Env } from "./helpers.js";

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  await env?.stop();
});

async function launch(imageId: string, instanceType: string): Promise<string> {
  const out = await env.ec2.send(
    new RunInstancesCommand({ ImageId: imageId, InstanceType: instanceType as never, MinCount: 1, MaxCount: 1 }),
  );
  return out.Instances![0]!.InstanceId!;
}

describe("localcloud arm64 and stock images", () => {
  it("lists the Graviton types under the arm64 architecture filter, one thread per core, with spot prices", async () => {
    const arm = await env.ec2.send(
      new DescribeInstanceTypesCommand({
        Filters: [{ Name: "processor-info.supported-architecture", Values: ["arm64"] }],
        MaxResults: 100,
      }),
    );
    const names = arm.InstanceTypes!.map((t) => t.InstanceType).sort();
    expect(names).toEqual([
      "c7g.2xlarge",
      "c7g.large",
      "c7g.xlarge",
      "m7g.2xlarge",
      "m7g.large",
      "m7g.xlarge",
      "t4g.large",
      "t4g.medium",
      "t4g.micro",
      "t4g.small",
    ]);
    const m7g = arm.InstanceTypes!.find((t) => t.InstanceType === "m7g.xlarge")!;
    expect(m7g.ProcessorInfo?.SupportedArchitectures).toEqual(["arm64"]);
    expect(m7g.VCpuInfo).toMatchObject({ DefaultVCpus: 4, DefaultCores: 4, DefaultThreadsPerCore: 1 });
    expect(m7g.NetworkInfo).toMatchObject({ MaximumNetworkInterfaces: 4, Ipv4AddressesPerInterface: 15 });
    const prices = await env.ec2.send(
      new DescribeSpotPriceHistoryCommand({ InstanceTypes: ["m7g.large"], ProductDescriptions: ["Linux/UNIX"] }),
    );
    expect(prices.SpotPriceHistory!.map((p) => p.AvailabilityZone).sort()).toEqual(["us-east-1a", "us-east-1b", "us-east-1c"]);
    for (const p of prices.SpotPriceHistory!) expect(Number(p.SpotPrice)).toBeLessThan(0.0816);
  });

  it("has a base and a stock image per architecture, owner amazon; the spec ids list both kinds", async () => {
    const w = env.cloud.world;
    const stock = await env.ec2.send(
      new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "name", Values: [`${STOCK_IMAGE_NAME_PREFIX}*`] }] }),
    );
    expect(stock.Images!.map((i) => [i.Name, i.Architecture, i.ImageId]).sort()).toEqual(
      [
        [`${STOCK_IMAGE_NAME_PREFIX}arm64`, "arm64", w.stockImageIds.arm64],
        [`${STOCK_IMAGE_NAME_PREFIX}x86_64`, "x86_64", w.stockImageIds.x86_64],
      ].sort(),
    );
    expect(w.images.get(w.stockImageIds.x86_64)!.noNode).toBe(true);
    expect(w.images.get(w.baseImageIds.arm64)).toMatchObject({ architecture: "arm64", name: "localcloud-base-arm64" });
    expect(w.images.get(w.baseImageIds.arm64)!.noNode).toBeUndefined();
    const ids = specIds(w);
    expect(ids.images).toEqual({ x86_64: w.baseImageId, arm64: w.baseImageIds.arm64 });
    expect(ids.stockImages).toEqual({ x86_64: w.stockImageIds.x86_64, arm64: w.stockImageIds.arm64 });
  });

  it("refuses an arm64 type with an x86_64 image (and the reverse) with EC2's InvalidParameterValue, launching nothing", async () => {
    const before = env.cloud.world.instances.size;
    const e = await expectEc2Error(launch(env.cloud.world.baseImageId, "m7g.large"), "InvalidParameterValue", 400);
    expect(e.message).toBe(
      "The architecture 'arm64' of the specified instance type does not match the architecture 'x86_64' of the specified AMI. " +
        "Specify an instance type and an AMI that have matching architectures, and try again. " +
        "You can use 'describe-instance-types' or 'describe-images' to discover the architecture of the instance type or AMI.",
    );
    await expectEc2Error(launch(env.cloud.world.stockImageIds.arm64, "t3.micro"), "InvalidParameterValue", 400);
    expect(env.cloud.world.instances.size).toBe(before);
  });

  it("runs an arm64 instance that says arm64 in DescribeInstances and in its IMDS identity document", async () => {
    const id = await launch(env.cloud.world.baseImageIds.arm64, "t4g.small");
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    const d = (await env.ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;
    expect(d).toMatchObject({ Architecture: "arm64", InstanceType: "t4g.small", CpuOptions: { CoreCount: 2, ThreadsPerCore: 1 } });
    const endpoint = env.cloud.world.instances.get(id)!.imdsEndpoint!;
    const token = await (
      await fetch(`${endpoint}/latest/api/token`, { method: "PUT", headers: { "x-aws-ec2-metadata-token-ttl-seconds": "60" } })
    ).text();
    const doc = await (
      await fetch(`${endpoint}/latest/dynamic/instance-identity/document`, { headers: { "x-aws-ec2-metadata-token": token } })
    ).json();
    expect(doc).toMatchObject({ architecture: "arm64", instanceId: id, instanceType: "t4g.small" });
  });

  it("refuses to change a stopped instance to a type of the other architecture", async () => {
    const id = await launch(env.cloud.world.baseImageId, "t3.micro");
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
    await env.ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    await waitUntilInstanceStopped(fast(env), { InstanceIds: [id] });
    await expectEc2Error(
      env.ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, InstanceType: { Value: "m7g.large" } })),
      "InvalidParameterValue",
      400,
    );
    expect(env.cloud.world.instances.get(id)!.instanceType).toBe("t3.micro");
  });

  it("keeps the no-node flag on images made from a stock instance (CreateImage) and from its root snapshot (RegisterImage)", async () => {
    const w = env.cloud.world;
    const stock = await launch(w.stockImageIds.x86_64, "t3.micro");
    const base = await launch(w.baseImageId, "t3.micro");
    await waitUntilInstanceRunning(fast(env), { InstanceIds: [stock, base] });
    expect(w.instances.get(stock)!.noNode).toBe(true);
    expect(w.instances.get(base)!.noNode).toBeUndefined();
    const fromStock = (await env.ec2.send(new CreateImageCommand({ InstanceId: stock, Name: "from-stock", NoReboot: true }))).ImageId!;
    const fromBase = (await env.ec2.send(new CreateImageCommand({ InstanceId: base, Name: "from-base", NoReboot: true }))).ImageId!;
    await waitUntilImageAvailable(fast(env), { ImageIds: [fromStock, fromBase] });
    expect(w.images.get(fromStock)!.noNode).toBe(true);
    expect(w.images.get(fromBase)!.noNode).toBeUndefined();

    const snap = (await env.ec2.send(new CreateSnapshotCommand({ VolumeId: w.instances.get(stock)!.rootVolumeId }))).SnapshotId!;
    await waitUntilSnapshotCompleted(fast(env), { SnapshotIds: [snap] });
    const registered = await env.ec2.send(
      new RegisterImageCommand({
        Name: "registered-from-stock-root",
        RootDeviceName: "/dev/xvda",
        Architecture: "x86_64",
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snap } }],
      }),
    );
    expect(w.images.get(registered.ImageId!)!.noNode).toBe(true);
    // The next generation launched from it is a no-node instance again.
    await waitUntilImageAvailable(fast(env), { ImageIds: [registered.ImageId!] });
    const next = await launch(registered.ImageId!, "t3.small");
    expect(w.instances.get(next)!.noNode).toBe(true);
  });
});
