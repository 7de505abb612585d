import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseSpec } from "../shared/spec.js";
import { SqliteStore } from "./db/sqlite/index.js";
import type { StatefulInstanceState } from "./db/store.js";
import { Operations } from "./operations.js";
import { MISSED_AFTER_MS, ScheduledTasks, taskViews } from "./tasks.js";
import type { Engine } from "./workflow/kinds.js";

// Thursday 2026-11-26, 19:59 UTC: the pause below is due at 20:00, the resume at 07:00 on weekdays.
const T0 = Date.UTC(2026, 10, 26, 19, 59);
const SCHEDULE = [
  { action: "pause", cron: "0 20 * * 1-5" },
  { action: "resume", cron: "0 7 * * 1-5" },
] as const;

let dir: string;
let file: string;
let now: number;
let store: SqliteStore;
let tasks: ScheduledTasks;
let started: Array<{ kind: string; id: string }>;

function open() {
  store = SqliteStore.open(file, () => now);
  // The engine only records the workflow here; the test plays the runbook's part by hand.
  const engine = {
    async start(kind: string, instance: string, input: unknown, trigger: string | null, t: Parameters<Engine["start"]>[4]) {
      const id = `wf-${kind}-${started.length + 1}`;
      await (t ?? store).workflows.insert({ id, kind, instance, input, trigger });
      started.push({ kind, id });
      return id;
    },
  } as unknown as Engine;
  const operations = new Operations({ store, engine, log: () => undefined, calendar: () => now });
  tasks = new ScheduledTasks({ store, operations, calendar: () => now, log: () => undefined });
  return operations;
}

/** A running instance with a live generation, created at `now` through Operations (as the API does). */
async function createRunning(schedule: ReadonlyArray<{ action: string; cron: string }> = SCHEDULE) {
  const operations = open();
  const spec = parseSpec({
    name: "dev",
    launch: { imageId: "ami-12345678", instanceTypes: ["m5.large"], subnetIds: ["subnet-12345678"] },
    schedule,
  });
  const { workflowId } = await operations.createInstance(spec);
  await store.tx(async (t) => {
    await t.generations.ensure("dev", 1, workflowId);
    await t.generations.recordLaunch("dev", 1, {
      ec2InstanceId: "i-0123456789abcdef0",
      instanceType: "m5.large",
      availabilityZone: "us-east-1a",
      market: "spot",
      privateIp: "10.0.0.5",
    });
    await t.generations.markLive("dev", 1);
    await t.instances.setCurrentGeneration("dev", 1);
    await t.instances.setState("dev", "running");
    await t.workflows.finish(workflowId, "succeeded", null, null);
  });
  started = [];
}

/** What the pause/resume runbooks would leave behind. */
async function finish(id: string, state: StatefulInstanceState) {
  await store.workflows.finish(id, "succeeded", null, null);
  await store.instances.setState("dev", state);
}

const events = async (kind: string) => (await store.events.list("dev")).filter((e) => e.kind === kind);

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-tasks-"));
  file = join(dir, "db.sqlite");
  now = T0;
  started = [];
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("scheduled tasks", () => {
  it("runs each due time once, also across a restart, and the next due time again", async () => {
    await createRunning();
    expect(await tasks.pass()).toEqual([]);
    now = Date.UTC(2026, 10, 26, 20, 0, 5);
    const [pause] = await tasks.pass();
    expect(started).toEqual([{ kind: "pause", id: pause }]);
    expect((await events("pause-started"))[0]?.message).toMatch(/^scheduled pause \(0 20 \* \* 1-5\) due at 2026-11-26T20:00:00.000Z/);
    expect(await tasks.pass()).toEqual([]);
    await finish(pause!, "paused");

    // Restart: a new store connection and a new task runner see the due time as handled.
    await store.close();
    open();
    now = Date.UTC(2026, 10, 26, 20, 30);
    expect(await tasks.pass()).toEqual([]);
    now = Date.UTC(2026, 10, 27, 7, 0, 1);
    const [resume] = await tasks.pass();
    expect(started.map((s) => s.kind)).toEqual(["pause", "resume"]);
    await finish(resume!, "running");
    expect(await tasks.pass()).toEqual([]);
    // Friday evening pauses again; Saturday morning does not resume (1-5).
    now = Date.UTC(2026, 10, 27, 20, 0, 1);
    const [pause2] = await tasks.pass();
    await finish(pause2!, "paused");
    now = Date.UTC(2026, 10, 28, 7, 0, 1);
    expect(await tasks.pass()).toEqual([]);
    expect(started.map((s) => s.kind)).toEqual(["pause", "resume", "pause"]);
    const runs = await store.taskRuns.list("dev");
    expect(runs.find((r) => r.taskKey === "pause 0 20 * * 1-5")).toMatchObject({
      lastDueAt: Date.UTC(2026, 10, 27, 20),
      lastOutcome: "started",
      lastWorkflowId: pause2,
    });
  });

  it("skips a due time that does not apply in the current state, with an event, once", async () => {
    await createRunning([{ action: "resume", cron: "0 20 * * *" }]);
    now = Date.UTC(2026, 10, 26, 20, 0, 1);
    expect(await tasks.pass()).toEqual([]);
    expect(await tasks.pass()).toEqual([]);
    const skipped = await events("schedule-skipped");
    expect(skipped.map((e) => e.message)).toEqual([
      "scheduled resume (0 20 * * *) due at 2026-11-26T20:00:00.000Z skipped: dev is running; a scheduled resume applies when it is paused",
    ]);
    expect(started).toEqual([]);
  });

  it("waits while another workflow moves the instance, then runs within the hour; later than that it is missed", async () => {
    await createRunning([{ action: "snapshot", cron: "0 20 * * *" }]);
    await store.workflows.insert({ id: "wf-other", kind: "recycle", instance: "dev", input: {}, trigger: "recycle" });
    now = Date.UTC(2026, 10, 26, 20, 0, 1);
    expect(await tasks.pass()).toEqual([]);
    await store.workflows.finish("wf-other", "succeeded", null, null);
    now = Date.UTC(2026, 10, 26, 20, 10);
    // No data volumes: the operation itself refuses, and the due time is skipped with its reason.
    expect(await tasks.pass()).toEqual([]);
    expect((await events("schedule-skipped"))[0]?.message).toMatch(/skipped: dev has no data volumes to snapshot$/);

    now = Date.UTC(2026, 10, 27, 20, 0) + MISSED_AFTER_MS + 60_000;
    expect(await tasks.pass()).toEqual([]);
    expect((await events("schedule-missed"))[0]?.message).toBe(
      "scheduled snapshot (0 20 * * *) due at 2026-11-27T20:00:00.000Z was not run: seen 61 min late",
    );
  });

  it("reads a spec stored before scheduled tasks existed (no schedule field) as having none", async () => {
    await createRunning([]);
    const inst = (await store.instances.get("dev"))!;
    const { schedule: _, ...old } = inst.spec;
    await store.instances.setSpec("dev", old as typeof inst.spec);
    now = Date.UTC(2026, 10, 27, 20, 0, 1);
    expect(await tasks.pass()).toEqual([]);
    expect(await store.taskRuns.list("dev")).toEqual([]);
  });

  it("never runs due times from before the task existed; an update adds and drops tasks", async () => {
    await createRunning([]);
    now = Date.UTC(2026, 10, 26, 20, 30);
    const spec = parseSpec({
      name: "dev",
      launch: { imageId: "ami-12345678", instanceTypes: ["m5.large"], subnetIds: ["subnet-12345678"] },
      schedule: [{ action: "pause", cron: "0 20 * * *" }],
    });
    const operations = new Operations({ store, engine: {} as Engine, log: () => undefined, calendar: () => now });
    await operations.update("dev", spec, { recycle: false });
    expect(await tasks.pass()).toEqual([]);
    const [view] = taskViews(spec.schedule, await store.taskRuns.list("dev"), now);
    expect(view).toMatchObject({ action: "pause", nextRunAt: Date.UTC(2026, 10, 27, 20), lastDueAt: null });
    now = Date.UTC(2026, 10, 27, 20, 0, 1);
    // Due and not yet handled: describe shows it as the next run.
    expect(taskViews(spec.schedule, await store.taskRuns.list("dev"), now)[0]?.nextRunAt).toBe(Date.UTC(2026, 10, 27, 20));
    expect((await tasks.pass()).length).toBe(1);
    await operations.update("dev", { ...spec, schedule: [] }, { recycle: false });
    expect(await store.taskRuns.list("dev")).toEqual([]);
  });
});
