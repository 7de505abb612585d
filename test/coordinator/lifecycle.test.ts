/**
 * Lifecycle operations in process (test/support/in-process.ts: localcloud without a runtime, the
 * coordinator in this process, a fake agent per instance, time-scaled): pause → resume, recycle,
 * update with recycle, the way out of `failed` (resume and recycle), and the move back to spot.
 * After each: same private IP and ENI, same data volume, booted from the root image, exactly one
 * live EC2 instance and nothing orphaned; the CLI (in process) drives pause, resume and update.
 *
 * What only a real workload shows is proven by the process-level suites: every acknowledged record
 * on the data volume after pause, resume and recycle by test/coordinator/crash.test.ts (each of
 * those runbooks, crashed after every step, ends with acks ⊆ records); the root's first-boot marker
 * carried through the image, and the workload writing again on the new generation, by
 * test/coordinator/e2e.test.ts (a replacement, whose capture and image steps pause and recycle share).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseSpec, type StatefulInstanceSpec } from "../../shared/spec.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { liveInstances, until } from "./harness.js";

const NAME = "life";
let h: InProcess;
let first: { privateIp: string; eni: string; volume: string };
const api = (method: string, path: string, body?: string) =>
  h.api(method, path, body) as Promise<{
    status: number;
    body: { workflowId?: string | null; error?: { message: string }; allowedActions?: string[] };
  }>;

/**
 * Every EC2 resource tagged for the instance that no record accounts for: instances other than the
 * live generation, volumes other than its data volumes and the live root, ENIs other than its
 * own, snapshots and images that are not recorded (and not deleted) artifacts.
 */
async function orphans(): Promise<string[]> {
  const { coord, env } = h;
  const w = env.lc.world;
  const mine = <T extends { tags: Map<string, string> }>(m: Map<string, T>) =>
    [...m.entries()].filter(([, r]) => r.tags.get("spotkeep:instance") === NAME);
  const d = (await coord.views.getInstance(NAME))!;
  const [live] = d.instanceId ? await env.ec2.describeInstances([d.instanceId]) : [];
  const volumes = new Set([...d.resources.volumes.map((v) => v.volumeId), ...(live?.volumes.map((v) => v.volumeId) ?? [])]);
  const artifacts = new Set(
    (await Promise.all((["data-snapshot", "root-snapshot", "image"] as const).map((k) => coord.store.artifacts.list(NAME, k)))).flatMap(
      (l) => l.map((a) => a.id),
    ),
  );
  return [
    ...mine(w.instances)
      .filter(([id, i]) => i.state !== "terminated" && i.state !== "shutting-down" && id !== d.instanceId)
      .map(([id]) => id),
    ...mine(w.volumes)
      .filter(([id, v]) => v.state !== "deleted" && v.state !== "deleting" && !volumes.has(id))
      .map(([id]) => id),
    ...mine(w.enis)
      .filter(([id]) => id !== d.resources.network.eniId)
      .map(([id]) => id),
    ...mine(w.snapshots)
      .filter(([id]) => !artifacts.has(id))
      .map(([id]) => id),
    ...mine(w.images)
      .filter(([id]) => !artifacts.has(id))
      .map(([id]) => id),
  ];
}

/** The invariants after every operation that ends with the instance serving. */
async function expectSameIdentity(generation: number) {
  const { coord, env } = h;
  const d = (await coord.views.getInstance(NAME))!;
  expect(d.state).toBe("running");
  expect(d.generation).toBe(generation);
  expect(d.privateIp).toBe(first.privateIp);
  expect(d.resources.network.eniId).toBe(first.eni);
  expect(d.resources.volumes[0]?.volumeId).toBe(first.volume);
  const [inst] = await env.ec2.describeInstances([d.instanceId!]);
  expect(inst?.enis.find((e) => e.deviceIndex === 0)?.eniId).toBe(first.eni);
  expect(inst?.volumes.map((v) => v.volumeId)).toContain(first.volume);
  // The root lineage: booted from the image of the previous generation's root, not the base image.
  expect(d.resources.root.imageId).toMatch(/^ami-/);
  expect(d.resources.root.imageId).not.toBe(env.lc.world.baseImageId);
  expect(env.lc.world.instances.get(d.instanceId!)?.imageId).toBe(d.resources.root.imageId);
  expect((await liveInstances(h.env, NAME)).map((i) => i.instanceId)).toEqual([d.instanceId]);
  expect(await orphans()).toEqual([]);
  return d;
}

async function finished(workflowId: string) {
  const wf = await h.coord.engine.wait(workflowId);
  expect(wf.error).toBeNull();
  expect(wf.status).toBe("succeeded");
  return wf;
}

beforeAll(async () => {
  h = await startInProcess({ prefix: "spotkeep-inproc-life-", config: { revertToSpotIntervalMinutes: 0.5 } });
  const { workflowId } = await h.coord.views.createInstance(parseSpec(h.spec(NAME)));
  await finished(workflowId);
  const d = (await h.coord.views.getInstance(NAME))!;
  first = {
    privateIp: d.privateIp!,
    eni: d.resources.network.eniId!,
    volume: d.resources.volumes[0]!.volumeId!,
  };
});
afterAll(async () => {
  await h?.stop();
});

describe("lifecycle operations (in process)", () => {
  it("pauses: nothing runs, ENI and volume kept; resume brings the same identity back", async () => {
    const old = (await h.coord.views.getInstance(NAME))!;
    // The API lists what the coordinator would start now (the console shows exactly these).
    expect((await api("GET", `instances/${NAME}`)).body.allowedActions).toEqual(["pause", "recycle", "snapshot", "delete", "update"]);
    const paused = await h.cli("pause", NAME, "--wait", "--json");
    expect(paused.code, paused.stderr).toBe(0);
    const d = (await h.coord.views.getInstance(NAME))!;
    expect(d.state).toBe("paused");
    expect(d.allowedActions).toEqual(["resume", "delete", "update"]);
    expect((await liveInstances(h.env, NAME)).length).toBe(0);
    expect((await h.env.ec2.describeInstances([old.instanceId!]))[0]?.state).toBe("terminated");
    expect((await h.env.ec2.describeVolume(first.volume))?.state).toBe("available");
    expect((await h.env.ec2.describeNetworkInterface(first.eni))?.status).toBe("available");
    const events = (await h.coord.views.getEvents(NAME))!.events;
    expect(events.find((e) => e.kind === "paused")?.message).toMatch(
      new RegExp(`kept: ENI ${first.eni}, /dev/sdf ${first.volume}, root image ami-`),
    );

    // Operations that do not apply to a paused instance are refused with the state and what is allowed.
    const again = await api("POST", `instances/${NAME}/pause`);
    expect(again.status).toBe(409);
    expect(again.body.error?.message).toBe(`${NAME} is paused; pause is allowed from running`);
    expect((await api("POST", "instances/nope/resume")).status).toBe(404);

    const resumed = await h.cli("resume", NAME, "--wait");
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toContain(`${NAME} is running again`);
    await expectSameIdentity(2);
  });

  it("recycles a running instance onto a new generation with the same identity", async () => {
    const r = await api("POST", `instances/${NAME}/recycle`);
    expect(r.status).toBe(202);
    // One workflow at a time: a second operation names the running one.
    const busy = await api("POST", `instances/${NAME}/pause`);
    expect(busy.status).toBe(409);
    expect(busy.body.error?.message).toMatch(new RegExp(`${NAME} is busy with recycle ${r.body.workflowId}`));
    await finished(r.body.workflowId!);
    await expectSameIdentity(3);
  });

  it("updates the spec: immutable fields are refused by name; --recycle applies the rest now", async () => {
    const spec = (await h.coord.views.getInstance(NAME))!.spec as StatefulInstanceSpec;
    const bad = { ...spec, persistence: { ...spec.persistence, volumes: [{ ...spec.persistence.volumes[0]!, fsType: "xfs" }] } };
    const refused = await api("PUT", `instances/${NAME}`, JSON.stringify(bad));
    expect(refused.status).toBe(400);
    expect(refused.body.error?.message).toMatch(/persistence\.volumes\[0\]\.fsType: cannot change on an existing volume/);

    const next = { ...spec, launch: { ...spec.launch, instanceTypes: ["m6i.large", "m5.large"] } };
    const file = join(h.dir, "next.json");
    writeFileSync(file, JSON.stringify(next));
    const updated = await h.cli("update", NAME, "-f", file, "--recycle", "--wait");
    expect(updated.code, updated.stderr).toBe(0);
    const d = await expectSameIdentity(4);
    expect(d.instanceType).toBe("m6i.large");
  });

  it("gets out of failed with resume, and with recycle", async () => {
    // No capacity anywhere: a recycle fails after the old instance is gone, and the instance is failed.
    const types = ["m6i.large", "m5.large"];
    const setAll = async (available: boolean) => {
      for (const t of types)
        for (const s of h.env.subnets)
          for (const market of ["spot", "on-demand"] as const)
            await h.env.control("PUT", "capacity", { instanceType: t, availabilityZone: s.az, market, available });
    };
    await setAll(false);
    const r = await api("POST", `instances/${NAME}/recycle`);
    const wf = await h.coord.engine.wait(r.body.workflowId!);
    expect(wf.status).toBe("failed");
    expect((await h.coord.views.getInstance(NAME))!.state).toBe("failed");
    expect((await api("POST", `instances/${NAME}/pause`)).body.error?.message).toBe(`${NAME} is failed; pause is allowed from running`);

    await setAll(true);
    const resumed = await api("POST", `instances/${NAME}/resume`);
    expect(resumed.status).toBe(202);
    await finished(resumed.body.workflowId!);
    const d = await expectSameIdentity(5);

    // Failed again; a recycle of a failed instance with no EC2 instance to quiesce starts from the kept resources.
    await setAll(false);
    const r2 = await api("POST", `instances/${NAME}/recycle`);
    expect((await h.coord.engine.wait(r2.body.workflowId!)).status).toBe("failed");
    await setAll(true);
    const recycled = await api("POST", `instances/${NAME}/recycle`);
    expect(recycled.status).toBe(202);
    await finished(recycled.body.workflowId!);
    const after = await expectSameIdentity(6);
    expect(after.instanceId).not.toBe(d.instanceId);
    const events = (await h.coord.views.getEvents(NAME))!.events;
    expect(events.some((e) => e.kind === "resume-started" && /recycle of a failed instance/.test(e.message))).toBe(true);
  });

  it("moves an on-demand generation back to spot once spot capacity returns, and leaves it serving until then", async () => {
    const { availabilityZone: az, generation: g0 } = (await h.coord.views.getInstance(NAME))!;
    const spot = async (available: boolean) => {
      for (const t of ["m6i.large", "m5.large"])
        await h.env.control("PUT", "capacity", { instanceType: t, availabilityZone: az!, market: "spot", available });
    };
    // No spot capacity: a recycle falls back to on-demand.
    await spot(false);
    const r = await api("POST", `instances/${NAME}/recycle`);
    await finished(r.body.workflowId!);
    const onDemand = await expectSameIdentity(g0 + 1);
    expect(onDemand.lifecycle).toBe("on-demand");

    // Still none: the schedule's attempt probes, finds no capacity, and the on-demand instance keeps serving.
    const attempts = async () => (await h.coord.store.workflows.listFor(NAME)).filter((w) => w.trigger === "revert-to-spot");
    const attempt = await until("a move-back-to-spot attempt", async () => (await attempts())[0]);
    expect((await finished(attempt.id)).result).toEqual({ reverted: false });
    const still = (await h.coord.views.getInstance(NAME))!;
    expect({ id: still.instanceId, lifecycle: still.lifecycle, state: still.state, generation: still.generation }).toEqual({
      id: onDemand.instanceId,
      lifecycle: "on-demand",
      state: "running",
      generation: g0 + 1,
    });
    const events = (await h.coord.views.getEvents(NAME))!.events;
    expect(events.some((e) => e.kind === "revert-to-spot" && /no spot capacity .*keeps serving/.test(e.message))).toBe(true);
    // The probe left nothing running.
    expect((await liveInstances(h.env, NAME)).map((i) => i.instanceId)).toEqual([onDemand.instanceId]);

    // Spot is back: a later attempt (at most one per revertToSpotIntervalMinutes) recycles onto spot.
    // At this time scale another attempt can start before the capacity returns: it reverts nothing.
    await spot(true);
    const move = await until("a move-back-to-spot attempt that moved", async () => {
      const ended = await Promise.all((await attempts()).map((w) => h.coord.engine.wait(w.id)));
      return ended.find((w) => w.status === "succeeded" && (w.result as { reverted?: boolean } | null)?.reverted !== false);
    });
    await finished(move.id);
    for (const w of await attempts()) if (w.id !== move.id) expect((await finished(w.id)).result).toEqual({ reverted: false });
    const back = await expectSameIdentity(g0 + 2);
    expect(back.lifecycle).toBe("spot");
  });
});
