/**
 * delete in process (test/support/in-process.ts: localcloud without a runtime, the coordinator in
 * this process, a fake agent per instance, time-scaled): without --keep every resource tagged with the instance goes; with keep=volumes,network
 * those stay, tagged with their expiry, until the TTL sweep deletes them; the name can be created
 * again; a running instance's agent is asked to quiesce first (not with --force), and one that does
 * not answer is waited for within the budget only; a delete recorded before deletes quiesced
 * goes on without the step; bad input is refused by name and changes
 * nothing; 404 and 409 say why. That the preStop hook really runs on the instance is
 * test/coordinator/delete-prestop.test.ts's (a real agent and hook).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeNetworkInterfacesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  EC2Client,
} from "@aws-sdk/client-ec2";
import { KEEP_NOTHING } from "../../shared/deletion.js";
import { parseSpec } from "../../shared/spec.js";
import { moveState } from "../../coordinator/lifecycle.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { until } from "./harness.js";

let h: InProcess;
let sdk: EC2Client;
const api = (method: string, path: string, body?: string) => h.api(method, path, body);

/** Every live resource EC2 lists with tag spotkeep:instance = name, by kind, with its tags. */
async function tagged(name: string) {
  const Filters = [{ Name: "tag:spotkeep:instance", Values: [name] }];
  const tags = (t?: Array<{ Key?: string; Value?: string }>) => Object.fromEntries((t ?? []).map((x) => [x.Key, x.Value]));
  const [inst, vols, enis, snaps, imgs] = await Promise.all([
    sdk.send(new DescribeInstancesCommand({ Filters })),
    sdk.send(new DescribeVolumesCommand({ Filters })),
    sdk.send(new DescribeNetworkInterfacesCommand({ Filters })),
    sdk.send(new DescribeSnapshotsCommand({ Filters, OwnerIds: ["self"] })),
    sdk.send(new DescribeImagesCommand({ Filters, Owners: ["self"] })),
  ]);
  return {
    instances: (inst.Reservations ?? [])
      .flatMap((r) => r.Instances ?? [])
      .filter((i) => i.State?.Name !== "terminated")
      .map((i) => i.InstanceId),
    // "deleting" is a one-way state: the volume is on its way out.
    volumes: (vols.Volumes ?? [])
      .filter((v) => v.State !== "deleted" && v.State !== "deleting")
      .map((v) => ({ id: v.VolumeId, tags: tags(v.Tags) })),
    enis: (enis.NetworkInterfaces ?? []).map((e) => ({ id: e.NetworkInterfaceId, tags: tags(e.TagSet) })),
    snapshots: (snaps.Snapshots ?? []).map((s) => s.SnapshotId),
    images: (imgs.Images ?? []).filter((i) => i.State !== "deregistered").map((i) => i.ImageId),
  };
}

async function create(name: string): Promise<void> {
  const { workflowId } = await h.coord.views.createInstance(parseSpec(h.spec(name)));
  const wf = await h.coord.engine.wait(workflowId);
  expect(wf.error).toBeNull();
}

async function deleteAndWait(name: string, query = ""): Promise<{ archivedAs: string; workflowId: string }> {
  const started = await api("DELETE", `instances/${name}${query}`);
  expect(started.status, JSON.stringify(started.body)).toBe(202);
  const wf = await h.coord.engine.wait(started.body.workflowId);
  expect(wf.error).toBeNull();
  expect(wf.status).toBe("succeeded");
  return started.body;
}

beforeAll(async () => {
  h = await startInProcess({ prefix: "spotkeep-inproc-delete-", config: { lostCheckIntervalMs: 3000 } });
  sdk = new EC2Client({ endpoint: h.env.lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "x" } });
});
afterAll(async () => {
  sdk?.destroy();
  await h?.stop();
});

describe("delete", () => {
  it("without --keep deletes every tagged resource (from paused, with snapshots and a root image), and the name can be created again", async () => {
    const name = "del-all";
    await create(name);
    // A data snapshot, then a pause: a root snapshot and a registered image exist too.
    const snap = await h.coord.operations.run(name, "snapshot");
    expect((await h.coord.engine.wait(snap.workflowId)).status).toBe("succeeded");
    const pause = await h.coord.operations.run(name, "pause");
    expect((await h.coord.engine.wait(pause.workflowId)).status).toBe("succeeded");
    const before = await tagged(name);
    expect(before.volumes.length).toBeGreaterThan(0);
    expect(before.enis.length).toBe(1);
    expect(before.snapshots.length).toBeGreaterThanOrEqual(2);
    expect(before.images.length).toBe(1);

    const { archivedAs } = await deleteAndWait(name);
    expect(archivedAs).toMatch(/^del-all~\d{4}-\d\d-\d\dT/);
    expect(await tagged(name)).toEqual({ instances: [], volumes: [], enis: [], snapshots: [], images: [] });

    // Deleted: not in the list, in the list with ?all=true, its history under the archived name.
    expect((await api("GET", "instances")).body.instances.map((i: { name: string }) => i.name)).not.toContain(archivedAs);
    const all = (await api("GET", "instances?all=true")).body.instances;
    expect(all.find((i: { name: string }) => i.name === archivedAs)).toMatchObject({ state: "deleted" });
    const detail = (await api("GET", `instances/${encodeURIComponent(archivedAs)}`)).body;
    expect(detail.resources.network.eniId).toBeNull();
    expect(detail.resources.volumes.every((v: { volumeId: string | null }) => v.volumeId === null)).toBe(true);
    const events = (await api("GET", `instances/${encodeURIComponent(archivedAs)}/events`)).body;
    expect(events.events.map((e: { kind: string }) => e.kind)).toEqual(expect.arrayContaining(["created", "paused", "deleted"]));

    // A deleted instance is not deleted again.
    const again = await api("DELETE", `instances/${encodeURIComponent(archivedAs)}`);
    expect(again.status).toBe(409);
    expect(again.body.error.message).toContain("is deleted; delete is allowed from running, paused, failed");

    // The name is free: a new instance of it starts from scratch.
    await create(name);
    const fresh = (await api("GET", `instances/${name}`)).body;
    expect(fresh).toMatchObject({ state: "running", generation: 1 });
    expect(fresh.resources.network.eniId).not.toBe(before.enis[0]!.id);
  }, 180_000);

  it("with keep=volumes,network keeps them tagged with their expiry until the TTL sweep deletes them", async () => {
    const name = "del-keep";
    await create(name);
    const before = await tagged(name);
    const snap = await h.coord.operations.run(name, "snapshot");
    expect((await h.coord.engine.wait(snap.workflowId)).status).toBe("succeeded");

    // 0.15 model hours = 540 model seconds, 5.4 s real at the harness's time scale: room for the
    // checks below on a loaded machine before the sweep may delete what was kept.
    const { archivedAs } = await deleteAndWait(name, "?keep=volumes,network&ttlHours=0.15");
    const kept = await tagged(name);
    expect(kept.instances).toEqual([]);
    expect(kept.snapshots).toEqual([]);
    expect(kept.volumes.map((v) => v.id).sort()).toEqual(
      before.volumes
        .filter((v) => v.tags["spotkeep:device"])
        .map((v) => v.id)
        .sort(),
    );
    expect(kept.enis.map((e) => e.id)).toEqual(before.enis.map((e) => e.id));
    for (const r of [...kept.volumes, ...kept.enis]) expect(Date.parse(r.tags["spotkeep:expires-at"] ?? "")).toBeGreaterThan(0);

    // What was kept is visible: in status --all (stateReason, and each resource in `kept`) and describe (resources).
    const summary = (await api("GET", "instances?all=true")).body.instances.find((i: { name: string }) => i.name === archivedAs);
    for (const r of [...kept.volumes, ...kept.enis]) expect(summary.stateReason).toContain(r.id);
    expect(summary.kept.map((k: { resourceId: string }) => k.resourceId).sort()).toEqual(
      [...kept.volumes, ...kept.enis].map((r) => r.id).sort(),
    );
    for (const k of summary.kept) expect(k).toMatchObject({ gone: false, expiresAt: expect.stringMatching(/^\d{4}-/) });
    const detail = (await api("GET", `instances/${encodeURIComponent(archivedAs)}`)).body;
    expect(detail.resources.network.eniId).toBe(kept.enis[0]!.id);
    expect(detail.resources.volumes.map((v: { volumeId: string }) => v.volumeId)).toEqual(kept.volumes.map((v) => v.id));
    expect((await h.coord.store.deletions.kept(archivedAs)).map((k) => k.resourceId).sort()).toEqual(
      [...kept.volumes, ...kept.enis].map((r) => r.id).sort(),
    );

    // The schedule's sweep deletes them once they expire.
    await until("the kept resources to expire and be deleted", async () => {
      const t = await tagged(name);
      return t.volumes.length === 0 && t.enis.length === 0;
    });
    const rows = await h.coord.store.deletions.kept(archivedAs);
    expect(rows.every((k) => k.deletedAt !== null)).toBe(true);
    const events = (await api("GET", `instances/${encodeURIComponent(archivedAs)}/events`)).body.events;
    expect(events.filter((e: { kind: string }) => e.kind === "kept-expired")).toHaveLength(rows.length);
    expect(await h.coord.metrics.text()).toMatch(/spotkeep_kept_resources_expired_total\{kind="volume"\} 1/);
  }, 180_000);

  it("from failed (a create refused for capacity) deletes the volume and ENI the create made", async () => {
    const name = "del-failed";
    for (const s of h.env.subnets)
      for (const market of ["spot", "on-demand"] as const)
        await h.env.control("PUT", "capacity", { instanceType: "m5.xlarge", availabilityZone: s.az, market, available: false });
    const { workflowId } = await h.coord.views.createInstance(parseSpec(h.spec(name, { instanceTypes: ["m5.xlarge"] })));
    expect((await h.coord.engine.wait(workflowId)).status).toBe("failed");
    expect((await api("GET", `instances/${name}`)).body.state).toBe("failed");
    const before = await tagged(name);
    expect(before.volumes.length + before.enis.length).toBe(2);

    const { archivedAs } = await deleteAndWait(name);
    expect(await tagged(name)).toEqual({ instances: [], volumes: [], enis: [], snapshots: [], images: [] });
    expect((await api("GET", `instances/${encodeURIComponent(archivedAs)}`)).body.state).toBe("deleted");
  }, 120_000);

  it("quiesces a running instance before terminating it (unmount, no freeze); --force skips it", async () => {
    const steps = async (wf: string) => (await h.coord.store.steps.list(wf)).map((x) => x.name);
    const quiesces = (id: string) => (h.agents.get(id)?.received ?? []).filter((m) => m.type === "quiesce");

    const name = "del-quiesce";
    await create(name);
    const id = (await api("GET", `instances/${name}`)).body.instanceId as string;
    const { workflowId, archivedAs } = await deleteAndWait(name);
    expect(quiesces(id)).toEqual([expect.objectContaining({ reason: "delete", unmount: true })]);
    expect((await steps(workflowId)).slice(0, 3)).toEqual(["begin", "quiesce", "terminate"]);
    const events = (await api("GET", `instances/${encodeURIComponent(archivedAs)}/events`)).body.events;
    expect(events.find((e: { kind: string }) => e.kind === "delete-started").message).toContain(`${id} quiesces first`);
    expect(events.map((e: { kind: string }) => e.kind)).not.toContain("quiesce-timeout");

    // --force (the CLI flag, sent as force=true): terminated at once, no quiesce asked for.
    const forced = "del-force";
    await create(forced);
    const forcedId = (await api("GET", `instances/${forced}`)).body.instanceId as string;
    const out = await h.cli("delete", forced, "--force", "--wait");
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    expect(quiesces(forcedId)).toEqual([]);
    const archived = (await api("GET", "instances?all=true")).body.instances.find((i: { name: string }) => i.name.startsWith(`${forced}~`));
    const forcedEvents = (await api("GET", `instances/${encodeURIComponent(archived.name)}/events`)).body.events;
    const started = forcedEvents.find((e: { kind: string }) => e.kind === "delete-started");
    expect(started.message).toContain(`forced: ${forcedId} is terminated without its preStop hook`);
    expect((await steps(started.workflowId)).slice(0, 2)).toEqual(["begin", "terminate"]);
    expect(await tagged(forced)).toEqual({ instances: [], volumes: [], enis: [], snapshots: [], images: [] });

    // The API field: force must be a boolean.
    const bad = await api("DELETE", "instances/no-such-thing", '{"force": "yes"}');
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toContain("body.force: must be true or false");
    const badQuery = await api("DELETE", "instances/no-such-thing?force=1");
    expect(badQuery.status).toBe(400);
    expect(badQuery.body.error.message).toContain("force: must be true or false");
  }, 180_000);

  it("waits for an agent that does not answer only within the hooks' timeout plus 30 s, then deletes with an event saying why", async () => {
    const name = "del-hung";
    await create(name);
    const id = (await api("GET", `instances/${name}`)).body.instanceId as string;
    h.hang(id);
    const { workflowId, archivedAs } = await deleteAndWait(name);
    const events = (await api("GET", `instances/${encodeURIComponent(archivedAs)}/events`)).body.events;
    const timeout = events.find((e: { kind: string }) => e.kind === "quiesce-timeout");
    // h.spec's hooks.timeoutSeconds is 30: the budget is 60 model seconds.
    expect(timeout?.message).toBe(
      `${id} did not report quiesced within 60 s; the preStop hook did not run or did not finish (its agent did not answer in time); ` +
        "terminating without it",
    );
    expect(timeout.workflowId).toBe(workflowId);
    const quiesce = (await h.coord.store.steps.list(workflowId)).find((x) => x.name === "quiesce");
    expect(quiesce?.result).toBe(false);
    expect(await tagged(name)).toEqual({ instances: [], volumes: [], enis: [], snapshots: [], images: [] });
  }, 120_000);

  it("a delete recorded before deletes quiesced (no quiesce in its input) goes on without the step", async () => {
    const name = "del-old";
    await create(name);
    const id = (await api("GET", `instances/${name}`)).body.instanceId as string;
    // Admitted as the earlier version did: the same input, without `quiesce`.
    const workflowId = await h.coord.store.tx(async (t) => {
      const inst = (await t.instances.get(name))!;
      const input = { name, keep: { ...KEEP_NOTHING }, ttlHours: null, archiveAs: `${name}~${new Date(inst.createdAt).toISOString()}` };
      const wf = await h.coord.engine.start("delete", name, input, "requested", t);
      await moveState(t, "delete", name, "during", "delete (keep: nothing)");
      return wf;
    });
    const wf = await h.coord.engine.wait(workflowId);
    expect(wf.error).toBeNull();
    expect((await h.coord.store.steps.list(workflowId)).map((x) => x.name).slice(0, 2)).toEqual(["begin", "terminate"]);
    expect((h.agents.get(id)?.received ?? []).filter((m) => m.type === "quiesce")).toEqual([]);
    expect(await tagged(name)).toEqual({ instances: [], volumes: [], enis: [], snapshots: [], images: [] });
  }, 120_000);

  it("refuses a bad keep item, a bad TTL, an unknown parameter and a TTL without keep by name, changing nothing; 404 and 409", async () => {
    const name = "del-bad";
    const started = await h.coord.views.createInstance(parseSpec(h.spec(name)));
    // While the create runs: 409 with the running workflow's id and kind.
    const busy = await api("DELETE", `instances/${name}`);
    expect(busy.status).toBe(409);
    expect(busy.body.error.message).toContain(`busy with create ${started.workflowId}`);
    await h.coord.engine.wait(started.workflowId);

    const counts = await h.coord.store.counts();
    const cases: Array<[string, string | undefined, string]> = [
      ["?keep=volumes,disks", undefined, '"disks"'],
      ["?keep=volumes&ttlHours=soon", undefined, "ttlHours"],
      ["?keep=volumes&ttlHours=-1", undefined, "ttlHours"],
      ["?keep=volumes&ttlHours=1000000", undefined, "ttlHours"],
      ["?kep=volumes", undefined, "kep: unknown parameter"],
      ["?ttlHours=5", undefined, "ttlHours: nothing is kept"],
      ["", '{"keep": ["images", "root"]}', '"root"'],
      ["", '{"keep": ["volumes"], "ttl": 5}', "body.ttl: unknown field"],
      ["", '{"keep": ["volumes"], "ttlHours": "5"}', "body.ttlHours"],
      ["?keep=volumes", '{"keep": ["volumes"]}', "not both"],
    ];
    for (const [query, body, says] of cases) {
      const r = await api("DELETE", `instances/${name}${query}`, body);
      expect(r.status, `${query} ${body}`).toBe(400);
      expect(r.body.error.message).toContain(says);
    }
    expect(await h.coord.store.counts()).toEqual(counts);
    expect((await api("GET", `instances/${name}`)).body.state).toBe("running");

    const missing = await api("DELETE", "instances/no-such-thing?keep=volumes");
    expect(missing.status).toBe(404);
    expect(missing.body.error.message).toContain("no-such-thing");
  }, 120_000);
});
