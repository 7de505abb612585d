/**
 * The EC2 gateway against localcloud through the real SDK (runtime none, instant profile):
 * idempotent mutations (a re-run step finds what the first attempt made), not-found handling,
 * error wording and classification, retries of injected throttling.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { rmSync } from "node:fs";
import { startLocalCloud, type LocalCloud } from "../../localcloud/index.js";
import { createAwsGateway } from "../../coordinator/cloud/aws.js";
import { classify } from "../../coordinator/cloud/errors.js";
import { TAG, type Ec2Gateway } from "../../coordinator/cloud/gateway.js";

let lc: LocalCloud;
let gw: Ec2Gateway;
let subnetA: { subnetId: string; availabilityZone: string };
let subnetB: { subnetId: string; availabilityZone: string };

const control = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${lc.controlUrl}/${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return res.json();
};
const until = async <T>(f: () => Promise<T | null | undefined>, ms = 5000): Promise<T> => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
};

beforeAll(async () => {
  lc = await startLocalCloud({ port: 0, profile: "instant", runtime: "none" });
  gw = createAwsGateway({ region: "us-east-1", endpoint: lc.endpoint, pacingHeadroom: 0 });
  const subnets = [...lc.world.subnets.values()].sort((a, b) => a.az.localeCompare(b.az));
  const all = await gw.describeSubnets(subnets.map((s) => s.id));
  subnetA = all.find((s) => s.availabilityZone === "us-east-1a")!;
  subnetB = all.find((s) => s.availabilityZone === "us-east-1b")!;
});
afterAll(async () => {
  await lc?.stop();
  if (lc) rmSync(lc.stateDir, { recursive: true, force: true });
});

describe("EC2 gateway on localcloud", () => {
  it("exports the actions it calls", async () => {
    const { GATEWAY_ACTIONS } = await import("../../coordinator/cloud/aws.js");
    expect(GATEWAY_ACTIONS).toContain("RunInstances");
    expect(new Set(GATEWAY_ACTIONS).size).toBe(GATEWAY_ACTIONS.length);
  });

  it("with beforeMutation, a refused mutation is never sent, reads still are; calls carry the caller id into localcloud's call log", async () => {
    let leading = true;
    const fenced = createAwsGateway({
      region: "us-east-1",
      endpoint: lc.endpoint,
      pacingHeadroom: 0,
      callerId: "coord-a-1",
      beforeMutation: (action) => {
        if (!leading) throw new Error(`EC2 ${action}: refused, this coordinator is not the leader`);
      },
    });
    const tags = { [TAG.workflow]: "wf-fence-1", [TAG.step]: "create-volume /dev/sdf" };
    const vol = await fenced.createVolume({ availabilityZone: subnetA.availabilityZone, sizeGiB: 4, tags });
    leading = false;
    const since = Date.now();
    await expect(fenced.deleteVolume(vol.volumeId)).rejects.toThrow(/DeleteVolume: refused, this coordinator is not the leader/);
    expect((await fenced.describeVolume(vol.volumeId))?.state).toBe("available");
    const mine = lc.world.calls.list({ caller: "coord-a-1" });
    expect(mine.some((c) => c.action === "CreateVolume" && c.outcome === "ok")).toBe(true);
    expect(mine.filter((c) => c.at >= since).map((c) => c.action)).toEqual(["DescribeVolumes"]);
    // The control API serves the same log, filtered.
    const served = (await control("GET", "calls?caller=coord-a-1&mutations=true")) as { calls: { action: string }[] };
    expect(served.calls.map((c) => c.action)).toEqual(["CreateVolume"]);
    await expect(control("GET", "calls?since=yesterday")).rejects.toThrow(/400[\s\S]*since: must be wall-clock milliseconds/);
  });

  it("createVolume run twice with the same step tags finds the first volume instead of making a second", async () => {
    const tags = { [TAG.workflow]: "wf-test-1", [TAG.step]: "create-volume /dev/sdf" };
    const a = await gw.createVolume({ availabilityZone: subnetA.availabilityZone, sizeGiB: 4, tags });
    const b = await gw.createVolume({ availabilityZone: subnetA.availabilityZone, sizeGiB: 4, tags });
    expect(b.volumeId).toBe(a.volumeId);
    const tagged = [...lc.world.volumes.values()].filter((v) => v.tags.get(TAG.workflow) === "wf-test-1");
    expect(tagged).toHaveLength(1);
  });

  it("createNetworkInterface and createSnapshot are idempotent by tags; registerImage by name", async () => {
    const eniTags = { [TAG.workflow]: "wf-test-2", [TAG.step]: "create-eni" };
    const e1 = await gw.createNetworkInterface({ subnetId: subnetA.subnetId, securityGroupIds: [], description: "t", tags: eniTags });
    const e2 = await gw.createNetworkInterface({ subnetId: subnetA.subnetId, securityGroupIds: [], description: "t", tags: eniTags });
    expect(e2.eniId).toBe(e1.eniId);
    expect(e1.privateIp).toMatch(/^172\.31\./);

    const vol = await gw.createVolume({
      availabilityZone: subnetA.availabilityZone,
      sizeGiB: 2,
      tags: { [TAG.workflow]: "wf-test-2", [TAG.step]: "v" },
    });
    await until(async () => (await gw.describeVolume(vol.volumeId))?.state === "available");
    const sTags = { [TAG.workflow]: "wf-test-2", [TAG.step]: "snapshot-root" };
    const s1 = await gw.createSnapshot(vol.volumeId, "d", sTags);
    const s2 = await gw.createSnapshot(vol.volumeId, "d", sTags);
    expect(s2.snapshotId).toBe(s1.snapshotId);
    await until(async () => (await gw.describeSnapshot(s1.snapshotId))?.state === "completed");
    const i1 = await gw.registerImage({
      name: "spotkeep-test-g2-abc",
      rootSnapshotId: s1.snapshotId,
      rootDeviceName: "/dev/xvda",
      architecture: "x86_64",
      tags: {},
    });
    const i2 = await gw.registerImage({
      name: "spotkeep-test-g2-abc",
      rootSnapshotId: s1.snapshotId,
      rootDeviceName: "/dev/xvda",
      architecture: "x86_64",
      tags: {},
    });
    expect(i2).toBe(i1);
  });

  it("launchInstance with the same client token returns the same instance", async () => {
    const req = {
      clientToken: "tok-same-1",
      imageId: lc.world.baseImageId,
      instanceType: "m5.large",
      market: "spot" as const,
      network: { subnetId: subnetA.subnetId, securityGroupIds: [] },
      userData: "",
      blockDevices: [],
      tags: { [TAG.workflow]: "wf-test-3" },
    };
    const a = await gw.launchInstance(req);
    const b = await gw.launchInstance(req);
    expect(b.instanceId).toBe(a.instanceId);
    expect(a.lifecycle).toBe("spot");
    const found = await gw.findInstances({ [TAG.workflow]: "wf-test-3" });
    expect(found.map((i) => i.instanceId)).toEqual([a.instanceId]);
  });

  it("lookups made at about the same time are batched: spot requests, images and subnets cost one call each", async () => {
    const calls: string[] = [];
    const counted = createAwsGateway({
      region: "us-east-1",
      endpoint: lc.endpoint,
      pacingHeadroom: 0,
      observe: { recordEc2Call: (action) => void calls.push(action) },
    });
    const launched = await Promise.all(
      Array.from({ length: 3 }, (_, i) =>
        gw.launchInstance({
          clientToken: `tok-batch-${i}`,
          imageId: lc.world.baseImageId,
          instanceType: "m5.large",
          market: "spot",
          network: { subnetId: subnetA.subnetId, securityGroupIds: [] },
          userData: "",
          blockDevices: [],
          tags: { [TAG.workflow]: "wf-test-batch" },
        }),
      ),
    );
    const ids = launched.map((i) => i.instanceId);
    const [spot, images, subnets] = await Promise.all([
      Promise.all([...ids, "i-0123456789abcdef0"].map((id) => counted.spotRequestStatus(id))),
      Promise.all([lc.world.baseImageId, lc.world.baseImageId, "ami-0123456789abcdef0"].map((id) => counted.describeImage(id))),
      Promise.all(Array.from({ length: 5 }, () => counted.describeSubnets([subnetA.subnetId, subnetB.subnetId]))),
    ]);
    expect(spot.slice(0, 3).map((s) => s?.state)).toEqual(["active", "active", "active"]);
    expect(new Set(spot.slice(0, 3).map((s) => s?.spotInstanceRequestId)).size).toBe(3);
    expect(spot[3]).toBeNull();
    expect(images[0]?.imageId).toBe(lc.world.baseImageId);
    expect(images[1]).toEqual(images[0]);
    // A deregistered or unknown image answers null, as a single lookup did.
    expect(images[2]).toBeNull();
    for (const s of subnets) expect(s.map((x) => x.availabilityZone)).toEqual([subnetA.availabilityZone, subnetB.availabilityZone]);
    expect(calls.sort()).toEqual(["DescribeImages", "DescribeSpotInstanceRequests", "DescribeSubnets"]);
    // Remembered: subnets do not move.
    await counted.describeSubnets([subnetA.subnetId]);
    expect(calls).toHaveLength(3);
    await Promise.all(ids.map((id) => gw.terminateInstance(id)));
  });

  // The pacer's exact admissions (5 at once, then 2 per second, a reserve for the answers' jitter)
  // are proven on a fake clock in coordinator/cloud/pacing.test.ts. Here, through the real SDK and
  // localcloud's buckets on the real clock, the same burst is sent without pacing and with it, one
  // after the other: pacing must draw fewer refusals. It draws none when the trip to EC2 takes as
  // long as the pacer has seen; on a loaded machine one request can arrive early and be refused
  // (then retried), which this run reports.
  it("paced at EC2's buckets, a burst of 9 launches draws fewer RequestLimitExceeded than unpaced, and waits 2 per second", async () => {
    const refusedSoFar = () => lc.throttle.refused.get("RunInstances") ?? 0;
    const burst = async (gateway: Ec2Gateway, tag: string) => {
      lc.throttle.reset();
      const before = refusedSoFar();
      const t0 = Date.now();
      const out = await Promise.allSettled(
        Array.from({ length: 9 }, (_, i) =>
          gateway.launchInstance({
            clientToken: `tok-${tag}-${i}`,
            imageId: lc.world.baseImageId,
            instanceType: "m5.large",
            market: "spot",
            network: { subnetId: subnetA.subnetId, securityGroupIds: [] },
            userData: "",
            blockDevices: [],
            tags: { [TAG.workflow]: `wf-test-${tag}` },
          }),
        ),
      );
      const ms = Date.now() - t0;
      const launched = out.flatMap((r) => (r.status === "fulfilled" ? [r.value.instanceId] : []));
      await Promise.all(launched.map((id) => gw.terminateInstance(id)));
      return { refused: refusedSoFar() - before, launched, ms };
    };
    lc.throttle.enabled = true;
    try {
      const unpaced = await burst(createAwsGateway({ region: "us-east-1", endpoint: lc.endpoint, pacingHeadroom: 0 }), "unpaced");
      const paced = await burst(createAwsGateway({ region: "us-east-1", endpoint: lc.endpoint, pacingHeadroom: 1 }), "paced");
      console.log(
        `9 launches at once: unpaced ${unpaced.refused} refused (${unpaced.launched.length} launched), ` +
          `paced ${paced.refused} refused in ${paced.ms} ms (${paced.launched.length} launched)`,
      );
      // EC2's RunInstances bucket holds 5 and refills 2 per second: unpaced, the calls beyond it are
      // refused (at most one token refills while nine arrive), then retried.
      expect(unpaced.refused).toBeGreaterThanOrEqual(3);
      expect(paced.launched).toHaveLength(9);
      expect(new Set(paced.launched).size).toBe(9);
      expect(paced.refused).toBeLessThan(unpaced.refused);
      // Four beyond the burst at two per second: the pacer made them wait at least this long.
      expect(paced.ms).toBeGreaterThanOrEqual(1500);
    } finally {
      lc.throttle.enabled = false;
    }
  });

  it("treats unknown ids as gone: describe returns null, terminate/delete succeed", async () => {
    expect(await gw.describeVolume("vol-0123456789abcdef0")).toBeNull();
    expect(await gw.describeSnapshot("snap-0123456789abcdef0")).toBeNull();
    expect(await gw.describeInstances(["i-0123456789abcdef0"])).toEqual([]);
    await gw.terminateInstance("i-0123456789abcdef0");
    await gw.deleteVolume("vol-0123456789abcdef0");
  });

  it("says what was attempted and classifies the code (cross-AZ attach is fatal)", async () => {
    const vol = await gw.createVolume({
      availabilityZone: subnetB.availabilityZone,
      sizeGiB: 1,
      tags: { [TAG.workflow]: "wf-test-4", [TAG.step]: "v" },
    });
    await until(async () => (await gw.describeVolume(vol.volumeId))?.state === "available");
    const inst = await gw.launchInstance({
      clientToken: "tok-4",
      imageId: lc.world.baseImageId,
      instanceType: "m5.large",
      market: "on-demand",
      network: { subnetId: subnetA.subnetId, securityGroupIds: [] },
      userData: "",
      blockDevices: [],
      tags: {},
    });
    await until(async () => (await gw.describeInstances([inst.instanceId]))[0]?.state === "running");
    const err = await gw.attachVolume(vol.volumeId, inst.instanceId, "/dev/sdf").then(
      () => null,
      (e: unknown) => e,
    );
    expect(String(err)).toContain(`attaching ${vol.volumeId} to ${inst.instanceId} as /dev/sdf: InvalidVolume.ZoneMismatch`);
    expect(classify(err)).toBe("fatal");
  });

  it("retries injected RequestLimitExceeded on attach and detach to success", async () => {
    const vol = await gw.createVolume({
      availabilityZone: subnetA.availabilityZone,
      sizeGiB: 1,
      tags: { [TAG.workflow]: "wf-test-5", [TAG.step]: "v" },
    });
    const inst = await gw.launchInstance({
      clientToken: "tok-5",
      imageId: lc.world.baseImageId,
      instanceType: "m5.large",
      market: "on-demand",
      network: { subnetId: subnetA.subnetId, securityGroupIds: [] },
      userData: "",
      blockDevices: [],
      tags: {},
    });
    await until(async () => (await gw.describeInstances([inst.instanceId]))[0]?.state === "running");
    await until(async () => (await gw.describeVolume(vol.volumeId))?.state === "available");
    await control("PUT", "faults", {
      failNext: [
        { action: "AttachVolume", code: "RequestLimitExceeded", count: 2 },
        { action: "DetachVolume", code: "RequestLimitExceeded", count: 2 },
      ],
    });
    await gw.attachVolume(vol.volumeId, inst.instanceId, "/dev/sdf");
    await until(async () => (await gw.describeVolume(vol.volumeId))?.attachments[0]?.state === "attached");
    await gw.detachVolume(vol.volumeId, inst.instanceId);
    await until(async () => (await gw.describeVolume(vol.volumeId))?.state === "available");
  });
});
