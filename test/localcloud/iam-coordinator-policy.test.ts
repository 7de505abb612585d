/**
 * The shipped coordinator policy (docs/iam/coordinator-policy.json) against localcloud's IAM
 * enforcement, through the coordinator's own EC2 gateway: every operation the gateway performs is
 * allowed, and removing any one statement makes the operations that need it fail with
 * UnauthorizedOperation (the policy holds nothing that is not needed). The same for the load-balancer
 * gateway's ELBv2 calls (refused with ELBv2's AccessDenied).
 */
import { CreateTagsCommand, EC2Client } from "@aws-sdk/client-ec2";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAwsGateway, GATEWAY_ACTIONS } from "../../coordinator/cloud/aws.js";
import type { Ec2Gateway, Tags } from "../../coordinator/cloud/gateway.js";
import { errorCode } from "../../coordinator/cloud/errors.js";
import { createElbGateway, type ElbGateway } from "../../coordinator/elb/elbv2.js";
import { createKmsGateway } from "../../coordinator/kms/kms.js";
import { startLocalCloud, type LocalCloud } from "../../localcloud/index.js";

const ROOT = join(import.meta.dirname, "..", "..");
const POLICY = JSON.parse(readFileSync(join(ROOT, "docs", "iam", "coordinator-policy.json"), "utf8")) as {
  Version: string;
  Statement: Array<{ Sid: string; Action: string[] }>;
};

let lc: LocalCloud;
let gw: Ec2Gateway;
let elb: ElbGateway;
let n = 0;

/** CreateTags on existing resources, through the gateway's tagResources where it has one. */
async function retag(ids: string[], t: Tags): Promise<void> {
  const g = gw as Ec2Gateway & { tagResources?: (ids: string[], tags: Tags) => Promise<void> };
  if (g.tagResources) return g.tagResources(ids, t);
  const client = new EC2Client({
    endpoint: lc.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "x", secretAccessKey: "x" },
    maxAttempts: 1,
  });
  try {
    await client.send(new CreateTagsCommand({ Resources: ids, Tags: Object.entries(t).map(([Key, Value]) => ({ Key, Value })) }));
  } finally {
    client.destroy();
  }
}

async function control(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${lc.controlUrl}/${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

const tags = (step: string): Tags => ({
  "spotkeep:managed": "true",
  "spotkeep:instance": "iam-db",
  "spotkeep:workflow": `wf-${++n}`,
  "spotkeep:step": step,
});

async function waitFor<T>(what: string, f: () => Promise<T | null | undefined | false>): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = await f();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Resources made under the full policy, one per probe that consumes or needs one. */
interface Fixture {
  subnetId: string;
  az: string;
  eniForLaunch: string;
  instance: string;
  attachedVolume: string;
  freeVolume: string;
  volumeToDelete: string;
  rootSnapshot: string;
  snapshotToDelete: string;
  imageToDeregister: string;
  instanceToTerminate: string;
  /** On-demand, managed: one running (to stop), one stopped (to start). */
  instanceToStop: string;
  instanceToStart: string;
  /** An instance launched outside spotkeep (no tags), with its root volume and ENI: what an import adopts. */
  foreign: { instance: string; rootVolume: string; eni: string };
  /** The managed instance's primary ENI and its attachment. */
  eniAttachment: { eniId: string; attachmentId: string };
  /** A target group (made inside localcloud: the coordinator never creates one) with `instance` registered. */
  targetGroup: string;
  /** A managed ENI, free, and one attached to `instance` at device index 1. */
  freeEni: string;
  secondaryEni: string;
  /** A customer-managed KMS key (made through the control API). */
  keyArn: string;
}

async function fixture(): Promise<Fixture> {
  const subnet = [...lc.world.subnets.values()].find((s) => s.defaultForAz)!;
  const az = subnet.az;
  const eni = await gw.createNetworkInterface({ subnetId: subnet.id, securityGroupIds: [], description: "iam", tags: tags("eni") });
  const eniForLaunch = await gw.createNetworkInterface({
    subnetId: subnet.id,
    securityGroupIds: [],
    description: "iam",
    tags: tags("eni"),
  });
  const inst = await gw.launchInstance({
    clientToken: `ct-${++n}`,
    imageId: lc.world.baseImageId,
    instanceType: "m5.large",
    market: "spot",
    network: { eniId: eni.eniId },
    userData: "",
    blockDevices: [],
    tags: tags("launch"),
  });
  await waitFor("running", async () => (await gw.describeInstances([inst.instanceId]))[0]?.state === "running");
  const vol = (step: string) => gw.createVolume({ availabilityZone: az, sizeGiB: 1, tags: tags(step) });
  const attached = await vol("attached");
  await waitFor("available", async () => (await gw.describeVolume(attached.volumeId))?.state === "available");
  await gw.attachVolume(attached.volumeId, inst.instanceId, "/dev/sdf");
  await waitFor("attached", async () => (await gw.describeVolume(attached.volumeId))?.attachments[0]?.state === "attached");
  const free = await vol("free");
  const toDelete = await vol("delete");
  const rootVol = (await gw.describeInstances([inst.instanceId]))[0]!.volumes[0]!.volumeId;
  const rootSnap = await gw.createSnapshot(rootVol, "root", tags("root-snap"));
  await waitFor("completed", async () => (await gw.describeSnapshot(rootSnap.snapshotId))?.state === "completed");
  const snapToDelete = await gw.createSnapshot(free.volumeId, "x", tags("snap-delete"));
  const image = await gw.registerImage({
    name: `iam-image-${++n}`,
    rootSnapshotId: rootSnap.snapshotId,
    rootDeviceName: "/dev/xvda",
    architecture: "x86_64",
    tags: tags("image"),
  });
  const onDemand = () =>
    gw.launchInstance({
      clientToken: `ct-${++n}`,
      imageId: lc.world.baseImageId,
      instanceType: "m5.large",
      market: "on-demand",
      network: { subnetId: subnet.id, securityGroupIds: [] },
      userData: "",
      blockDevices: [],
      tags: tags("launch"),
    });
  const other = await onDemand();
  const toStop = await onDemand();
  const toStart = await onDemand();
  const running = (id: string) => waitFor(`${id} running`, async () => (await gw.describeInstances([id]))[0]?.state === "running");
  await running(toStop.instanceId);
  await running(toStart.instanceId);
  await gw.stopInstance(toStart.instanceId);
  await waitFor("stopped", async () => (await gw.describeInstances([toStart.instanceId]))[0]?.state === "stopped");
  // Launched the way a user launches an instance: no policy in the way, no spotkeep tags.
  await control("DELETE", "iam/policy");
  const foreign = await gw.launchInstance({
    clientToken: `ct-${++n}`,
    imageId: lc.world.baseImageId,
    instanceType: "m5.large",
    market: "on-demand",
    network: { subnetId: subnet.id, securityGroupIds: [] },
    userData: "",
    blockDevices: [],
    tags: {},
  });
  const freeEni = await gw.createNetworkInterface({ subnetId: subnet.id, securityGroupIds: [], description: "iam", tags: tags("eni") });
  const secondaryEni = await gw.createNetworkInterface({
    subnetId: subnet.id,
    securityGroupIds: [],
    description: "iam",
    tags: tags("eni"),
  });
  await gw.attachNetworkInterface(secondaryEni.eniId, inst.instanceId, 1);
  await waitFor("ENI attached", async () => (await gw.describeNetworkInterface(secondaryEni.eniId))?.attachment?.status === "attached");
  await control("PUT", "iam/policy", POLICY);
  const details = await gw.describeInstanceDetails(inst.instanceId);
  const primary = details!.networkInterfaces.find((x) => x.deviceIndex === 0)!;
  await waitFor("volumes", async () => (await gw.describeVolume(free.volumeId))?.state === "available");
  await waitFor("volumes", async () => (await gw.describeVolume(toDelete.volumeId))?.state === "available");
  const group = lc.elbv2.createTargetGroup({
    name: `iam-${++n}`,
    protocol: "HTTP",
    port: 80,
    vpcId: lc.world.defaultVpc().id,
    targetType: "instance",
    healthCheck: {},
  });
  lc.elbv2.registerTargets(group.arn, [{ id: inst.instanceId }]);
  return {
    instanceToStop: toStop.instanceId,
    instanceToStart: toStart.instanceId,
    foreign: { instance: foreign.instanceId, rootVolume: foreign.volumes[0]!.volumeId, eni: foreign.enis[0]!.eniId },
    eniAttachment: { eniId: primary.eniId, attachmentId: primary.attachmentId },
    subnetId: subnet.id,
    az,
    eniForLaunch: eniForLaunch.eniId,
    instance: inst.instanceId,
    attachedVolume: attached.volumeId,
    freeVolume: free.volumeId,
    volumeToDelete: toDelete.volumeId,
    rootSnapshot: rootSnap.snapshotId,
    snapshotToDelete: snapToDelete.snapshotId,
    imageToDeregister: image,
    instanceToTerminate: other.instanceId,
    targetGroup: group.arn,
    freeEni: freeEni.eniId,
    secondaryEni: secondaryEni.eniId,
    keyArn: (await control("POST", "kms/keys", { description: "iam" })).arn,
  };
}

/** Every gateway operation once, each on its own resources: name -> error code, or "ok". */
async function probe(f: Fixture): Promise<Record<string, string>> {
  const ops: Record<string, () => Promise<unknown>> = {
    describeImage: () => gw.describeImage(lc.world.baseImageId),
    describeInstances: () => gw.findInstances({ "spotkeep:instance": "iam-db" }),
    describeInstanceStatus: () => gw.describeInstanceStatus([f.instance, "i-0123456789abcdef0"]),
    spotRequestStatus: () => gw.spotRequestStatus(f.instance),
    // A gateway of its own: the shared one keeps a type's architectures once it has them.
    instanceTypeArchitectures: () =>
      createAwsGateway({ region: "us-east-1", endpoint: lc.endpoint, pacingHeadroom: 0, maxAttempts: 1 }).instanceTypeArchitectures!([
        "m7g.large",
        "m6i.large",
      ]),
    spotPriceHistory: () =>
      gw.describeSpotPriceHistory!({
        instanceType: "m5.large",
        availabilityZone: "us-east-1a",
        start: new Date(Date.now() - 3_600_000),
        end: new Date(),
      }),
    createNetworkInterface: () =>
      gw.createNetworkInterface({ subnetId: f.subnetId, securityGroupIds: [], description: "p", tags: tags("p") }),
    createVolume: () => gw.createVolume({ availabilityZone: f.az, sizeGiB: 1, tags: tags("p") }),
    launchWithEni: () =>
      gw.launchInstance({
        clientToken: `ct-${++n}`,
        imageId: lc.world.baseImageId,
        instanceType: "m5.large",
        market: "spot",
        network: { eniId: f.eniForLaunch },
        userData: "",
        blockDevices: [],
        tags: tags("p"),
      }),
    launchInSubnet: () =>
      gw.launchInstance({
        clientToken: `ct-${++n}`,
        imageId: lc.world.baseImageId,
        instanceType: "m5.large",
        market: "on-demand",
        network: { subnetId: f.subnetId, securityGroupIds: [] },
        userData: "",
        blockDevices: [{ deviceName: "/dev/sdg", snapshotId: f.rootSnapshot, deleteOnTermination: true }],
        tags: tags("p"),
      }),
    launchWithProfile: () =>
      gw.launchInstance({
        clientToken: `ct-${++n}`,
        imageId: lc.world.baseImageId,
        instanceType: "m5.large",
        market: "on-demand",
        network: { subnetId: f.subnetId, securityGroupIds: [] },
        userData: "",
        blockDevices: [],
        tags: tags("p"),
        iamInstanceProfile: "spotkeep-workload-db",
      }),
    createSnapshot: () => gw.createSnapshot(f.freeVolume, "p", tags("p")),
    // Disaster-recovery copies (here within the region: the same authorisation as across regions).
    copySnapshot: () =>
      gw.copySnapshot!({
        sourceRegion: "us-east-1",
        sourceSnapshotId: f.rootSnapshot,
        description: "p",
        encrypted: false,
        tags: { ...tags("p"), "spotkeep:copy-of": `${f.rootSnapshot}-${++n}` },
      }),
    copyImage: () =>
      gw.copyImage!({
        sourceRegion: "us-east-1",
        sourceImageId: f.imageToDeregister,
        name: `p-copy-${++n}`,
        description: "p",
        encrypted: false,
        clientToken: `p-copy-${n}`,
        tags: { ...tags("p"), "spotkeep:copy-of": f.imageToDeregister },
      }),
    registerImage: () =>
      gw.registerImage({
        name: `p-${++n}`,
        rootSnapshotId: f.rootSnapshot,
        rootDeviceName: "/dev/xvda",
        architecture: "x86_64",
        tags: tags("p"),
      }),
    attachVolume: () => gw.attachVolume(f.freeVolume, f.instance, "/dev/sdh"),
    attachNetworkInterface: () => gw.attachNetworkInterface(f.freeEni, f.instance, 2),
    detachNetworkInterface: () => gw.detachNetworkInterface(f.secondaryEni, f.instance),
    detachVolume: () => gw.detachVolume(f.attachedVolume, f.instance),
    deleteVolume: () => gw.deleteVolume(f.volumeToDelete),
    deleteSnapshot: () => gw.deleteSnapshot(f.snapshotToDelete),
    deregisterImage: () => gw.deregisterImage(f.imageToDeregister),
    terminateInstance: () => gw.terminateInstance(f.instanceToTerminate),
    // Retagging a managed resource (what a delete that keeps resources does to mark them).
    retagManaged: () => retag([f.freeVolume], { "spotkeep:note": "kept" }),
    // What an import does: read the instance and its user-data, adopt it, keep its disks and ENI, stop it.
    describeInstanceDetails: () => gw.describeInstanceDetails(f.instance),
    instanceUserData: () => gw.instanceUserData(f.instance),
    adoptForeign: () =>
      gw.tagResources([f.foreign.instance, f.foreign.rootVolume, f.foreign.eni], {
        "spotkeep:managed": "true",
        "spotkeep:instance": "iam-db",
      }),
    keepVolumes: () => gw.setVolumesDeleteOnTermination(f.instance, [{ deviceName: "/dev/xvda", deleteOnTermination: false }]),
    keepEni: () => gw.setEniDeleteOnTermination(f.eniAttachment.eniId, f.eniAttachment.attachmentId, false),
    stopInstance: () => gw.stopInstance(f.instanceToStop),
    startInstance: () => gw.startInstance(f.instanceToStart),
    untagManaged: () => gw.untagResources([f.attachedVolume], ["spotkeep:step"]),
    ebsDefaultEncryption: () => gw.ebsDefaultEncryption!(),
    // EC2 uses a customer-managed key for the caller only as the policy lets it through EC2; it
    // answers CreateVolume at once and drops the volume when it may not use the key.
    createEncryptedVolume: async () => {
      const v = await gw.createVolume({ availabilityZone: f.az, sizeGiB: 1, encrypted: true, kmsKeyId: f.keyArn, tags: tags("p") });
      const state = await waitFor("the encrypted volume to settle", async () => (await gw.describeVolume(v.volumeId))?.state ?? "vanished");
      if (state === "vanished" || state === "error")
        throw Object.assign(new Error(`${v.volumeId} ${state}`), { name: "KeyUnusable", Code: "KeyUnusable" });
    },
    ...elbProbes(f),
    ...kmsProbes(f),
  };
  const out: Record<string, string> = {};
  for (const [name, op] of Object.entries(ops)) {
    try {
      await op();
      out[name] = "ok";
    } catch (err) {
      out[name] = errorCode(err) ?? String(err);
    }
  }
  return out;
}

/** The load-balancer gateway's calls (a refusal is ELBv2's AccessDenied). */
const elbProbes = (f: Fixture): Record<string, () => Promise<unknown>> => ({
  describeTargetGroup: () => elb.describeTargetGroup(f.targetGroup),
  describeTargetHealth: () => elb.targetHealth(f.targetGroup, [f.instance]),
  registerTargets: () => elb.registerTargets(f.targetGroup, [f.instance]),
  deregisterTargets: () => elb.deregisterTargets(f.targetGroup, [f.instance]),
});
const ELB_PROBES = new Set(Object.keys(elbProbes({} as Fixture)));

/** The KMS gateway's call (a refusal is KMS's AccessDeniedException). */
const kmsProbes = (f: Fixture): Record<string, () => Promise<unknown>> => ({
  describeKey: () => createKmsGateway({ region: "us-east-1", endpoint: lc.endpoint, maxAttempts: 1 }).describeKey(f.keyArn),
});

/**
 * How a probe fails without statement `sid`: EC2's UnauthorizedOperation, ELBv2's AccessDenied, KMS's
 * AccessDeniedException, or, without a statement that lets EC2 use a key, the encrypted volume dropped.
 */
const deniedCode = (op: string, sid: string) =>
  ELB_PROBES.has(op)
    ? "AccessDenied"
    : op === "describeKey"
      ? "AccessDeniedException"
      : sid.startsWith("LetEc2")
        ? "KeyUnusable"
        : "UnauthorizedOperation";

const failing = (r: Record<string, string>) =>
  Object.entries(r)
    .filter(([, v]) => v !== "ok")
    .map(([k, v]) => `${k}:${v}`)
    .sort();

/** Which probes need each statement (and fail with UnauthorizedOperation without it). */
const NEEDS: Record<string, string[]> = {
  ReadInventory: [
    "copyImage",
    "copySnapshot",
    "createEncryptedVolume",
    "createNetworkInterface",
    "createSnapshot",
    "createVolume",
    "describeImage",
    "describeInstanceDetails",
    "describeInstanceStatus",
    "describeInstances",
    "ebsDefaultEncryption",
    "instanceTypeArchitectures",
    "instanceUserData",
    // It reads the attachment id first (DetachNetworkInterface takes it, not the ENI id).
    "detachNetworkInterface",
    "registerImage",
    "spotPriceHistory",
    "spotRequestStatus",
  ],
  LaunchWithExistingInputs: ["createNetworkInterface", "launchInSubnet", "launchWithEni", "launchWithProfile"],
  LaunchOnlyTaggedNewResources: [
    "copyImage",
    "copySnapshot",
    "createEncryptedVolume",
    "createNetworkInterface",
    "createSnapshot",
    "createVolume",
    "launchInSubnet",
    "launchWithEni",
    "launchWithProfile",
    "registerImage",
  ],
  UseManagedResourcesAtLaunchAndSnapshot: ["createSnapshot", "launchWithEni", "registerImage"],
  CopyManagedSnapshotsAndImages: ["copyImage", "copySnapshot"],
  TagOnlyWhileCreating: [
    "copyImage",
    "copySnapshot",
    "createEncryptedVolume",
    "createNetworkInterface",
    "createSnapshot",
    "createVolume",
    "launchInSubnet",
    "launchWithEni",
    "launchWithProfile",
    "registerImage",
  ],
  RetagManagedResources: ["retagManaged"],
  AdoptOnImport: ["adoptForeign"],
  MutateOnlyManagedResources: [
    "attachNetworkInterface",
    "attachVolume",
    "deleteSnapshot",
    "deleteVolume",
    "deregisterImage",
    "detachNetworkInterface",
    "detachVolume",
    "keepEni",
    "keepVolumes",
    "startInstance",
    "stopInstance",
    "terminateInstance",
    "untagManaged",
  ],
  PassWorkloadRoleOnly: ["launchWithProfile"],
  // SQS, not EC2: no EC2 operation needs it (test/docs.test.ts checks its actions against the consumer's).
  ConsumeInterruptionQueue: [],
  ReadTargetGroups: ["describeTargetGroup", "describeTargetHealth"],
  MoveTargetsInTargetGroups: ["deregisterTargets", "registerTargets"],
  CheckSpecKmsKeys: ["describeKey"],
  LetEc2UseKmsKeysForEbs: ["createEncryptedVolume"],
  LetEc2GrantItselfKmsKeysForEbs: ["createEncryptedVolume"],
};

beforeAll(async () => {
  lc = await startLocalCloud({
    port: 0,
    profile: "instant",
    runtime: "none",
    log: () => {},
    iamPolicy: join(ROOT, "docs", "iam", "coordinator-policy.json"),
  });
  gw = createAwsGateway({ region: "us-east-1", endpoint: lc.endpoint, pacingHeadroom: 0, maxAttempts: 1 });
  elb = createElbGateway({ region: "us-east-1", endpoint: lc.endpoint, maxAttempts: 1 });
});
afterAll(async () => {
  await lc?.stop();
});

describe("the shipped coordinator IAM policy, enforced by localcloud", () => {
  it("allows every operation the gateway performs", async () => {
    await control("PUT", "iam/policy", POLICY);
    const f = await fixture();
    expect(failing(await probe(f))).toEqual([]);
  });

  it("names a test for every statement", () => {
    expect(Object.keys(NEEDS).sort()).toEqual(POLICY.Statement.map((s) => s.Sid).sort());
  });

  for (const sid of POLICY.Statement.map((s) => s.Sid)) {
    it(`without ${sid}, the operations that need it fail with UnauthorizedOperation`, async () => {
      await control("PUT", "iam/policy", POLICY);
      const f = await fixture();
      await control("PUT", "iam/policy", { ...POLICY, Statement: POLICY.Statement.filter((s) => s.Sid !== sid) });
      const r = await probe(f);
      expect(failing(r)).toEqual((NEEDS[sid] ?? []).map((op) => `${op}:${deniedCode(op, sid)}`).sort());
    });
  }

  it("checkPermissions: the shipped policy denies nothing; a broken one is named action by action", async () => {
    await control("PUT", "iam/policy", POLICY);
    const ok = await gw.checkPermissions!();
    expect(ok.map((c) => c.action)).toEqual([...GATEWAY_ACTIONS]);
    expect(ok.filter((c) => c.result === "denied")).toEqual([]);
    expect(ok.filter((c) => c.result === "allowed").map((c) => c.action)).toEqual(
      expect.arrayContaining(["CreateVolume", "DescribeImages", "DescribeInstances", "DescribeSubnets"]),
    );
    const broken = structuredClone(POLICY);
    const mutate = broken.Statement.find((s) => s.Sid === "MutateOnlyManagedResources")!;
    mutate.Action = mutate.Action.filter((a) => a !== "ec2:DeleteVolume" && a !== "ec2:TerminateInstances");
    const read = broken.Statement.find((s) => s.Sid === "ReadInventory")!;
    read.Action = read.Action.filter((a) => a !== "ec2:DescribeSnapshots");
    await control("PUT", "iam/policy", broken);
    const bad = await gw.checkPermissions!();
    expect(bad.filter((c) => c.result === "denied").map((c) => c.action)).toEqual([
      "DeleteVolume",
      "DescribeSnapshots",
      "TerminateInstances",
    ]);
  });
});
