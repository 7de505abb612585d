/**
 * Secondary ENIs through the unmodified SDK on the process runtime: AttachNetworkInterface /
 * DetachNetworkInterface with EC2's errors, the ENI in IMDS `network/interfaces/macs/` of the
 * instance it is attached to, and its link folder under the instance's SPOTKEEP_NET_DIR.
 */
import {
  AttachNetworkInterfaceCommand,
  CreateNetworkInterfaceCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSubnetsCommand,
  DetachNetworkInterfaceCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  waitUntilInstanceRunning,
  waitUntilNetworkInterfaceAvailable,
} from "@aws-sdk/client-ec2";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProcessRuntime } from "../../localcloud/runtime/process.js";
import { expectEc2Error, fast, startEnv, until, type Env } from "./helpers.js";

let env: Env;
const subnets: Record<string, string> = {};

async function launch(az: string): Promise<string> {
  const id = (
    await env.ec2.send(
      new RunInstancesCommand({
        ImageId: env.cloud.world.baseImageId,
        MinCount: 1,
        MaxCount: 1,
        InstanceType: "m5.large",
        SubnetId: subnets[az],
      }),
    )
  ).Instances![0]!.InstanceId!;
  await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
  return id;
}

async function newEni(az: string): Promise<{ id: string; mac: string; ip: string }> {
  const e = (await env.ec2.send(new CreateNetworkInterfaceCommand({ SubnetId: subnets[az] }))).NetworkInterface!;
  return { id: e.NetworkInterfaceId!, mac: e.MacAddress!, ip: e.PrivateIpAddress! };
}

async function eniState(id: string) {
  return (await env.ec2.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [id] }))).NetworkInterfaces![0]!;
}

/** GET an IMDS path as the instance does (IMDSv2 token first); null on 404. */
async function imds(instanceId: string, p: string): Promise<string | null> {
  const base = await env.cloud.world.imds!.endpointFor(instanceId);
  const token = await (
    await fetch(`${base}/latest/api/token`, { method: "PUT", headers: { "x-aws-ec2-metadata-token-ttl-seconds": "60" } })
  ).text();
  const res = await fetch(`${base}/latest/meta-data/${p}`, { headers: { "x-aws-ec2-metadata-token": token } });
  if (res.status === 404) return null;
  expect(res.status).toBe(200);
  return res.text();
}

const netDir = (id: string) => (env.cloud.runtime as ProcessRuntime).netDir(id);
const links = async (id: string) => (await readdir(netDir(id)).catch(() => [] as string[])).sort();

beforeAll(async () => {
  env = await startEnv({ runtime: "process" });
  for (const s of (await env.ec2.send(new DescribeSubnetsCommand({}))).Subnets!) subnets[s.AvailabilityZone!] = s.SubnetId!;
});
afterAll(async () => {
  await env?.stop();
});

describe("AttachNetworkInterface / DetachNetworkInterface", () => {
  it("moves an ENI between two instances: IMDS and the instance's link follow it", async () => {
    const [a, b] = await Promise.all([launch("us-east-1a"), launch("us-east-1a")]);
    const eni = await newEni("us-east-1a");
    const att = await env.ec2.send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: eni.id, InstanceId: a, DeviceIndex: 1 }));
    expect(att.AttachmentId).toMatch(/^eni-attach-[0-9a-f]{17}$/);
    expect((await eniState(eni.id)).Status).toBe("attaching");
    await until(async () => (await eniState(eni.id)).Attachment?.Status === "attached", "attached");
    expect(await eniState(eni.id)).toMatchObject({ Status: "in-use", Attachment: { InstanceId: a, DeviceIndex: 1 } });

    // IMDS of the instance it is attached to lists it by MAC, as EC2 does.
    const macs = (await imds(a, "network/interfaces/macs/"))!.split("\n");
    expect(macs).toContain(`${eni.mac}/`);
    expect(macs).toHaveLength(2);
    const under = `network/interfaces/macs/${eni.mac}`;
    expect(await imds(a, `${under}/device-number`)).toBe("1");
    expect(await imds(a, `${under}/local-ipv4s`)).toBe(eni.ip);
    expect(await imds(a, `${under}/interface-id`)).toBe(eni.id);
    expect(await imds(a, `${under}/subnet-ipv4-cidr-block`)).toBe("172.31.0.0/20");
    expect(await imds(b, under)).toBeNull();

    // The process runtime shows it to the instance as a link folder, like /sys/class/net/eth1.
    expect(await links(a)).toEqual(["eth1"]);
    expect((await readFile(path.join(netDir(a), "eth1", "address"), "utf8")).trim()).toBe(eni.mac);
    expect((await readFile(path.join(netDir(a), "eth1", "ipv4"), "utf8")).trim()).toBe(`${eni.ip}/20`);
    expect((await readFile(path.join(netDir(a), "eth1", "device-number"), "utf8")).trim()).toBe("1");

    await env.ec2.send(new DetachNetworkInterfaceCommand({ AttachmentId: att.AttachmentId! }));
    expect((await eniState(eni.id)).Status).toBe("detaching");
    expect(await imds(a, under)).toBeNull(); // gone from IMDS as soon as it is detaching
    await waitUntilNetworkInterfaceAvailable(fast(env), { NetworkInterfaceIds: [eni.id] });
    expect(await links(a)).toEqual([]);

    const att2 = await env.ec2.send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: eni.id, InstanceId: b, DeviceIndex: 1 }));
    await until(async () => (await eniState(eni.id)).Status === "in-use", "in use on b");
    expect(await imds(b, `${under}/local-ipv4s`)).toBe(eni.ip);
    expect(await links(b)).toEqual(["eth1"]);
    expect((await eniState(eni.id)).Attachment).toMatchObject({ AttachmentId: att2.AttachmentId, InstanceId: b });
    // The old attachment id is gone for good.
    await expectEc2Error(
      env.ec2.send(new DetachNetworkInterfaceCommand({ AttachmentId: att.AttachmentId! })),
      "InvalidAttachmentID.NotFound",
      400,
    );
  });

  it("frees a kept secondary ENI when its instance terminates, and unplugs its link", async () => {
    const a = await launch("us-east-1b");
    const eni = await newEni("us-east-1b");
    await env.ec2.send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: eni.id, InstanceId: a, DeviceIndex: 1 }));
    await until(async () => (await eniState(eni.id)).Status === "in-use", "in use");
    expect(await links(a)).toEqual(["eth1"]);
    await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [a] }));
    await waitUntilNetworkInterfaceAvailable(fast(env), { NetworkInterfaceIds: [eni.id] });
    expect((await eniState(eni.id)).Attachment).toBeUndefined();
    await until(async () => (await links(a)).length === 0, "link removed");
  });

  it("refuses what EC2 refuses, with EC2's codes, changing nothing", async () => {
    const [a, c] = await Promise.all([launch("us-east-1a"), launch("us-east-1c")]);
    const eni = await newEni("us-east-1a");
    const other = await newEni("us-east-1a");
    const attach = (NetworkInterfaceId: string, InstanceId: string, DeviceIndex: number) =>
      env.ec2.send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId, InstanceId, DeviceIndex }));

    // Device index 0 is the running instance's primary ENI.
    await expectEc2Error(attach(eni.id, a, 0), "InvalidParameterValue", 400);
    await expectEc2Error(attach(eni.id, a, 16), "InvalidParameterValue", 400);
    await expectEc2Error(attach(eni.id, c, 1), "InvalidParameterCombination", 400); // another AZ
    await expectEc2Error(attach("eni-nope", a, 1), "InvalidNetworkInterfaceID.Malformed", 400);
    await expectEc2Error(attach("eni-0123456789abcdef0", a, 1), "InvalidNetworkInterfaceID.NotFound", 400);
    await expectEc2Error(attach(eni.id, "i-nope", 1), "InvalidInstanceID.Malformed", 400);
    await expectEc2Error(attach(eni.id, "i-0123456789abcdef0", 1), "InvalidInstanceID.NotFound", 400);
    expect((await eniState(eni.id)).Status).toBe("available");

    const att = await attach(eni.id, a, 1);
    await expectEc2Error(attach(eni.id, a, 2), "InvalidNetworkInterface.InUse", 400); // attaching already
    await expectEc2Error(attach(other.id, a, 1), "InvalidParameterValue", 400); // device index in use
    await until(async () => (await eniState(eni.id)).Status === "in-use", "in use");
    await expectEc2Error(attach(eni.id, c, 1), "InvalidNetworkInterface.InUse", 400);

    const detach = (AttachmentId: string) => env.ec2.send(new DetachNetworkInterfaceCommand({ AttachmentId }));
    await expectEc2Error(detach("eni-attach-0123456789abcdef0"), "InvalidAttachmentID.NotFound", 400);
    await expectEc2Error(detach("attach-1"), "InvalidAttachmentID.Malformed", 400);
    const primary = (
      await env.ec2.send(
        new DescribeNetworkInterfacesCommand({
          Filters: [
            { Name: "attachment.instance-id", Values: [a] },
            { Name: "attachment.device-index", Values: ["0"] },
          ],
        }),
      )
    ).NetworkInterfaces![0]!;
    await expectEc2Error(detach(primary.Attachment!.AttachmentId!), "OperationNotPermitted", 400);
    expect(await eniState(eni.id)).toMatchObject({ Status: "in-use", Attachment: { AttachmentId: att.AttachmentId } });
    expect(await links(a)).toEqual(["eth1"]);

    // An ENI cannot go to a terminated instance.
    await env.ec2.send(new TerminateInstancesCommand({ InstanceIds: [c] }));
    const lone = await newEni("us-east-1c");
    await until(async () => env.cloud.world.instances.get(c)?.state === "terminated", "terminated");
    await expectEc2Error(attach(lone.id, c, 1), "IncorrectState", 400);
  });
});
