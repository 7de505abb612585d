/**
 * The root disk across generations on localcloud (process runtime, real agent): every generation
 * launches with its root volume's DeleteOnTermination false, so an instance lost without notice
 * still leaves its root behind; the replace runbook captures it after the termination and boots the
 * replacement from it. After a normal interruption the old root volume is deleted: nothing leaks.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSpec } from "../../shared/spec.js";
import type { Coordinator } from "../../coordinator/service.js";
import { ensureAgentBundle, inProcessCoordinator, liveInstances, readAcks, readRecords, startEnv, until, type Env } from "./harness.js";

const SCALE = 0.03;
const NAME = "rooted";
let dir: string;
let env: Env;
let coord: Coordinator;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-root-"));
  env = await startEnv(dir, SCALE);
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE, { lostCheckIntervalMs: 3000 });
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function nextReplace(after: number) {
  const wf = await until(
    "the next replace workflow",
    async () => (await coord.store.workflows.listFor(NAME)).filter((w) => w.kind === "replace")[after],
    60_000,
  );
  return coord.engine.wait(wf.id);
}

/** Volumes tagged for the instance that still exist, counted through DescribeVolumes. */
async function liveVolumes(): Promise<string[]> {
  return (await env.ec2.findVolumes({ "spotkeep:instance": NAME }))
    .filter((v) => v.state !== "deleted" && v.state !== "deleting")
    .map((v) => v.volumeId)
    .sort();
}

/** The live generation's root and data volumes: nothing else may exist. */
async function expectedVolumes(): Promise<string[]> {
  const d = (await coord.views.getInstance(NAME))!;
  const [inst] = await env.ec2.describeInstances([d.instanceId!]);
  expect(inst?.volumes.find((v) => v.deviceName === inst.rootDeviceName)).toBeDefined();
  return [...new Set(inst!.volumes.map((v) => v.volumeId))].sort();
}

describe("root disk persistence", () => {
  it("launches every generation with the root volume kept on termination", async () => {
    const acks = join(dir, "rooted.acks");
    const { workflowId } = await coord.views.createInstance(parseSpec(env.spec(NAME, { acks })));
    expect((await coord.engine.wait(workflowId)).error).toBeNull();
    const d = (await coord.views.getInstance(NAME))!;
    const inst = env.lc.world.instances.get(d.instanceId!)!;
    const root = [...env.lc.world.volumes.values()].find(
      (v) => v.attachment?.instanceId === inst.id && v.attachment.device === inst.rootDeviceName,
    );
    expect(root?.attachment?.deleteOnTermination).toBe(false);
    expect(await liveVolumes()).toEqual(await expectedVolumes());
  });

  it("captures the root of an instance lost without notice after its termination and boots the replacement from it", async () => {
    const acks = join(dir, "rooted.acks");
    await until("acked records", () => readAcks(acks).length > 5);
    const old = (await coord.views.getInstance(NAME))!;
    // Written after the last image: only a capture after the loss can carry it over.
    writeFileSync(join(env.rootDir(old.instanceId!), "etc", "after-last-image"), `written on ${old.instanceId}\n`);
    await env.control("POST", `instances/${old.instanceId}/lose`, {});
    const wf = await nextReplace(0);
    expect(wf.error).toBeNull();
    expect(wf.trigger).toBe("lost");
    const steps = (await coord.store.steps.list(wf.id)).map((s) => s.name);
    expect(steps).toContain("snapshot-lost-root");
    expect(steps).toContain("delete-old-root");
    const d = (await coord.views.getInstance(NAME))!;
    expect(d).toMatchObject({ state: "running", generation: 2, privateIp: old.privateIp });
    const root = env.rootDir(d.instanceId!);
    expect(readFileSync(join(root, "etc", "after-last-image"), "utf8")).toBe(`written on ${old.instanceId}\n`);
    const events = (await coord.views.getEvents(NAME))!.events;
    expect(
      events.some((e) => e.kind === "root-captured" && e.message.includes(old.instanceId!) && /crash-consistent/.test(e.message)),
    ).toBe(true);
    const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
    const records = readRecords(join(root, "data", "records.log"));
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
    expect((await liveInstances(env, NAME)).map((i) => i.instanceId)).toEqual([d.instanceId]);
    expect(await liveVolumes()).toEqual(await expectedVolumes());
  });

  it("deletes the old root volume after a normal interruption (nothing left behind)", async () => {
    const old = (await coord.views.getInstance(NAME))!;
    await env.control("POST", `instances/${old.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await nextReplace(1);
    expect(wf.error).toBeNull();
    expect((await coord.views.getInstance(NAME))!.generation).toBe(3);
    expect(await liveVolumes()).toEqual(await expectedVolumes());
  });
});

describe("a root volume gone anyway", () => {
  it("says on the timeline which image the replacement boots from and how old it is", async () => {
    const old = (await coord.views.getInstance(NAME))!;
    const image = (await coord.store.root.get(NAME))!.imageId!;
    // Someone turned DeleteOnTermination back on: EC2 deletes the root with the instance.
    const [inst] = await env.ec2.describeInstances([old.instanceId!]);
    const root = [...env.lc.world.volumes.values()].find(
      (v) => v.id === inst!.volumes.find((x) => x.deviceName === inst!.rootDeviceName)!.volumeId,
    )!;
    root.attachment!.deleteOnTermination = true;
    await env.control("POST", `instances/${old.instanceId}/lose`, {});
    const wf = await nextReplace(2);
    expect(wf.error).toBeNull();
    const events = (await coord.views.getEvents(NAME))!.events;
    const lost = events.find((e) => e.kind === "root-lost" && e.message.includes(old.instanceId!));
    expect(lost?.message).toContain(`boots from ${image} (made `);
    expect(lost?.message).toMatch(/min ago\)/);
    expect((await coord.views.getInstance(NAME))!).toMatchObject({ state: "running", generation: 4 });
    expect(await liveVolumes()).toEqual(await expectedVolumes());
  });
});

describe("continuous snapshots of the root", () => {
  const IMAGED = "imaged";
  const snapshotNow = async () => {
    const res = await fetch(`${coord.url}/api/v1/instances/${IMAGED}/snapshot`, {
      method: "POST",
      headers: { authorization: `Bearer ${coord.adminToken}`, "content-type": "application/json" },
    });
    const body = (await res.json()) as { workflowId: string };
    expect(res.status).toBe(202);
    const wf = await coord.engine.wait(body.workflowId);
    expect(wf.error).toBeNull();
    return wf;
  };

  it("captures the root as an image at every snapshot, with the user's tags, and keeps only snapshots.keep of them", async () => {
    const input = env.spec(IMAGED, { workload: false });
    input.snapshots = { keep: 1, root: true };
    input.launch.tags = { team: "storage" };
    const { workflowId } = await coord.views.createInstance(parseSpec(input));
    expect((await coord.engine.wait(workflowId)).error).toBeNull();

    const made: string[] = [];
    const behind: string[] = [];
    for (let i = 0; i < 3; i++) {
      await snapshotNow();
      const current = (await coord.store.root.get(IMAGED))!.imageId!;
      expect(made).not.toContain(current);
      made.push(current);
      // The current image is never deleted, whatever keep says.
      const info = await env.ec2.describeImage(current);
      expect(info?.state).toBe("available");
      behind.push(info!.rootSnapshotId!);
    }
    const images = await coord.store.artifacts.list(IMAGED, "image");
    expect(images.filter((i) => i.deletedAt === null).map((i) => i.id)).toEqual([made[2]]);
    // The older ones are really gone from EC2, with the snapshots behind them.
    for (const [i, old] of made.slice(0, 2).entries()) {
      expect(await env.ec2.describeImage(old)).toBeNull();
      expect(await env.ec2.describeSnapshot(behind[i]!)).toBeNull();
    }
    const dataSnaps = (await coord.store.artifacts.list(IMAGED, "data-snapshot")).filter((s) => s.deletedAt === null);
    expect(dataSnaps).toHaveLength(1);
    // Snapshots and images carry launch.tags as well as spotkeep's tags.
    const image = await env.ec2.describeImage(made[2]!);
    expect(image?.tags).toMatchObject({ team: "storage", "spotkeep:instance": IMAGED });
    const snap = await env.ec2.describeSnapshot(dataSnaps[0]!.id);
    expect(snap?.tags).toMatchObject({ team: "storage", "spotkeep:instance": IMAGED });
  });
});
