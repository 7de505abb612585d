/**
 * Fault tests through localcloud's control API: capacity fallbacks (next type, on-demand, a clear
 * failure when neither is allowed), throttling and failNext on attach/detach, a lost instance,
 * ten simultaneous interruptions with throttling on, and a rebalance recommendation (a snapshot,
 * or with onRebalance: recycle a recycle onto a new generation).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSpec } from "../../shared/spec.js";
import type { Coordinator } from "../../coordinator/service.js";
import { ensureAgentBundle, inProcessCoordinator, liveInstances, readAcks, readRecords, startEnv, until, type Env } from "./harness.js";

const SCALE = 0.03;
let dir: string;
let env: Env;
let coord: Coordinator;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-faults-"));
  env = await startEnv(dir, SCALE, { throttle: true });
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE, { lostCheckIntervalMs: 3000 });
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const capacity = (instanceType: string, market: "spot" | "on-demand", available: boolean, availabilityZone = "us-east-1a") =>
  env.control("PUT", "capacity", { instanceType, availabilityZone, market, available });

async function create(name: string, o: Parameters<Env["spec"]>[1] = {}) {
  const { workflowId } = await coord.views.createInstance(parseSpec(env.spec(name, o)));
  return coord.engine.wait(workflowId);
}

async function replaceOf(name: string) {
  const wf = await until(
    `a replace workflow for ${name}`,
    async () => (await coord.store.workflows.listFor(name)).find((w) => w.kind === "replace"),
    60_000,
  );
  return coord.engine.wait(wf.id);
}

describe("capacity fallbacks", () => {
  it("uses the next instance type when the first has no spot capacity", async () => {
    await capacity("m5.large", "spot", false);
    try {
      const wf = await create("cap-next-type", { workload: false });
      expect(wf.error).toBeNull();
      const d = (await coord.views.getInstance("cap-next-type"))!;
      expect(d).toMatchObject({ state: "running", instanceType: "m6i.large", lifecycle: "spot" });
      expect(
        (await coord.views.getEvents("cap-next-type"))!.events.some(
          (e) => e.kind === "fallback" && /m5\.large.*InsufficientInstanceCapacity/.test(e.message),
        ),
      ).toBe(true);
    } finally {
      await capacity("m5.large", "spot", true);
    }
  });

  it("falls back to on-demand when spot is gone everywhere and the spec allows it", async () => {
    await capacity("m5.large", "spot", false);
    await capacity("m6i.large", "spot", false);
    try {
      const wf = await create("cap-on-demand", { workload: false });
      expect(wf.error).toBeNull();
      expect(await coord.views.getInstance("cap-on-demand")).toMatchObject({
        state: "running",
        instanceType: "m5.large",
        lifecycle: "on-demand",
      });
    } finally {
      await capacity("m5.large", "spot", true);
      await capacity("m6i.large", "spot", true);
    }
  });

  it("fails with a clear reason when spot is gone and on-demand is not allowed", async () => {
    await capacity("m5.large", "spot", false);
    await capacity("m6i.large", "spot", false);
    try {
      const wf = await create("cap-none", { workload: false, fallbackToOnDemand: false });
      expect(wf.status).toBe("failed");
      const d = (await coord.views.getInstance("cap-none"))!;
      expect(d.state).toBe("failed");
      expect(d.stateReason).toMatch(
        new RegExp(
          "no capacity for cap-none generation 1: spot m5\\.large in us-east-1a: InsufficientInstanceCapacity; " +
            "spot m6i\\.large in us-east-1a: InsufficientInstanceCapacity",
        ),
      );
      expect(await liveInstances(env, "cap-none")).toEqual([]);
    } finally {
      await capacity("m5.large", "spot", true);
      await capacity("m6i.large", "spot", true);
    }
  });
});

describe("cross-AZ", () => {
  it("moves a reattach instance (no ENI pinning it) to another AZ through snapshots when its AZ has no capacity", async () => {
    const acks = join(dir, "xaz.acks");
    const spec = env.spec("xaz", { acks });
    spec.persistence!.network = { privateIp: "none" };
    const { workflowId } = await coord.views.createInstance(parseSpec(spec));
    expect((await coord.engine.wait(workflowId)).error).toBeNull();
    const old = (await coord.views.getInstance("xaz"))!;
    expect(old.availabilityZone).toBe("us-east-1a");
    await until("acked records", () => readAcks(acks).length > 5);
    const types = ["m5.large", "m6i.large"];
    for (const t of types) for (const m of ["spot", "on-demand"] as const) await capacity(t, m, false);
    try {
      await env.control("POST", `instances/${old.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
      const wf = await replaceOf("xaz");
      expect(wf.error).toBeNull();
      const d = (await coord.views.getInstance("xaz"))!;
      expect(d.state).toBe("running");
      expect(d.availabilityZone).not.toBe("us-east-1a");
      expect(d.resources.volumes[0]!.volumeId).not.toBe(old.resources.volumes[0]!.volumeId);
      expect(d.resources.volumes[0]!.availabilityZone).toBe(d.availabilityZone);
      expect((await coord.views.getEvents("xaz"))!.events.some((e) => e.kind === "cross-az")).toBe(true);
      const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
      const records = readRecords(join(env.rootDir(d.instanceId!), "data", "records.log"));
      expect(acked.filter((n) => !records.has(n))).toEqual([]);
    } finally {
      for (const t of types) for (const m of ["spot", "on-demand"] as const) await capacity(t, m, true);
    }
  });
});

describe("address pool", () => {
  it("gives the replacement the same pool address once the old instance lets it go", async () => {
    const acks = join(dir, "pool.acks");
    const spec = env.spec("pool", { acks });
    const ip = "172.31.0.200";
    spec.persistence!.network = { privateIp: "pool", ipPool: ["172.31.16.200", ip] };
    const { workflowId } = await coord.views.createInstance(parseSpec(spec));
    expect((await coord.engine.wait(workflowId)).error).toBeNull();
    const old = (await coord.views.getInstance("pool"))!;
    expect(old.privateIp).toBe(ip); // home is us-east-1a, where 172.31.0.200 fits
    await env.control("POST", `instances/${old.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await replaceOf("pool");
    expect(wf.error).toBeNull();
    const d = (await coord.views.getInstance("pool"))!;
    expect(d).toMatchObject({ state: "running", generation: 2, privateIp: ip });
    const [inst] = await env.ec2.describeInstances([d.instanceId!]);
    expect(inst!.privateIp).toBe(ip);
  });
});

describe("snapshots", () => {
  it("snapshots the data volumes on a rebalance recommendation (onRebalance: snapshot) and on request", async () => {
    expect((await create("snap", { workload: false })).error).toBeNull();
    const d = (await coord.views.getInstance("snap"))!;
    expect(d.resources.volumes[0]!.latestSnapshotId).toBeNull();
    await env.control("POST", `instances/${d.instanceId}/rebalance`, {});
    const wf = await until(
      "a snapshot workflow",
      async () => (await coord.store.workflows.listFor("snap")).find((w) => w.kind === "snapshot"),
      60_000,
    );
    expect((await coord.engine.wait(wf.id)).error).toBeNull();
    expect((await coord.store.steps.list(wf.id)).map((s) => s.name)).toEqual([
      "begin",
      "freeze",
      "snapshot /dev/sdf",
      "thaw",
      "wait-snapshots",
      "retention",
    ]);
    const first = (await coord.views.getInstance("snap"))!.resources.volumes[0]!.latestSnapshotId!;
    expect((await env.ec2.describeSnapshot(first))?.state).toBe("completed");

    const res = await fetch(`${coord.url}/api/v1/instances/snap/snapshot`, {
      method: "POST",
      headers: { authorization: `Bearer ${coord.adminToken}` },
    });
    expect(res.status).toBeLessThan(300);
    const { workflowId } = (await res.json()) as { workflowId: string };
    expect((await coord.engine.wait(workflowId)).error).toBeNull();
    const second = (await coord.views.getInstance("snap"))!.resources.volumes[0]!.latestSnapshotId!;
    expect(second).not.toBe(first);
    expect((await coord.views.getInstance("snap"))!.state).toBe("running");
  });
});

describe("rebalance recommendation with onRebalance: recycle", () => {
  it("recycles onto generation 2 before EC2 takes the instance: same private IP and ENI, every acknowledged record", async () => {
    const acks = join(dir, "rebal.acks");
    const spec = env.spec("rebal", { acks });
    spec.onRebalance = "recycle";
    const { workflowId } = await coord.views.createInstance(parseSpec(spec));
    expect((await coord.engine.wait(workflowId)).error).toBeNull();
    const old = (await coord.views.getInstance("rebal"))!;
    await until("acked records", () => readAcks(acks).length > 5);

    await env.control("POST", `instances/${old.instanceId}/rebalance`, {});
    const wf = await until(
      "a recycle workflow",
      async () => (await coord.store.workflows.listFor("rebal")).find((w) => w.kind === "recycle"),
      60_000,
    );
    expect(wf.trigger).toBe("recycle");
    expect((await coord.engine.wait(wf.id)).error).toBeNull();
    const d = (await coord.views.getInstance("rebal"))!;
    expect(d).toMatchObject({ state: "running", generation: 2, privateIp: old.privateIp });
    expect(d.instanceId).not.toBe(old.instanceId);
    expect(d.resources.network.eniId).toBe(old.resources.network.eniId);
    expect((await coord.store.workflows.listFor("rebal")).filter((w) => w.kind === "replace" || w.kind === "snapshot")).toEqual([]);
    // Acks first: a record is on disk before its ack is written; every acked one is on the new generation's volume.
    const acked = readAcks(acks);
    const records = readRecords(join(env.rootDir(d.instanceId!), "data", "records.log"));
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
    const started = (await coord.views.getEvents("rebal"))!.events.find((e) => e.kind === "recycle-started");
    expect(started?.message).toBe(`rebalance recommendation: recycling ${old.instanceId} (generation 1)`);
  });
});

describe("continuous snapshots", () => {
  it("snapshots every snapshots.intervalMinutes (model time) while the instance runs", async () => {
    const spec = env.spec("cont", { workload: false });
    spec.snapshots = { intervalMinutes: 5, keep: 2 };
    const { workflowId } = await coord.views.createInstance(parseSpec(spec));
    expect((await coord.engine.wait(workflowId)).error).toBeNull();
    const wf = await until(
      "a scheduled snapshot",
      async () => (await coord.store.workflows.listFor("cont")).find((w) => w.kind === "snapshot" && w.trigger === "every 5 min"),
      60_000,
    );
    expect((await coord.engine.wait(wf.id)).error).toBeNull();
    expect((await coord.views.getInstance("cont"))!.resources.volumes[0]!.latestSnapshotId).toMatch(/^snap-/);
  });
});

describe("API errors and lost instances", () => {
  it("retries RequestLimitExceeded bursts and failNext errors on attach and detach to success", async () => {
    const acks = join(dir, "flaky.acks");
    expect((await create("flaky", { acks })).error).toBeNull();
    const old = (await coord.views.getInstance("flaky"))!;
    await until("acked records", () => readAcks(acks).length > 5);
    await env.control("PUT", "faults", {
      failNext: [
        { action: "AttachVolume", code: "RequestLimitExceeded", count: 4 },
        { action: "AttachVolume", code: "IncorrectState", count: 1 },
        { action: "RunInstances", code: "RequestLimitExceeded", count: 3 },
        { action: "CreateSnapshot", code: "RequestLimitExceeded", count: 2 },
        { action: "DescribeInstances", code: "RequestLimitExceeded", count: 3 },
      ],
    });
    await env.control("POST", `instances/${old.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await replaceOf("flaky");
    expect(wf.error).toBeNull();
    const d = (await coord.views.getInstance("flaky"))!;
    expect(d).toMatchObject({ state: "running", generation: 2, privateIp: old.privateIp });
    const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
    const records = readRecords(join(env.rootDir(d.instanceId!), "data", "records.log"));
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
  });

  it("retries throttled DetachVolume and AttachVolume calls (failNext) to success", async () => {
    const d = (await coord.views.getInstance("flaky"))!;
    const vol = d.resources.volumes[0]!.volumeId!;
    await env.control("PUT", "faults", { failNext: [{ action: "DetachVolume", code: "RequestLimitExceeded", count: 2 }] });
    // A detach of a volume that is attached: the SDK retries the throttled answers.
    const gw = env.ec2;
    await gw.detachVolume(vol, d.instanceId!);
    await until("the volume to detach", async () => (await gw.describeVolume(vol))?.state === "available", 30_000);
    await gw.attachVolume(vol, d.instanceId!, "/dev/sdf");
    await until("the volume to reattach", async () => (await gw.describeVolume(vol))?.attachments[0]?.state === "attached", 30_000);
  });

  it("recovers an instance lost without a notice (found by the batched DescribeInstances sweep)", async () => {
    const acks = join(dir, "lost.acks");
    expect((await create("lost", { acks })).error).toBeNull();
    const old = (await coord.views.getInstance("lost"))!;
    await until("acked records", () => readAcks(acks).length > 5);
    await env.control("POST", `instances/${old.instanceId}/lose`, {});
    const wf = await replaceOf("lost");
    expect(wf.error).toBeNull();
    expect(wf.trigger).toBe("lost");
    const d = (await coord.views.getInstance("lost"))!;
    expect(d).toMatchObject({ state: "running", generation: 2, privateIp: old.privateIp });
    expect(d.resources.volumes[0]!.volumeId).toBe(old.resources.volumes[0]!.volumeId);
    const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
    const records = readRecords(join(env.rootDir(d.instanceId!), "data", "records.log"));
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
    expect((await coord.store.steps.list(wf.id)).map((s) => s.name)).not.toContain("quiesce");
  });
});

describe("many interruptions at once", () => {
  it("recovers ten stateful instances interrupted at the same moment, with throttling on", async () => {
    const names = Array.from({ length: 10 }, (_, i) => `burst-${i}`);
    const created = await Promise.all(names.map((n) => create(n, { workload: false, root: false })));
    expect(created.map((w) => w.error)).toEqual(names.map(() => null));
    const before = await Promise.all(names.map(async (n) => (await coord.views.getInstance(n))!));
    await Promise.all(
      before.map((d) => env.control("POST", `instances/${d.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 })),
    );
    const results = await Promise.all(names.map((n) => replaceOf(n)));
    expect(results.map((w) => w.error)).toEqual(names.map(() => null));
    for (const [i, n] of names.entries()) {
      const d = (await coord.views.getInstance(n))!;
      expect(d).toMatchObject({ state: "running", generation: 2, privateIp: before[i]!.privateIp });
      expect(d.resources.volumes[0]!.volumeId).toBe(before[i]!.resources.volumes[0]!.volumeId);
      expect((await liveInstances(env, n)).map((x) => x.instanceId)).toEqual([d.instanceId]);
    }
  }, 180_000);
});
