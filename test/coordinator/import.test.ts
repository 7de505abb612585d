/**
 * `spotkeep import` in process (test/support/in-process.ts: localcloud without a runtime, the
 * coordinator in this process, a fake agent per instance, the shipped IAM policy, the CLI in
 * process): an on-demand instance launched directly with the SDK (its own user-data, a chosen
 * private IP, a data volume) is planned with --dry-run (nothing changes), refused where it must be,
 * rolled back when a step fails before its termination, then imported for real: it runs on spot as
 * generation 1 with the same ENI, IP and volume, and an interruption is recovered as usual.
 *
 * What the instance itself holds is test/coordinator/import-root.test.ts's (process runtime, real
 * agent): the data volume's content on generations 1 and 2, the original's root carried as an image
 * and its own user-data run again after spotkeep's bootstrap, also for a one-time spot instance
 * captured after its termination. Every acknowledged record across an import whose coordinator is
 * killed at each step is test/coordinator/crash-import.test.ts's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  AttachNetworkInterfaceCommand,
  AttachVolumeCommand,
  CreateNetworkInterfaceCommand,
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeVolumesCommand,
  EC2Client,
  RunInstancesCommand,
} from "@aws-sdk/client-ec2";
import { sweepExpiredKept } from "../../coordinator/kept.js";
import { parseSpec } from "../../shared/spec.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { COORDINATOR_POLICY, liveInstances, until } from "./harness.js";

const NAME = "adopted";
let h: InProcess;
let sdk: EC2Client;
let original: { instanceId: string; privateIp: string; eniId: string; dataVolume: string; rootVolume: string };

/** Runs on every boot of the original and of every generation (after the agent restored storage). */
const USER_DATA = `R="\${SPOTKEEP_ROOT_DIR:-}"
mkdir -p "$R/etc"
echo "$SPOTKEEP_INSTANCE_ID" >> "$R/etc/user-data-runs"
`;

const api = (method: string, path: string, body?: unknown) => h.api(method, path, body);

/** The CLI in process; the overrides it reads from a file (-f FILE) rather than stdin. */
async function cli(args: string[], overridesJson?: string) {
  const file = join(h.dir, `overrides-${Math.random().toString(36).slice(2)}.json`);
  if (overridesJson !== undefined) writeFileSync(file, overridesJson);
  return h.cli(...args.map((a) => (a === "-" ? file : a)));
}

/** Launch the way a user does, outside spotkeep: no spotkeep tags, nothing of spotkeep's policy in the way. */
async function launchByHand(o: {
  imageId: string;
  privateIp?: string;
  dataVolume?: boolean;
  spot?: boolean;
  subnetId?: string;
}): Promise<string> {
  await h.env.control("DELETE", "iam/policy");
  try {
    const subnet = [...h.env.lc.world.subnets.values()].find((s) => s.id === (o.subnetId ?? h.env.subnets[0]!.id))!;
    const out = await sdk.send(
      new RunInstancesCommand({
        ImageId: o.imageId,
        InstanceType: "m5.large",
        MinCount: 1,
        MaxCount: 1,
        SubnetId: subnet.id,
        PrivateIpAddress: o.privateIp,
        KeyName: "localcloud-key",
        UserData: Buffer.from(USER_DATA).toString("base64"),
        BlockDeviceMappings: o.dataVolume
          ? [{ DeviceName: "/dev/sdf", Ebs: { VolumeSize: 2, VolumeType: "gp3", DeleteOnTermination: true } }]
          : undefined,
        TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "team", Value: "payments" }] }],
        InstanceMarketOptions: o.spot ? { MarketType: "spot" } : undefined,
      }),
    );
    const id = out.Instances![0]!.InstanceId!;
    await until(`${id} running`, async () => (await h.env.ec2.describeInstances([id]))[0]?.state === "running", 60_000);
    return id;
  } finally {
    await h.env.control("PUT", "iam/policy", JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")));
  }
}

/** What an import could change, as EC2 reports it: states, tags, DeleteOnTermination flags. */
async function ec2State(instanceId: string) {
  const inst = (await sdk.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))).Reservations![0]!.Instances![0]!;
  const volIds = inst.BlockDeviceMappings!.map((b) => b.Ebs!.VolumeId!);
  const vols = (await sdk.send(new DescribeVolumesCommand({ VolumeIds: volIds }))).Volumes!;
  const enis = (
    await sdk.send(new DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [inst.NetworkInterfaces![0]!.NetworkInterfaceId!] }))
  ).NetworkInterfaces!;
  const tags = (t?: Array<{ Key?: string; Value?: string }>) => Object.fromEntries((t ?? []).map((x) => [x.Key, x.Value]));
  return {
    state: inst.State!.Name,
    tags: tags(inst.Tags),
    blockDevices: inst.BlockDeviceMappings!.map((b) => [b.DeviceName, b.Ebs!.VolumeId, b.Ebs!.DeleteOnTermination]),
    volumes: vols.map((v) => [v.VolumeId, v.State, tags(v.Tags)]).sort(),
    eni: enis.map((e) => [e.NetworkInterfaceId, e.Status, e.Attachment?.DeleteOnTermination, tags(e.TagSet)]),
    images: [...h.env.lc.world.images.values()].filter((i) => i.state !== "failed").length,
    snapshots: [...h.env.lc.world.snapshots.values()].length,
  };
}

const overrides = {
  persistence: { volumes: [{ device: "/dev/sdf", mountPoint: "/data" }] },
  launch: { instanceTypes: ["m5.large", "m6i.large"] },
};

beforeAll(async () => {
  h = await startInProcess({ prefix: "spotkeep-inproc-import-" });
  const { env } = h;
  sdk = new EC2Client({ endpoint: env.lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "x" } });
  const subnet = [...h.env.lc.world.subnets.values()].find((s) => s.id === env.subnets[0]!.id)!;
  const privateIp = subnet.cidr.replace(/\.0\/\d+$/, ".57");
  const id = await launchByHand({ imageId: env.lc.world.baseImageId, privateIp, dataVolume: true });
  const [inst] = await env.ec2.describeInstances([id]);
  original = {
    instanceId: id,
    privateIp,
    eniId: inst!.enis[0]!.eniId,
    rootVolume: inst!.volumes.find((v) => v.deviceName === inst!.rootDeviceName)!.volumeId,
    dataVolume: inst!.volumes.find((v) => v.deviceName === "/dev/sdf")!.volumeId,
  };
  expect(inst!.privateIp).toBe(privateIp);
});

afterAll(async () => {
  sdk?.destroy();
  await h?.stop();
});

describe("spotkeep import", () => {
  it("--dry-run prints the discovered spec and the plan, and changes nothing", async () => {
    const before = await ec2State(original.instanceId);
    const r = await cli(["import", original.instanceId, "--name", NAME, "--dry-run", "-f", "-"], JSON.stringify(overrides));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`imageId: ${h.env.lc.world.baseImageId}`);
    expect(r.stdout).toContain(`volumeId: ${original.dataVolume}`);
    expect(r.stdout).toContain("mountPoint: /data");
    expect(r.stdout).toContain("keyName: localcloud-key");
    expect(r.stdout).toMatch(/team: payments/);
    expect(r.stdout).toMatch(/# {2}\d+\. stop i-/);
    expect(r.stdout).toContain(`${original.eniId} (${original.privateIp}) at device index 0`);
    // This coordinator serves no runtime (its config has none): the plan says what that means.
    expect(r.stdout).toMatch(
      /# {2}\d+\. the agent runs on the image's own node when it is Node\.js 20\.19 or later; this coordinator serves no runtime for linux-x64, so an image without one cannot start the agent/,
    );
    expect(await ec2State(original.instanceId)).toEqual(before);
    expect(await h.coord.views.getInstance(NAME)).toBeNull();
  });

  it("refuses with a specific reason: unknown instance, a second ENI, Windows, bad overrides, bad bodies", async () => {
    expect((await api("POST", "import", { instanceId: "i-0000000000000dead", name: NAME })).status).toBe(404);
    // Without overrides the data volume is adopted to be attached only: the plan says so.
    const noMount = await api("POST", "import", { instanceId: original.instanceId, name: NAME, dryRun: true });
    expect(noMount.status).toBe(200);
    expect(noMount.body.steps.join("\n")).toMatch(/at \/dev\/sdf; no mountPoint given, so the agent reports it attached but not mounted/);
    const bad = await api("POST", "import", {
      instanceId: original.instanceId,
      name: NAME,
      overrides: { ...overrides, launch: { subnetIds: [h.env.subnets[1]!.id] } },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/overrides\.launch\.subnetIds: comes from the instance/);
    for (const body of [
      { name: NAME },
      { instanceId: "i-zz", name: NAME },
      { instanceId: original.instanceId, name: "Bad Name" },
      { instanceId: original.instanceId, name: NAME, dryRun: "yes" },
      { instanceId: original.instanceId, name: NAME, extra: 1 },
    ]) {
      const r = await api("POST", "import", body);
      expect(r.status, JSON.stringify(body)).toBe(400);
    }
    // A second ENI cannot be carried to the next generation: refused, naming it.
    const twoEnis = await launchByHand({ imageId: h.env.lc.world.baseImageId });
    await h.env.control("DELETE", "iam/policy");
    let extraEni: string;
    try {
      extraEni = (await sdk.send(new CreateNetworkInterfaceCommand({ SubnetId: h.env.subnets[0]!.id }))).NetworkInterface!
        .NetworkInterfaceId!;
      await sdk.send(new AttachNetworkInterfaceCommand({ NetworkInterfaceId: extraEni, InstanceId: twoEnis, DeviceIndex: 1 }));
    } finally {
      await h.env.control("PUT", "iam/policy", JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")));
    }
    await until("the second ENI attached", async () => (await h.env.ec2.describeNetworkInterface(extraEni))?.attachedTo === twoEnis);
    const eni = await api("POST", "import", { instanceId: twoEnis, name: "two-enis" });
    expect(eni.status).toBe(400);
    expect(eni.body.error.message).toContain(`has 2 network interfaces (${extraEni} at device index 1)`);
    const windows = await launchByHand({ imageId: h.env.lc.world.windowsImageId });
    const w = await api("POST", "import", { instanceId: windows, name: "win" });
    expect(w.status).toBe(400);
    expect(w.body.error.message).toMatch(/runs Windows, which spotkeep does not support yet/);
    expect(await h.coord.views.getInstance(NAME)).toBeNull();
  });

  it("a failure before the termination rolls back: running again, flags and tags as they were, nothing left", async () => {
    const before = await ec2State(original.instanceId);
    expect(before.blockDevices.map((b) => b[2])).toEqual([true, true]);
    await h.env.control("PUT", "faults", {
      failNext: [{ action: "CreateSnapshot", code: "InvalidParameterValue", count: 1, message: "injected" }],
    });
    const started = await api("POST", "import", { instanceId: original.instanceId, name: NAME, overrides });
    expect(started.status).toBe(202);
    const wf = await h.coord.engine.wait(started.body.workflowId);
    expect(wf.status).toBe("failed");
    const steps = (await h.coord.store.steps.list(wf.id)).map((s) => s.name);
    expect(steps).toEqual(expect.arrayContaining(["adopt", "keep-volumes", "keep-eni", "stop", "snapshot-root", "rollback", "abandon"]));
    expect(steps).not.toContain("terminate-original");
    await until("the original running again", async () => (await ec2State(original.instanceId)).state === "running");
    expect(await ec2State(original.instanceId)).toEqual(before);
    // The record is archived with its history; the name is free again.
    expect(await h.coord.views.getInstance(NAME)).toBeNull();
    const archived = (await h.coord.views.listInstances({ includeDeleted: true })).find((i) => i.name.startsWith(`${NAME}~`));
    expect(archived?.stateReason).toMatch(/import rolled back: .*injected/);
    const events = (await h.coord.views.getEvents(archived!.name))!.events;
    expect(events.find((e) => e.kind === "import-rolled-back")?.message).toMatch(/flags restored.*runs again/);
  });

  it("imports for real: generation 1 on spot with the same ENI, IP, data volume and content; its user-data ran", async () => {
    const r = await cli(["import", original.instanceId, "--name", NAME, "-f", "-", "--wait", "--json"], JSON.stringify(overrides));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.workflow.status).toBe("succeeded");
    const d = (await h.coord.views.getInstance(NAME))!;
    expect(d).toMatchObject({ state: "running", generation: 1, privateIp: original.privateIp, lifecycle: "spot" });
    expect(d.instanceId).not.toBe(original.instanceId);
    const [gen1] = await h.env.ec2.describeInstances([d.instanceId!]);
    expect(gen1!.enis).toEqual([{ eniId: original.eniId, deviceIndex: 0 }]);
    expect(gen1!.volumes.find((v) => v.deviceName === "/dev/sdf")?.volumeId).toBe(original.dataVolume);
    expect((await h.env.ec2.describeInstances([original.instanceId]))[0]?.state).toBe("terminated");
    // The root came over as an image of the original's root.
    expect(d.resources.root.imageId).toMatch(/^ami-/);
    expect(d.resources.root.imageId).not.toBe(h.env.lc.world.baseImageId);
    expect(gen1!.imageId).toBe(d.resources.root.imageId);
    // Its agent connected and reported ready.
    expect(await h.coord.store.agentReports.latest(d.instanceId!, "ready")).toBeTruthy();
    // Nothing left behind: the original root volume was deleted once generation 1 served.
    const vol = await h.env.ec2.describeVolume(original.rootVolume);
    expect(vol === null || vol.state === "deleted" || vol.state === "deleting").toBe(true);
    const steps = (await h.coord.store.steps.list(out.workflowId)).map((s) => s.name);
    expect(steps.indexOf("stop")).toBeLessThan(steps.indexOf("terminate-original"));
    expect(steps.slice(-2)).toEqual(["delete-old-root", "retention"]);
    // Every managed resource carries the instance's tag (the IAM policy relies on it).
    const tagged = (await h.env.ec2.findVolumes({ "spotkeep:instance": NAME })).map((v) => v.volumeId);
    expect(tagged).toContain(original.dataVolume);
  });

  it("an imported instance cannot be imported twice", async () => {
    const d = (await h.coord.views.getInstance(NAME))!;
    const r = await api("POST", "import", { instanceId: d.instanceId, name: "again", overrides });
    expect(r.status).toBe(409);
    expect(r.body.error.message).toMatch(/already managed by spotkeep \(stateful instance adopted\)/);
  });

  it("then an interruption is recovered as usual", async () => {
    const old = (await h.coord.views.getInstance(NAME))!;
    await h.env.control("POST", `instances/${old.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await until(
      "the replacement",
      async () => (await h.coord.store.workflows.listFor(NAME)).find((w) => w.kind === "replace"),
      60_000,
    );
    expect((await h.coord.engine.wait(wf.id)).error).toBeNull();
    const d = (await h.coord.views.getInstance(NAME))!;
    expect(d).toMatchObject({ state: "running", generation: 2, privateIp: original.privateIp });
    expect(d.resources.volumes[0]?.volumeId).toBe(original.dataVolume);
    expect((await liveInstances(h.env, NAME)).map((i) => i.instanceId)).toEqual([d.instanceId]);
  });

  it("a one-time spot instance (which cannot be stopped) is captured after its termination instead", async () => {
    const id = await launchByHand({ imageId: h.env.lc.world.baseImageId, spot: true, dataVolume: true });
    const [inst] = await h.env.ec2.describeInstances([id]);
    const started = await api("POST", "import", { instanceId: id, name: "spotty" });
    expect(started.status).toBe(202);
    expect(started.body.steps.join("\n")).toMatch(/cannot be stopped/);
    const wf = await h.coord.engine.wait(started.body.workflowId);
    expect(wf.error).toBeNull();
    const steps = (await h.coord.store.steps.list(wf.id)).map((s) => s.name);
    expect(steps).not.toContain("stop");
    expect(steps.indexOf("terminate-original")).toBeLessThan(steps.indexOf("snapshot-root"));
    const d = (await h.coord.views.getInstance("spotty"))!;
    expect(d).toMatchObject({ state: "running", generation: 1, privateIp: inst!.privateIp, lifecycle: "spot" });
    const events = (await h.coord.views.getEvents("spotty"))!.events;
    expect(events.some((e) => e.kind === "root-captured" && /after its termination \(crash-consistent\)/.test(e.message))).toBe(true);
    // No overrides: its data volume came along attached but not mounted, and the timeline says where it is.
    expect(d.resources.volumes).toMatchObject([{ device: "/dev/sdf", mountPoint: null }]);
    const [gen1] = await h.env.ec2.describeInstances([d.instanceId!]);
    expect(gen1!.volumes.find((v) => v.deviceName === "/dev/sdf")?.volumeId).toBe(d.resources.volumes[0]!.volumeId);
    expect(events.find((e) => e.kind === "not-mounted")?.message).toMatch(/\(\/dev\/sdf\) is attached to i-\w+ as \S+ but not mounted/);
  });

  it("create adopting a volume by id launches generation 1 in that volume's AZ, not the first subnet's", async () => {
    const az = h.env.subnets[1]!.az;
    expect(az).not.toBe(h.env.subnets[0]!.az);
    const tags = { "spotkeep:managed": "true", "spotkeep:instance": "by-id", "spotkeep:workflow": "test", "spotkeep:step": "adopt" };
    const vol = await h.env.ec2.createVolume({ availabilityZone: az, sizeGiB: 1, tags });
    await until("the volume", async () => (await h.env.ec2.describeVolume(vol.volumeId))?.state === "available");
    const input = h.spec("by-id");
    input.persistence!.volumes![0]!.volumeId = vol.volumeId;
    const { workflowId } = await h.coord.views.createInstance(parseSpec(input));
    expect((await h.coord.engine.wait(workflowId)).error).toBeNull();
    const d = (await h.coord.views.getInstance("by-id"))!;
    expect(d.availabilityZone).toBe(az);
    expect((await h.env.ec2.describeVolume(vol.volumeId))?.attachments.map((a) => a.instanceId)).toEqual([d.instanceId]);
  });

  it("create refuses adopted volumes in two AZs, naming them", async () => {
    const tags = { "spotkeep:managed": "true", "spotkeep:instance": "two-azs", "spotkeep:workflow": "test", "spotkeep:step": "adopt" };
    const a = await h.env.ec2.createVolume({ availabilityZone: h.env.subnets[0]!.az, sizeGiB: 1, tags });
    const b = await h.env.ec2.createVolume({ availabilityZone: h.env.subnets[1]!.az, sizeGiB: 1, tags: { ...tags, "spotkeep:step": "b" } });
    const input = h.spec("two-azs", { volumes: 2 });
    input.persistence!.volumes![0]!.volumeId = a.volumeId;
    input.persistence!.volumes![1]!.volumeId = b.volumeId;
    const { workflowId } = await h.coord.views.createInstance(parseSpec(input));
    const wf = await h.coord.engine.wait(workflowId);
    expect(wf.error).toMatch(/the adopted volumes are in different AZs/);
    expect(wf.error).toContain(a.volumeId);
    expect(wf.error).toContain(b.volumeId);
  });

  it("a kept volume attached to another instance is refused at import, adopted when asked, and survives that instance's pause past the TTL (regression: the TTL sweep deleted it)", async () => {
    const { workflowId } = await h.coord.views.createInstance(parseSpec(h.spec("old-db", { root: false })));
    expect((await h.coord.engine.wait(workflowId)).error).toBeNull();
    const volumeId = (await h.coord.store.volumes.list("old-db"))[0]!.volumeId!;
    // Deleted, its volume kept for 0.2 model hours (720 model seconds: long enough for the attach and import below).
    const del = await api("DELETE", "instances/old-db?keep=volumes&ttlHours=0.2");
    expect(del.status, JSON.stringify(del.body)).toBe(202);
    expect((await h.coord.engine.wait(del.body.workflowId)).status).toBe("succeeded");
    const archived: string = del.body.archivedAs;
    const kept = async () => (await h.coord.store.deletions.kept(archived)).find((k) => k.resourceId === volumeId)!;
    expect((await kept()).expiresAt).not.toBeNull();

    // Attached by hand to another instance in its AZ (the deleted instance's spotkeep:instance tag still on it).
    const az = (await h.env.ec2.describeVolume(volumeId))!.availabilityZone;
    const other = await launchByHand({ imageId: h.env.lc.world.baseImageId, subnetId: h.env.subnets.find((s) => s.az === az)!.id });
    await h.env.control("DELETE", "iam/policy");
    try {
      await sdk.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: other, Device: "/dev/sdf" }));
    } finally {
      await h.env.control("PUT", "iam/policy", JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")));
    }
    await until("the kept volume attached", async () => (await h.env.ec2.describeVolume(volumeId))?.attachments[0]?.state === "attached");

    // Ownership is the store's: refused, naming the deleted owner, unless adopted explicitly.
    const refused = await api("POST", "import", { instanceId: other, name: "new-db", overrides });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toMatch(new RegExp(`volume ${volumeId} is kept by deleted stateful instance old-db~.*--adopt-kept`));
    const plan = await api("POST", "import", { instanceId: other, name: "new-db", overrides, adoptKept: true, dryRun: true });
    expect(plan.body.steps[0]).toMatch(new RegExp(`adopt volume ${volumeId}, kept by deleted stateful instance old-db~`));
    const started = await api("POST", "import", { instanceId: other, name: "new-db", overrides, adoptKept: true });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    expect((await h.coord.engine.wait(started.body.workflowId)).error).toBeNull();
    expect((await kept()).adoptedBy).toBe("new-db");
    expect((await h.env.ec2.describeVolume(volumeId))!.tags["spotkeep:expires-at"]).toBeUndefined();

    // Paused: the volume is detached from everything while the TTL passes.
    const pause = await h.coord.operations.run("new-db", "pause");
    expect((await h.coord.engine.wait(pause.workflowId)).status).toBe("succeeded");
    expect((await h.env.ec2.describeVolume(volumeId))!.attachments).toEqual([]);
    const expiresAt = (await kept()).expiresAt!;
    await until("the kept volume's TTL to pass", async () => Date.now() > expiresAt + 500);
    // A sweep now (the schedule's own passes run too) leaves it: the volume is new-db's.
    expect(
      await sweepExpiredKept({ store: h.coord.store, ec2: h.env.ec2, clock: { now: () => Date.now() }, log: () => undefined }),
    ).toEqual([]);
    expect((await h.env.ec2.describeVolume(volumeId))?.state).toBe("available");
    expect((await kept()).deletedAt).toBeNull();

    const resume = await h.coord.operations.run("new-db", "resume");
    expect((await h.coord.engine.wait(resume.workflowId)).error).toBeNull();
    const d = (await h.coord.views.getInstance("new-db"))!;
    expect(d.state).toBe("running");
    expect((await h.env.ec2.describeVolume(volumeId))!.attachments.map((a) => a.instanceId)).toEqual([d.instanceId]);
  }, 240_000);
});
