import { beforeEach, describe, expect, it } from "vitest";
import { FakeClock, scaledClock } from "../shared/clock.js";
import { parseSpec, type SpecInput } from "../shared/spec.js";
import type { InstanceStatusInfo } from "./cloud/gateway.js";
import { SqliteStore } from "./db/sqlite/index.js";
import { type HealthDeps, HealthMonitor } from "./health.js";

const ID = "i-0123456789abcdef0";
let fake: FakeClock;
let store: SqliteStore;
let statuses: Map<string, InstanceStatusInfo>;
let healed: Array<{ name: string; instanceId: string; trigger: string; reason: string; skipQuiesce?: string }>;
let busy: boolean;
let gauge: number;
let monitor: HealthMonitor;
let asked: string[][];

const ok = (over: Partial<InstanceStatusInfo> = {}): InstanceStatusInfo => ({
  instanceId: ID,
  system: "ok",
  instance: "ok",
  impairedSince: null,
  events: [],
  ...over,
});

async function setUp(extra: Partial<SpecInput>, timeScale = 1) {
  fake = new FakeClock();
  store = SqliteStore.open(":memory:", () => fake.now());
  statuses = new Map([[ID, ok()]]);
  healed = [];
  busy = false;
  gauge = -1;
  asked = [];
  const spec = parseSpec({
    name: "db",
    launch: { imageId: "ami-0abc0123456789def", instanceTypes: ["m5.large"], subnetIds: ["subnet-0a0000000000000a1"] },
    ...extra,
  });
  await store.instances.insert("db", spec, "running");
  await store.generations.ensure("db", 1, "wf-create");
  await store.generations.recordLaunch("db", 1, {
    ec2InstanceId: ID,
    instanceType: "m5.large",
    availabilityZone: "us-east-1a",
    market: "spot",
    privateIp: "10.0.0.5",
  });
  await store.generations.markLive("db", 1);
  await store.instances.setCurrentGeneration("db", 1);
  const deps: HealthDeps = {
    store,
    clock: scaledClock(timeScale, fake),
    ec2: {
      describeInstanceStatus: async (ids) => {
        asked.push(ids);
        return ids.flatMap((id) => (statuses.has(id) ? [statuses.get(id)!] : []));
      },
    },
    operations: {
      startHealing: async (name, instanceId, o) => {
        if (busy) return null;
        healed.push({ name, instanceId, ...o });
        return `wf-${healed.length}`;
      },
    },
    metrics: { unhealthy: { set: (n: number) => void (gauge = n) } as never },
    log: () => undefined,
  };
  monitor = new HealthMonitor(deps);
}

/** Advance `s` seconds of (fake) wall time, the agent heartbeating every 5 s unless silent. */
async function run(s: number, o: { agent?: boolean; health?: { ok: boolean; detail: string } } = {}) {
  for (let t = 0; t < s; t += 5) {
    await fake.advance(5000);
    if (o.agent !== false) monitor.heartbeat(ID, o.health ? { ...o.health, checkedAt: new Date(fake.now()).toISOString() } : undefined);
    await monitor.sweep();
  }
}
const view = async () => (await monitor.decorate([{ name: "db", instanceId: ID, state: "running" } as never]))[0]!.health;
const events = async (kind: string) => (await store.events.list("db")).filter((e) => e.kind === kind).map((e) => e.message);

describe("agent health", () => {
  beforeEach(() => setUp({ health: { type: "agent", gracePeriodSeconds: 30, unhealthyDurationSeconds: 60 } }));

  it("is initializing in the grace period, healthy while heartbeats arrive, and asks EC2 once per pass for every live instance", async () => {
    await run(10);
    expect(await view()).toMatchObject({ type: "agent", status: "initializing" });
    await run(60);
    expect(await view()).toMatchObject({ status: "healthy", reason: null });
    expect(asked.every((ids) => ids.length === 1 && ids[0] === ID)).toBe(true);
    expect(healed).toEqual([]);
    expect(gauge).toBe(0);
  });

  it("a silent agent (EC2 says running) is failing, then unhealthy after the unhealthy duration, and recycled once with quiesce skipped", async () => {
    await run(60);
    const silentFrom = fake.now();
    await run(30, { agent: false });
    const v = await view();
    expect(v).toMatchObject({ status: "failing", since: new Date(silentFrom).toISOString() });
    expect(v?.reason).toMatch(/the agent has been silent for 30 s while EC2 says running/);
    expect(healed).toEqual([]);
    await run(30, { agent: false });
    expect(healed).toEqual([
      expect.objectContaining({ name: "db", instanceId: ID, trigger: "autohealing", skipQuiesce: `the agent of ${ID} is not answering` }),
    ]);
    expect(healed[0]!.reason).toMatch(new RegExp(`${ID} unhealthy since ${new Date(silentFrom).toISOString()}`));
    expect(await view()).toMatchObject({ status: "unhealthy" });
    expect(gauge).toBe(1);
    await run(30, { agent: false });
    expect(healed).toHaveLength(1);
  });

  it("silence within the grace period counts from its end", async () => {
    await run(25, { agent: false });
    expect((await view())?.status).toBe("initializing");
    // Grace ends at 30 s; 60 s of counted silence makes it unhealthy at 90 s, not at 60 s.
    await run(60, { agent: false });
    expect(healed).toEqual([]);
    await run(10, { agent: false });
    expect(healed).toHaveLength(1);
  });

  it("after a coordinator restart, silence counts from the restart, never from before it", async () => {
    await run(60);
    await run(50, { agent: false });
    // A new monitor (a restarted coordinator) knows nothing of the 50 s of silence.
    monitor = new HealthMonitor((monitor as unknown as { d: HealthDeps }).d);
    await run(55, { agent: false });
    expect(healed).toEqual([]);
    expect((await view())?.status).toBe("failing");
    await run(5, { agent: false });
    expect(healed).toHaveLength(1);
  });

  it("forgets what agents of generations it does not judge said", async () => {
    monitor.heartbeat("i-0fffffffffffffff0", { ok: true, detail: "HTTP 200", checkedAt: new Date(fake.now()).toISOString() });
    await monitor.sweep();
    const m = monitor as unknown as { pendingHeard: Map<string, number>; pendingReports: Map<string, unknown> };
    expect(m.pendingHeard.size + m.pendingReports.size).toBe(0);
  });

  it("retries the recycle on the next pass while another workflow moves the instance", async () => {
    busy = true;
    await run(110, { agent: false });
    expect(healed).toEqual([]);
    busy = false;
    await run(5, { agent: false });
    expect(healed).toHaveLength(1);
  });

  it("an instance EC2 does not list as running is not judged by its agent (the lost-instance sweep handles it)", async () => {
    statuses.clear();
    await run(200, { agent: false });
    expect(healed).toEqual([]);
    expect(await view()).toMatchObject({ status: "unknown", reason: "EC2 does not list it as running" });
  });
});

describe("ec2 health", () => {
  beforeEach(() => setUp({ health: { type: "ec2", gracePeriodSeconds: 0, unhealthyDurationSeconds: 30 } }));

  it("an impaired status check is failing, then unhealthy; recovery before the duration resets it", async () => {
    await run(10);
    statuses.set(ID, ok({ system: "impaired", impairedSince: fake.now() }));
    await run(20);
    expect(await view()).toMatchObject({ status: "failing", reason: "EC2 system status check impaired" });
    statuses.set(ID, ok());
    await run(5);
    expect((await view())?.status).toBe("healthy");
    statuses.set(ID, ok({ instance: "impaired", impairedSince: fake.now() }));
    await run(25);
    expect(healed).toEqual([]);
    await run(10);
    // The agent still answers: it is asked to quiesce.
    expect(healed).toEqual([expect.objectContaining({ trigger: "autohealing", skipQuiesce: undefined })]);
    expect(healed[0]!.reason).toMatch(/EC2 instance status check impaired/);
  });
});

describe("http health", () => {
  beforeEach(() =>
    setUp({ health: { type: "http", gracePeriodSeconds: 0, unhealthyDurationSeconds: 20, http: { port: 8080, path: "/healthz" } } }),
  );

  it("failing probe reports for the unhealthy duration recycle the instance; the agent is asked to quiesce", async () => {
    await run(10, { health: { ok: true, detail: "HTTP 200" } });
    expect((await view())?.status).toBe("healthy");
    await run(15, { health: { ok: false, detail: "HTTP 503" } });
    expect(await view()).toMatchObject({ status: "failing", reason: "http://127.0.0.1:8080/healthz failed (HTTP 503)" });
    await run(10, { health: { ok: false, detail: "HTTP 503" } });
    expect(healed).toEqual([expect.objectContaining({ trigger: "autohealing", skipQuiesce: undefined })]);
  });

  it("no report yet is not a failure; a silent agent is", async () => {
    await run(60);
    expect((await view())?.status).toBe("healthy");
    await run(40, { agent: false });
    expect(healed).toHaveLength(1);
  });
});

describe("autoHealing: false", () => {
  beforeEach(() => setUp({ health: { type: "ec2", gracePeriodSeconds: 0, unhealthyDurationSeconds: 10, autoHealing: false } }));

  it("records one event and sets the gauge, recycles nothing, and notes the recovery", async () => {
    statuses.set(ID, ok({ system: "impaired", impairedSince: fake.now() }));
    await run(30);
    expect(healed).toEqual([]);
    expect(gauge).toBe(1);
    expect(await events("unhealthy")).toEqual([expect.stringMatching(/is unhealthy since .*autoHealing is off, nothing is done/)]);
    statuses.set(ID, ok());
    await run(5);
    expect(gauge).toBe(0);
    expect(await events("healthy")).toHaveLength(1);
  });
});

describe("scheduled maintenance", () => {
  const event = (inSeconds: number, active = true) => ({
    eventId: "instance-event-0123456789abcdef0",
    code: "instance-retirement",
    description: active ? "The instance is running on degraded hardware" : "[Completed] The instance is running on degraded hardware",
    notBefore: fake.now() + inSeconds * 1000,
    notAfter: null,
    active,
  });

  it("puts the event on the timeline once and starts a recycle leadSeconds before NotBefore", async () => {
    await setUp({ maintenance: { leadSeconds: 300 } });
    statuses.set(ID, ok({ events: [event(600)] }));
    await run(10);
    expect(await events("maintenance-scheduled")).toEqual([
      expect.stringMatching(/instance-retirement .* recycling at .* \(300 s ahead\)/),
    ]);
    const d = monitor.maintenanceOf(ID, { maintenance: { recycle: true, leadSeconds: 300 } });
    expect(d).toHaveLength(1);
    expect(Date.parse(d[0]!.notBefore!) - Date.parse(d[0]!.recycleAt!)).toBe(300_000);
    await run(280);
    expect(healed).toEqual([]);
    await run(15);
    expect(healed).toEqual([expect.objectContaining({ trigger: "maintenance", reason: expect.stringMatching(/instance-retirement/) })]);
    await run(30);
    expect(healed).toHaveLength(1);
    expect(await events("maintenance-scheduled")).toHaveLength(1);
  });

  it("the lead time is model time", async () => {
    await setUp({ maintenance: { leadSeconds: 300 } }, 0.1);
    statuses.set(ID, ok({ events: [event(60)] }));
    await run(25);
    expect(healed).toEqual([]);
    await run(10);
    expect(healed).toHaveLength(1);
  });

  it("ignores events that are over, and recycles nothing with maintenance.recycle false", async () => {
    await setUp({ maintenance: { recycle: false } });
    statuses.set(ID, ok({ events: [event(10), event(5, false)] }));
    await run(60);
    expect(healed).toEqual([]);
    expect(await events("maintenance-scheduled")).toEqual([expect.stringMatching(/maintenance.recycle is false: nothing is done/)]);
  });

  it("an agent's notice is acted on only when EC2 lists the event", async () => {
    await setUp({});
    expect(await monitor.maintenanceNotice("db", ID, "system-reboot")).toBeNull();
    expect(await events("maintenance-unconfirmed")).toHaveLength(1);
    statuses.set(ID, ok({ events: [event(60)] }));
    // A second notice within 15 s does not make the coordinator ask EC2 again.
    expect(await monitor.maintenanceNotice("db", ID, "instance-retirement")).toBeNull();
    expect(asked).toHaveLength(1);
    await fake.advance(15_000);
    expect(await monitor.maintenanceNotice("db", ID, "instance-retirement")).toBe("wf-1");
    expect(await monitor.maintenanceNotice("db", "i-0fffffffffffffff0", "instance-retirement")).toBeNull();
  });
});
