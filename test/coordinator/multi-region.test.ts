/**
 * One coordinator, two regions (localcloud serving us-east-1 and us-west-2; process runtime, real
 * agents, the shipped IAM policy): an instance whose spec names us-west-2 launches there, is
 * replaced there after an interruption with its IP and every acknowledged write, while an instance
 * in us-east-1 runs beside it; the us-east-1 instance's snapshots and root images are copied to
 * us-west-2 (snapshots.copyToRegions), the copies follow retention and go with a delete.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSpec } from "../../shared/spec.js";
import type { Coordinator } from "../../coordinator/service.js";
import { TAG } from "../../coordinator/cloud/gateway.js";
import { ensureAgentBundle, type Env, inProcessCoordinator, readAcks, readRecords, startEnv, until } from "./harness.js";

const SCALE = 0.03;
const WEST = "us-west-2";
let dir: string;
let env: Env;
let coord: Coordinator;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-multi-region-"));
  env = await startEnv(dir, SCALE, { regions: ["us-east-1", WEST] });
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE, { regions: [WEST] });
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const west = () => env.lc.worldFor(WEST);
const east = () => env.lc.worldFor("us-east-1");

async function succeeded(workflowId: string) {
  const done = await coord.engine.wait(workflowId);
  expect(done.error).toBeNull();
  expect(done.status).toBe("succeeded");
}

describe("one coordinator, two regions", () => {
  it("launches and replaces an instance in us-west-2 beside one in us-east-1, each in its own region's EC2", async () => {
    const s = env.spec("west-db", { acks: join(dir, "west-db.acks") });
    const w = west();
    const spec = parseSpec({
      ...s,
      region: WEST,
      launch: { ...s.launch, imageId: w.baseImageId, subnetIds: [...w.subnets.values()].map((x) => x.id) },
    });
    const eastSpec = parseSpec(env.spec("east-app", { workload: false }));
    const [a, b] = await Promise.all([coord.views.createInstance(spec), coord.views.createInstance(eastSpec)]);
    await Promise.all([succeeded(a.workflowId), succeeded(b.workflowId)]);

    const first = (await coord.views.getInstance("west-db"))!;
    expect(first.availabilityZone).toMatch(/^us-west-2[a-z]$/);
    expect(w.instances.has(first.instanceId!)).toBe(true);
    expect(east().instances.has(first.instanceId!)).toBe(false);
    const app = (await coord.views.getInstance("east-app"))!;
    expect(app.availabilityZone).toMatch(/^us-east-1[a-z]$/);
    expect(east().instances.has(app.instanceId!)).toBe(true);
    // Its volume and ENI are us-west-2's too.
    const vol = first.resources.volumes[0]!.volumeId!;
    expect(w.volumes.has(vol)).toBe(true);
    expect(east().volumes.has(vol)).toBe(false);

    const acks = join(dir, "west-db.acks");
    await until("the workload to acknowledge records", () => readAcks(acks).length > 10);
    await env.control("POST", `instances/${first.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const replace = await until("the replacement", async () =>
      (await coord.store.workflows.listFor("west-db")).find((x) => x.kind === "replace"),
    );
    await succeeded(replace.id);
    const second = (await coord.views.getInstance("west-db"))!;
    expect(second.generation).toBe(2);
    expect(second.privateIp).toBe(first.privateIp);
    expect(w.instances.has(second.instanceId!)).toBe(true);
    expect(second.resources.volumes[0]!.volumeId).toBe(vol);
    await until("the workload to write again", () => readAcks(acks).length > 20);
    // Acks first: the writer is still running, and a record is on disk before its ack is written.
    const acked = readAcks(acks);
    const records = readRecords(join(env.rootDir(second.instanceId!), "data", "records.log"));
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
  });

  it("copies the snapshots and root images of a us-east-1 instance to us-west-2; the copies follow retention and go with the delete", async () => {
    const s = env.spec("east-db", { workload: false });
    const spec = parseSpec({ ...s, snapshots: { root: true, keep: 1, consistency: "crash", copyToRegions: [WEST] } });
    const created = await coord.views.createInstance(spec);
    await succeeded(created.workflowId);

    const copiesIn = () =>
      [...west().snapshots.values(), ...west().images.values()].filter(
        (r) => r.tags.get(TAG.instance) === "east-db" && r.tags.get(TAG.copyOf) !== undefined,
      );
    const snap1 = await coord.operations.run("east-db", "snapshot");
    await succeeded(snap1.workflowId);
    const firstData = (await coord.store.artifacts.list("east-db", "data-snapshot"))[0]!.id;
    const firstImage = (await coord.store.artifacts.list("east-db", "image"))[0]!.id;
    await until(
      "copies of the first snapshot and image in us-west-2",
      async () => {
        const copies = [
          ...(await coord.store.artifacts.list("east-db", "snapshot-copy")),
          ...(await coord.store.artifacts.list("east-db", "image-copy")),
        ];
        return copies.some((c) => c.sourceId === firstData) && copies.some((c) => c.sourceId === firstImage);
      },
      60_000,
    );
    const snapCopy = (await coord.store.artifacts.list("east-db", "snapshot-copy")).find((c) => c.sourceId === firstData)!;
    expect(snapCopy.region).toBe(WEST);
    await until("the snapshot copy to complete", () => west().snapshots.get(snapCopy.id)?.state === "completed", 60_000);
    expect(west().snapshots.get(snapCopy.id)!.tags.get(TAG.copyOf)).toBe(firstData);
    const imageCopy = (await coord.store.artifacts.list("east-db", "image-copy")).find((c) => c.sourceId === firstImage)!;
    await until("the image copy to be available", () => west().images.get(imageCopy.id)?.state === "available", 60_000);
    expect(east().snapshots.has(snapCopy.id)).toBe(false);

    // A second snapshot: keep 1 deletes the first data snapshot (and the first image), then their copies.
    const snap2 = await coord.operations.run("east-db", "snapshot");
    await succeeded(snap2.workflowId);
    await until(
      "the first snapshot's copy deleted in us-west-2",
      () => !west().snapshots.has(snapCopy.id),
      60_000,
    );
    await until("the newer snapshot's copy", async () => {
      const copies = await coord.store.artifacts.list("east-db", "snapshot-copy");
      return copies.some((c) => c.sourceId !== firstData);
    });

    // Delete: every copy goes with its original.
    const del = await coord.views.deleteInstance("east-db", {
      keep: { volumes: false, network: false, snapshots: false, images: false },
      ttlHours: null,
    });
    await succeeded(del.workflowId);
    await until("no copy of east-db left in us-west-2", () => copiesIn().length === 0, 60_000);
  });
});
