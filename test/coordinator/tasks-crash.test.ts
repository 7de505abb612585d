/**
 * Scheduled tasks survive a SIGKILL: a `spotkeep coordinator` child process starts the scheduled
 * pause that is due and is killed right after its first step; the restarted coordinator finishes
 * that pause and does not start the due time again (the due time was recorded in the same
 * transaction that started the workflow). The calendar scheduled tasks read is moved with
 * SPOTKEEP_CALENDAR_AT.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminApi, type CoordinatorChild, coordinatorSlot, killAll, spawnCoordinator } from "./coordinator-process.js";
import { ensureAgentBundle, type Env, ROOT, startEnv, until } from "./harness.js";

const SCALE = 0.03;
let dir: string;
let env: Env;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-tasks-"));
  env = await startEnv(dir, SCALE);
});
afterAll(async () => {
  killAll(children);
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("scheduled tasks across a coordinator SIGKILL", () => {
  it("a due pause started just before the kill is finished after the restart and never started twice", async () => {
    const name = "crash-sched";
    const s = await coordinatorSlot(env, dir, "sched", SCALE);
    const api = () => adminApi(`http://127.0.0.1:${s.port}`);
    const start = (calendarAt: string, crash = false): Promise<CoordinatorChild> =>
      spawnCoordinator([join(ROOT, "bin", "spotkeep.js"), "coordinator", "--config", s.cfgFile], {
        ownerDir: dir,
        children,
        env: { SPOTKEEP_CALENDAR_AT: calendarAt, SPOTKEEP_CRASH_AFTER_STEP: crash ? "1" : "", SPOTKEEP_CRASH_KIND: crash ? "pause" : "" },
      });
    const state = async () => (await api().ok("GET", `instances/${name}`)) as { state: string; generation: number };

    let current = await start("2026-12-03T12:00:00Z");
    await api().ok("POST", "instances", { ...env.spec(name), schedule: [{ action: "pause", cron: "0 20 * * *" }] });
    await until(`${name} to run`, async () => (await state()).state === "running", 45_000);
    current.child.kill("SIGTERM");
    await current.exited;

    // Two seconds before the due time, armed to die right after the pause's first step.
    current = await start("2026-12-03T19:59:58Z", true);
    const died = await current.exited;
    expect(died.signal).toBe("SIGKILL");
    expect(current.log.join("")).toContain("crash hook: killing myself after pause step 1");

    current = await start("2026-12-03T20:03:00Z");
    await until(`${name} to be paused`, async () => (await state()).state === "paused", 45_000);
    // Several schedule passes after the restart (every 3 s of model time).
    await new Promise((r) => setTimeout(r, 1500));
    const events = (await api().ok("GET", `instances/${name}/events`)) as {
      timelines: Array<{ kind: string; trigger: string | null; outcome: string }>;
      events: Array<{ kind: string }>;
    };
    const pauses = events.timelines.filter((t) => t.kind === "pause");
    expect(pauses).toHaveLength(1);
    expect(pauses[0]).toMatchObject({ trigger: "scheduled pause (0 20 * * *) due at 2026-12-03T20:00:00.000Z", outcome: "succeeded" });
    expect(events.events.filter((e) => e.kind.startsWith("schedule-"))).toEqual([]);
    const detail = (await api().ok("GET", `instances/${name}`)) as { schedule: Array<{ lastDueAt: string; lastOutcome: string }> };
    expect(detail.schedule[0]).toMatchObject({ lastDueAt: "2026-12-03T20:00:00.000Z", lastOutcome: "started" });
    current.child.kill("SIGTERM");
    await current.exited;
  });
});
