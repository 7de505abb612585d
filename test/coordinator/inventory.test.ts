/**
 * The agent's inventory in the coordinator, in process (test/support/in-process.ts: localcloud
 * without a runtime, the coordinator in this process, a fake agent per instance speaking the real
 * protocol): a kept volume filled past 90% raises one event and the usage gauge, and an event again
 * only after it fell back below; a volume attached by hand in EC2 that the spec does not list, and a
 * kept volume not mounted where the spec says, each raise an event; `describe --json` and the API
 * show the latest inventory; an inventory naming another instance, or a malformed one, changes
 * nothing. Nothing the inventory says attaches, detaches or deletes anything.
 *
 * The agent's own collection (df, lsblk, statfs, interfaces) is agent/storage/inventory.test.ts's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSpec } from "../../shared/spec.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { until } from "./harness.js";

let h: InProcess;

beforeAll(async () => {
  h = await startInProcess({ prefix: "spotkeep-inproc-inventory-", timeScale: 0.02 });
});
afterAll(async () => {
  await h?.stop();
});

const GiB = 1024 ** 3;

async function served(name: string) {
  const { workflowId } = await h.coord.views.createInstance(
    parseSpec({ ...h.spec(name), persistence: { ...h.spec(name).persistence, root: false } }),
  );
  expect((await h.coord.engine.wait(workflowId)).error).toBeNull();
  const d = (await h.coord.views.getInstance(name))!;
  const agent = await until(`${name}'s agent`, async () => h.agents.get(d.instanceId!));
  return { instanceId: d.instanceId!, volumeId: d.resources.volumes[0]!.volumeId!, az: d.availabilityZone!, agent };
}

function inventory(instanceId: string, o: { devices: unknown[]; filesystems?: unknown[] }) {
  return {
    type: "inventory",
    instanceId,
    instanceType: "m5.large",
    availabilityZone: "us-east-1a",
    imageId: h.env.lc.world.baseImageId,
    enis: [],
    networkInterfaces: [{ name: "ens5", mac: "0e:49:61:0f:c3:11", addresses: ["10.0.1.10/24"] }],
    ...o,
  };
}

const dataDevice = (volumeId: string, mountPoint = "/data") => ({
  device: "/dev/nvme1n1",
  volumeId,
  requestedName: "/dev/sdf",
  mountPoint,
  fsType: "ext4",
  kind: "block",
});
const dataFs = (volumeId: string, usedGiB: number) => ({
  device: "/dev/nvme1n1",
  volumeId,
  mountPoint: "/data",
  fsType: "ext4",
  sizeBytes: 10 * GiB,
  usedBytes: usedGiB * GiB,
  availableBytes: (10 - usedGiB) * GiB,
});

const events = async (name: string, kind: string) => (await h.coord.store.events.list(name, 1000)).filter((e) => e.kind === kind);
const gauge = async (name: string) => {
  const m = new RegExp(`^spotkeep_volume_used_ratio\\{instance="${name}",device="/dev/sdf"\\} (\\S+)$`, "m").exec(
    await h.coord.metrics.text(),
  );
  return m ? Number(m[1]) : null;
};
/** Resolves once the coordinator has recorded an inventory of `name` received after `after` (ISO). */
const recorded = (name: string, after: string) =>
  until(`${name}'s inventory recorded`, async () => {
    const d = await h.api("GET", `instances/${name}`);
    return d.body.inventory && d.body.inventory.receivedAt > after ? d.body.inventory : undefined;
  });

describe("the coordinator reads the agent's inventory", () => {
  it("a kept volume filled past 90% raises the event and the metric once; below again clears it; describe --json shows the inventory", async () => {
    const { instanceId, volumeId, agent } = await served("fill");
    let since = new Date(0).toISOString();
    const send = async (usedGiB: number) => {
      agent.send(inventory(instanceId, { devices: [dataDevice(volumeId)], filesystems: [dataFs(volumeId, usedGiB)] }));
      since = (await recorded("fill", since)).receivedAt;
    };
    await send(5);
    expect(await gauge("fill")).toBe(0.5);
    expect(await events("fill", "volume-usage-high")).toEqual([]);

    await send(9.5);
    expect(await gauge("fill")).toBe(0.95);
    const high = await events("fill", "volume-usage-high");
    expect(high.map((e) => e.message)).toEqual([
      `${instanceId}: /dev/sdf (${volumeId}) on /data is 95% full, at or past the 90% threshold`,
    ]);
    // Still full: no second event.
    await send(9.6);
    expect(await events("fill", "volume-usage-high")).toHaveLength(1);
    // Below again: cleared, and the next crossing is raised again.
    await send(4);
    expect((await events("fill", "volume-usage-normal")).map((e) => e.message)).toEqual([
      `${instanceId}: /dev/sdf is 40% full, below the threshold again`,
    ]);
    await send(9.2);
    expect(await events("fill", "volume-usage-high")).toHaveLength(2);
    expect(await gauge("fill")).toBeCloseTo(0.92, 5);

    const cli = await h.cli("describe", "fill", "--json");
    expect(cli.code).toBe(0);
    const inv = JSON.parse(cli.stdout).inventory;
    expect(inv).toMatchObject({
      generation: 1,
      instanceId,
      filesystems: [{ mountPoint: "/data", volumeId, sizeBytes: 10 * GiB, usedRatio: expect.closeTo(0.92, 5) }],
      networkInterfaces: [{ name: "ens5", mac: "0e:49:61:0f:c3:11", addresses: ["10.0.1.10/24"] }],
      devices: [expect.objectContaining({ volumeId, mountPoint: "/data" })],
    });
    const text = await h.cli("describe", "fill");
    expect(text.stdout).toMatch(/FILESYSTEMS\n[^\n]*USE%\n\/data +\/dev\/nvme1n1 +vol-\S+ +ext4 +10\.0 GiB +9\.2 GiB +819\.2 MiB +92%/);
    expect(text.stdout).toMatch(/NETWORK INTERFACES\nNAME +MAC +ADDRESSES\nens5 +0e:49:61:0f:c3:11 +10\.0\.1\.10\/24/);
  });

  it("a volume attached by hand that the spec does not list raises an event, and stays attached; a kept volume mounted elsewhere raises one too", async () => {
    const { instanceId, volumeId, az, agent } = await served("extra");
    const extra = await h.env.ec2.createVolume({
      availabilityZone: az,
      sizeGiB: 1,
      tags: { "spotkeep:managed": "true", "spotkeep:instance": "by-hand", "spotkeep:workflow": "by-hand", "spotkeep:step": "1" },
    });
    await until("the extra volume available", async () => (await h.env.ec2.describeVolume(extra.volumeId))?.state === "available");
    await h.env.ec2.attachVolume(extra.volumeId, instanceId, "/dev/sdz");
    await until("the extra volume attached", async () =>
      (await h.env.ec2.describeVolume(extra.volumeId))?.attachments.some((a) => a.instanceId === instanceId && a.state === "attached"),
    );
    const extraDevice = { device: "/dev/nvme2n1", volumeId: extra.volumeId, requestedName: "/dev/sdz", kind: "block" };
    agent.send(inventory(instanceId, { devices: [dataDevice(volumeId), extraDevice], filesystems: [dataFs(volumeId, 1)] }));
    let since = (await recorded("extra", new Date(0).toISOString())).receivedAt;
    expect((await events("extra", "volume-unexpected")).map((e) => e.message)).toEqual([
      `${instanceId}: ${extra.volumeId} is attached (/dev/nvme2n1) but the spec does not list it`,
    ]);
    // Reported again: not raised again. The kept volume now mounted elsewhere is.
    agent.send(inventory(instanceId, { devices: [dataDevice(volumeId, "/mnt/elsewhere"), extraDevice] }));
    since = (await recorded("extra", since)).receivedAt;
    expect(await events("extra", "volume-unexpected")).toHaveLength(1);
    expect((await events("extra", "volume-not-mounted")).map((e) => e.message)).toEqual([
      `${instanceId}: /dev/sdf (${volumeId}) is mounted at /mnt/elsewhere; the spec mounts it at /data`,
    ]);
    // The inventory decides nothing: the hand-attached volume is still attached, the kept one too.
    const vol = await h.env.ec2.describeVolume(extra.volumeId);
    expect(vol?.attachments.map((a) => `${a.instanceId}:${a.state}`)).toEqual([`${instanceId}:attached`]);
    expect((await h.coord.views.getInstance("extra"))?.state).toBe("running");
  });

  it("an inventory naming another instance, or a malformed one, is refused and changes nothing", async () => {
    const { instanceId, volumeId, agent } = await served("liar");
    const before = await h.coord.store.counts();
    agent.send(inventory("i-0123456789abcdef0", { devices: [dataDevice(volumeId)], filesystems: [dataFs(volumeId, 9.9)] }));
    await until("the mismatch refused", async () => (await events("liar", "agent-report-dropped")).length > 0);
    expect(await h.coord.store.generations.inventory("liar", 1)).toBeNull();
    // A malformed frame (a negative byte count) closes the session, as every malformed frame does.
    agent.send({
      ...inventory(instanceId, { devices: [dataDevice(volumeId)] }),
      filesystems: [{ ...dataFs(volumeId, 9.9), usedBytes: -1 }],
    });
    expect(await agent.closed).toBe(1007);
    expect(await h.coord.metrics.text()).toMatch(/spotkeep_agent_rejections_total\{reason="malformed-frame"\} [1-9]/);
    expect(await h.coord.store.generations.inventory("liar", 1)).toBeNull();
    expect(await events("liar", "volume-usage-high")).toEqual([]);
    expect(await gauge("liar")).toBeNull();
    const after = await h.coord.store.counts();
    expect({ ...after, events: 0 }).toEqual({ ...before, events: 0 });
    expect((await h.api("GET", "instances/liar")).body.inventory).toBeNull();
  });
});
