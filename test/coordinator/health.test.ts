/**
 * Health checks, autohealing and scheduled maintenance in process (test/support/in-process.ts:
 * localcloud without a runtime, the coordinator in this process, a fake agent per instance that
 * heartbeats and reports the application probe's result, time-scaled, the shipped IAM policy
 * enforced): a hung instance, an `impaired` one and an application whose health probe starts
 * failing are each recycled within grace period + unhealthy duration + one sweep, onto the same
 * IP; with `autoHealing: false` only the event and the gauge change; an EC2 scheduled event leads to
 * a recycle that finishes before its NotBefore.
 *
 * What needs real processes is proven elsewhere: the real agent probing a real application's HTTP
 * endpoint and the recycle that follows by test/coordinator/health-http.test.ts; every acknowledged
 * record after a hung instance's recycle (quiesce skipped) by test/coordinator/health-crash.test.ts,
 * after an agent-quiesced recycle by test/coordinator/crash.test.ts (its recycle cases).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSpec, type SpecInput } from "../../shared/spec.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { liveInstances, until } from "./harness.js";

/** The original's scale: JITTER_S below is 0.9 s real at it. */
const SCALE = 0.03;
/** Model ms between the coordinator's passes (lost instances, health checks). */
const SWEEP_MS = 5000;
const GRACE_S = 20;
const UNHEALTHY_S = 30;
/**
 * Allowance for a loaded test machine, model seconds (0.9 s real): the exact boundaries are the
 * unit tests' business (coordinator/health.test.ts, fake clock).
 */
const JITTER_S = 30;

let h: InProcess;

beforeAll(async () => {
  h = await startInProcess({ prefix: "spotkeep-inproc-health-", timeScale: SCALE, config: { lostCheckIntervalMs: SWEEP_MS } });
});
afterAll(async () => {
  await h?.stop();
});

async function create(name: string, extra: Partial<SpecInput>) {
  const spec = parseSpec({ ...h.spec(name), ...extra });
  const { workflowId } = await h.coord.views.createInstance(spec);
  const created = await h.coord.engine.wait(workflowId);
  expect(created.error).toBeNull();
  const d = (await h.coord.views.getInstance(name))!;
  return { instanceId: d.instanceId!, privateIp: d.privateIp! };
}

const workflows = async (name: string, trigger: string) =>
  (await h.coord.store.workflows.listFor(name)).filter((w) => w.trigger === trigger);
const kinds = async (name: string) => (await h.coord.store.events.list(name, 1000)).map((e) => e.kind);
const gauge = async () => Number(/^spotkeep_instances_unhealthy (\d+)/m.exec(await h.coord.metrics.text())?.[1] ?? Number.NaN);
const modelSeconds = (realMs: number) => realMs / 1000 / SCALE;

/** The recycle finished, onto the same IP, and the old instance is gone. */
async function expectRecycled(name: string, wfId: string, before: { instanceId: string; privateIp: string }) {
  const done = await h.coord.engine.wait(wfId);
  expect(done.error).toBeNull();
  expect(done.status).toBe("succeeded");
  const after = (await h.coord.views.getInstance(name))!;
  expect(after.state).toBe("running");
  expect(after.generation).toBe(2);
  expect(after.instanceId).not.toBe(before.instanceId);
  expect(after.privateIp).toBe(before.privateIp);
  expect((await liveInstances(h.env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
  return after;
}

describe("autohealing", () => {
  it("a hung instance (processes stopped, EC2 running) is recycled within grace + unhealthy duration + one sweep, quiesce skipped", async () => {
    const name = "hl-hung";
    const before = await create(name, { health: { type: "agent", gracePeriodSeconds: GRACE_S, unhealthyDurationSeconds: UNHEALTHY_S } });
    await until("the health to be known", async () => (await h.coord.views.getInstance(name))?.health?.status === "healthy", 30_000);
    const hungAt = Date.now();
    // Its processes stopped: the agent's connection stays open and says nothing more.
    h.hang(before.instanceId);
    const wf = await until("an autohealing recycle", async () => (await workflows(name, "autohealing"))[0], 60_000);
    const d = (await h.coord.views.getInstance(name))!;
    expect(d.health?.status).toMatch(/unhealthy|unknown/);
    expect(modelSeconds(wf.startedAt - hungAt)).toBeLessThanOrEqual(GRACE_S + UNHEALTHY_S + SWEEP_MS / 1000 + JITTER_S);
    expect(wf.kind).toBe("recycle");
    expect((wf.input as { skipQuiesce?: string }).skipQuiesce).toMatch(/not answering/);
    await expectRecycled(name, wf.id, before);
    const k = await kinds(name);
    expect(k).toContain("autohealing");
    expect(k).toContain("quiesce-skipped");
    expect(await workflows(name, "autohealing")).toHaveLength(1);
  });

  it("an instance whose EC2 status check is impaired is recycled likewise (its agent quiesces it)", async () => {
    const name = "hl-impaired";
    const before = await create(name, { health: { type: "ec2", gracePeriodSeconds: GRACE_S, unhealthyDurationSeconds: UNHEALTHY_S } });
    const impairedAt = Date.now();
    await h.env.control("POST", `instances/${before.instanceId}/status-checks`, { system: "impaired" });
    await until("the instance to be failing", async () => (await h.coord.views.getInstance(name))?.health?.status === "failing", 30_000);
    const wf = await until("an autohealing recycle", async () => (await workflows(name, "autohealing"))[0], 60_000);
    expect(modelSeconds(wf.startedAt - impairedAt)).toBeLessThanOrEqual(GRACE_S + UNHEALTHY_S + SWEEP_MS / 1000 + JITTER_S);
    expect((wf.input as { skipQuiesce?: string }).skipQuiesce).toBeUndefined();
    await expectRecycled(name, wf.id, before);
    expect(await kinds(name)).toContain("quiesced");
  });

  it("an application whose health probe starts failing is recycled likewise", async () => {
    const name = "hl-http";
    const port = 8080;
    const before = await create(name, {
      health: { type: "http", gracePeriodSeconds: GRACE_S, unhealthyDurationSeconds: UNHEALTHY_S, http: { port, path: "/healthz" } },
    });
    await until("the probe to pass", async () => (await h.coord.views.getInstance(name))?.health?.status === "healthy", 30_000);
    const failedAt = Date.now();
    h.failingProbe.add(before.instanceId);
    await until("the instance to be failing", async () => (await h.coord.views.getInstance(name))?.health?.status === "failing", 30_000);
    expect((await h.coord.views.getInstance(name))?.health?.reason).toMatch(
      new RegExp(`127\\.0\\.0\\.1:${port}/healthz failed \\(HTTP 503\\)`),
    );
    const wf = await until("an autohealing recycle", async () => (await workflows(name, "autohealing"))[0], 60_000);
    expect(modelSeconds(wf.startedAt - failedAt)).toBeLessThanOrEqual(GRACE_S + UNHEALTHY_S + SWEEP_MS / 1000 + JITTER_S);
    await expectRecycled(name, wf.id, before);
    await until(
      "the new generation's probe to pass",
      async () => (await h.coord.views.getInstance(name))?.health?.status === "healthy",
      30_000,
    );
  });

  it("with autoHealing: false, only the event and the gauge change", async () => {
    const name = "hl-observe";
    const before = await create(name, {
      health: { type: "ec2", gracePeriodSeconds: GRACE_S, unhealthyDurationSeconds: UNHEALTHY_S, autoHealing: false },
    });
    expect(await gauge()).toBe(0);
    await h.env.control("POST", `instances/${before.instanceId}/status-checks`, { instance: "impaired" });
    await until("the unhealthy event", async () => (await kinds(name)).includes("unhealthy"), 60_000);
    expect(await gauge()).toBe(1);
    const d = (await h.coord.views.getInstance(name))!;
    expect(d.health).toMatchObject({ type: "ec2", status: "unhealthy", reason: "EC2 instance status check impaired" });
    expect(Date.parse(d.health!.since!)).toBeGreaterThan(0);
    // A few more passes: still nothing moves.
    await new Promise((r) => setTimeout(r, (3 * SWEEP_MS * SCALE) | 0));
    expect((await h.coord.store.workflows.listFor(name)).map((w) => w.kind)).toEqual(["create"]);
    expect(d.instanceId).toBe(before.instanceId);
    await h.env.control("POST", `instances/${before.instanceId}/status-checks`, { instance: "ok" });
    await until("the healthy event", async () => (await kinds(name)).includes("healthy"), 30_000);
    expect(await gauge()).toBe(0);
  });
});

describe("scheduled maintenance", () => {
  it("an EC2 scheduled event leads to a recycle that finishes before its NotBefore", async () => {
    const name = "hl-maint";
    // An hour's lead (108 s real at this scale) leaves a loaded test machine room for the recycle.
    const before = await create(name, { maintenance: { recycle: true, leadSeconds: 3600 } });
    const { event } = await h.env.control("POST", `instances/${before.instanceId}/events`, {
      code: "instance-retirement",
      inSeconds: 3660,
    });
    const notBefore = Date.parse(event.notBefore);
    const wf = await until("a maintenance recycle", async () => (await workflows(name, "maintenance"))[0], 60_000);
    // Started no earlier than leadSeconds before NotBefore (second precision of EC2's event times aside).
    expect(wf.startedAt).toBeGreaterThanOrEqual(notBefore - 3_600_000 * SCALE - 1000);
    // The workflow's row exists before its first step marks the instance: on a busy machine the
    // first look can come in between.
    await until(
      "the instance to be marked recycling",
      async () => ((await h.coord.views.getInstance(name))?.state === "recycling" ? true : null),
      30_000,
    );
    await expectRecycled(name, wf.id, before);
    const done = (await h.coord.store.workflows.get(wf.id))!;
    expect(done.finishedAt).not.toBeNull();
    expect(done.finishedAt!).toBeLessThan(notBefore);
    const k = await kinds(name);
    expect(k).toContain("maintenance-scheduled");
    expect(k).toContain("maintenance");
    // The agent relayed IMDS events/maintenance/scheduled too; one recycle for both sources.
    expect(await workflows(name, "maintenance")).toHaveLength(1);
  });
});
