/**
 * Volumes that grow and join a running instance, end to end on localcloud (process runtime,
 * realistic profile, time-scaled) with the real agent bundle: `update` grows the data volume from
 * 1 to 2 GiB and adds a second volume; the instance keeps serving on the same generation, EC2's
 * volume is 2 GiB, the new volume is attached and mounted (linked) at its mount point, the stored
 * spec and volumes are the new ones only once the change is in place, every acknowledged write is
 * still there, and the next interruption keeps both volumes. Refusals of `update` change nothing.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Coordinator } from "../../coordinator/service.js";
import { parseSpec } from "../../shared/spec.js";
import { ensureAgentBundle, inProcessCoordinator, readAcks, readRecords, startEnv, until, type Env } from "./harness.js";

const SCALE = 0.03;
let dir: string;
let env: Env;
let coord: Coordinator;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-"));
  env = await startEnv(dir, SCALE);
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE);
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("update grows a data volume and adds one to a running instance", () => {
  it("grows /dev/sdf to 2 GiB and mounts a new /dev/sdg live; an interruption keeps both", { timeout: 150_000 }, async () => {
    const name = "grow-live";
    const acks = join(dir, `${name}.acks`);
    const spec = env.spec(name, { acks });
    const created = await coord.engine.wait((await coord.views.createInstance(parseSpec(spec))).workflowId);
    expect(created.error).toBeNull();
    const before = (await coord.views.getInstance(name))!;
    const sdf = before.resources.volumes[0]!.volumeId!;
    await until("the workload to acknowledge records", () => readAcks(acks).length > 10);

    // Refused, naming the field: shrinking, a new fsType, removing the volume. Nothing changes.
    const base = parseSpec(spec);
    const removed = structuredClone(base);
    removed.persistence.volumes = [];
    await expect(coord.operations.update(name, removed, { recycle: false })).rejects.toThrow(/cannot be removed/);
    const fs = structuredClone(base);
    fs.persistence.volumes[0]!.fsType = "xfs";
    await expect(coord.operations.update(name, fs, { recycle: false })).rejects.toThrow(/volumes\[0\]\.fsType/);

    const next = structuredClone(base);
    next.persistence.volumes[0]!.sizeGiB = 2;
    next.persistence.volumes.push({ device: "/dev/sdg", sizeGiB: 1, type: "gp3", mountPoint: "/data1", fsType: "ext4" });
    const { workflowId } = await coord.operations.update(name, next, { recycle: false });
    expect(workflowId).toBeTruthy();
    // Not stored before the change is in place.
    expect((await coord.store.instances.get(name))!.spec.persistence.volumes).toHaveLength(1);
    // A second update while it runs is refused (its spec would be overwritten).
    await expect(coord.operations.update(name, next, { recycle: false })).rejects.toThrow(/busy with grow/);
    const done = await coord.engine.wait(workflowId!);
    expect(done.error).toBeNull();
    expect(done.status).toBe("succeeded");

    const after = (await coord.views.getInstance(name))!;
    expect(after.state).toBe("running");
    expect(after.generation).toBe(before.generation);
    expect(after.instanceId).toBe(before.instanceId);
    const stored = (await coord.store.instances.get(name))!.spec;
    expect(stored.persistence.volumes.map((v) => [v.device, v.sizeGiB])).toEqual([
      ["/dev/sdf", 2],
      ["/dev/sdg", 1],
    ]);
    const volumes = await coord.store.volumes.list(name);
    const sdg = volumes.find((v) => v.device === "/dev/sdg")!.volumeId!;
    expect(sdg).toMatch(/^vol-/);
    expect((await env.ec2.describeVolume(sdf))!.sizeGiB).toBe(2);
    const attached = (await env.ec2.describeVolume(sdg))!;
    expect(attached.attachments.map((a) => a.instanceId)).toEqual([before.instanceId]);
    expect(existsSync(join(env.rootDir(before.instanceId!), "data1"))).toBe(true);
    const reports = await coord.store.events.list(name);
    expect(reports.some((e) => e.kind === "volume-changed" && e.message.includes(sdg))).toBe(true);

    // A second growth within EC2's cool-down is refused before anything starts.
    const again = structuredClone(next);
    again.persistence.volumes[0]!.sizeGiB = 3;
    await expect(coord.operations.update(name, again, { recycle: false })).rejects.toThrow(/still optimizing|6 hours/);

    // The next interruption keeps both volumes; nothing acknowledged is lost.
    await env.control("POST", `instances/${before.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await until("a replace workflow", async () => (await coord.store.workflows.listFor(name)).find((w) => w.kind === "replace"));
    const replaced = await coord.engine.wait(wf.id);
    expect(replaced.error).toBeNull();
    const gen2 = (await coord.views.getInstance(name))!;
    const [inst] = await env.ec2.describeInstances([gen2.instanceId!]);
    expect(inst!.volumes.map((v) => v.volumeId)).toEqual(expect.arrayContaining([sdf, sdg]));
    const root = env.rootDir(gen2.instanceId!);
    expect(existsSync(join(root, "data1"))).toBe(true);
    const acked = readAcks(acks);
    const records = readRecords(join(root, "data", "records.log"));
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
  });

  it("a spot interruption during the change is not delayed, and the change converges on the replacement", {
    timeout: 150_000,
  }, async () => {
    const name = "grow-interrupted";
    const acks = join(dir, `${name}.acks`);
    const base = parseSpec(env.spec(name, { acks }));
    const created = await coord.engine.wait((await coord.views.createInstance(base)).workflowId);
    expect(created.error).toBeNull();
    const before = (await coord.views.getInstance(name))!;
    const sdf = before.resources.volumes[0]!.volumeId!;
    await until("the workload to acknowledge records", () => readAcks(acks).length > 10);

    // A slow modification (20 model minutes modifying): the interruption lands while the grow waits on it.
    const world = env.lc.world;
    const profile = world.profile;
    world.profile = { ...profile, modifyVolume: 20 * 60_000 };
    const next = structuredClone(base);
    next.persistence.volumes[0]!.sizeGiB = 2;
    next.persistence.volumes.push({ device: "/dev/sdg", sizeGiB: 1, type: "gp3", mountPoint: "/data1", fsType: "ext4" });
    let workflowId: string | null = null;
    try {
      ({ workflowId } = await coord.operations.update(name, next, { recycle: false }));
      await until("the modification to be asked for", async () =>
        (await coord.store.steps.list(workflowId!)).some((x) => x.name === "modify /dev/sdf" && x.status === "done"),
      );
    } finally {
      world.profile = profile;
    }
    await env.control("POST", `instances/${before.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await until("a replace workflow alongside the grow", async () =>
      (await coord.store.workflows.listFor(name)).find((w) => w.kind === "replace"),
    );
    const replaced = await coord.engine.wait(wf.id);
    expect(replaced.error).toBeNull();
    const done = await coord.engine.wait(workflowId!);
    expect(done.error).toBeNull();
    expect(done.status).toBe("succeeded");

    // The replacement serves; both volumes are attached to it, the new one mounted; the spec is the new one.
    const after = (await coord.views.getInstance(name))!;
    expect(after.state).toBe("running");
    expect(after.generation).toBe(before.generation + 1);
    const sdg = (await coord.store.volumes.list(name)).find((v) => v.device === "/dev/sdg")!.volumeId!;
    const [inst] = await env.ec2.describeInstances([after.instanceId!]);
    expect(inst!.volumes.map((v) => v.volumeId)).toEqual(expect.arrayContaining([sdf, sdg]));
    expect((await env.ec2.describeVolume(sdf))!.sizeGiB).toBe(2);
    const root = env.rootDir(after.instanceId!);
    expect(existsSync(join(root, "data1"))).toBe(true);
    expect((await coord.store.instances.get(name))!.spec.persistence.volumes.map((v) => [v.device, v.sizeGiB])).toEqual([
      ["/dev/sdf", 2],
      ["/dev/sdg", 1],
    ]);
    // The filesystem was grown on the generation that was live when the grow ran: the replacement.
    const grown = (await coord.store.steps.list(workflowId!)).find((x) => x.name === "grow-fs /dev/sdf");
    expect(JSON.stringify(grown?.result)).toContain(after.instanceId!);
    const acked = readAcks(acks);
    const records = readRecords(join(root, "data", "records.log"));
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
  });
});
