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
import { AGENT_RECONNECT_CAP_MS, budget, plus, realTime, runbookModel, runbookSteps } from "../support/budgets.js";
import { crashCaseEvidence, withEvidence } from "../support/evidence.js";
import {
  adminApi,
  type CoordinatorChild,
  coordinatorCommand,
  coordinatorSlot,
  killAll,
  SLOT_CHECK_INTERVAL_MS,
  spawnCoordinator,
} from "./coordinator-process.js";
import { ensureAgentBundle, type Env, startEnv, until } from "./harness.js";

const SCALE = 0.03;
/** How far before the due time the armed coordinator's calendar starts (real ms: the calendar runs on the wall clock). */
const EARLY_MS = 2000;

// What each phase may take (test/support/budgets.ts): env.spec's shape (root persistence, 30 s hooks).
const SHAPE = { hooksTimeoutSeconds: 30, root: true };
/** The first coordinator's start and the create. */
const CREATED = budget({
  scale: SCALE,
  model: runbookModel("create", SHAPE),
  steps: runbookSteps("create"),
  starts: { coordinator: 1, agent: 1 },
});
/** A restarted coordinator reaches the due time on its calendar, starts the pause on its next pass and dies after step 1. */
const CRASHED = plus(
  realTime({ "calendar to the due time": EARLY_MS }),
  budget({ scale: SCALE, model: { "schedule pass": SLOT_CHECK_INTERVAL_MS }, steps: { pause: 1 }, starts: { coordinator: 1 } }),
);
/** After the restart: the agent finds the new coordinator, and the rest of the pause. */
const RECOVERED = budget({
  scale: SCALE,
  model: { "agent reconnect": AGENT_RECONNECT_CAP_MS, ...runbookModel("pause", SHAPE) },
  steps: runbookSteps("pause"),
  starts: { coordinator: 1 },
});
/** Schedule passes the restarted coordinator makes before the check that none started the due time again. */
const PASSES = budget({ scale: SCALE, model: { "8 schedule passes": 8 * SLOT_CHECK_INTERVAL_MS } });
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
  it("a due pause started just before the kill is finished after the restart and never started twice", {
    timeout: plus(CREATED, CRASHED, RECOVERED, PASSES).ms,
  }, async (ctx) => {
    const name = "crash-sched";
    const s = await coordinatorSlot(env, dir, "sched", SCALE);
    const api = () => adminApi(`http://127.0.0.1:${s.port}`);
    const runs: CoordinatorChild[] = [];
    const start = async (calendarAt: string, crash = false): Promise<CoordinatorChild> => {
      const c = await spawnCoordinator([...coordinatorCommand(crash ? { kind: "pause", n: 1 } : undefined), "--config", s.cfgFile], {
        ownerDir: dir,
        children,
        env: { SPOTKEEP_CALENDAR_AT: calendarAt },
      });
      runs.push(c);
      return c;
    };
    const state = async () => (await api().ok("GET", `instances/${name}`)) as { state: string; generation: number };
    const evidence = crashCaseEvidence({ runs, call: (m, p) => api().call(m, p), name, world: env.lc.world });

    let current = await start("2026-12-03T12:00:00Z");
    try {
      await withEvidence(ctx, import.meta.filename, evidence, async () => {
        await api().ok("POST", "instances", { ...env.spec(name), schedule: [{ action: "pause", cron: "0 20 * * *" }] });
        await until(`${name} to run`, async () => (await state()).state === "running", CREATED);
        current.child.kill("SIGTERM");
        await current.exited;

        // Two seconds before the due time, armed to die right after the pause's first step.
        current = await start(new Date(Date.parse("2026-12-03T20:00:00Z") - EARLY_MS).toISOString(), true);
        const died = await Promise.race([current.exited, new Promise((r) => setTimeout(() => r("no-crash"), CRASHED.ms))]);
        expect(died, current.log.join("")).toMatchObject({ signal: "SIGKILL" });
        expect(current.log.join("")).toContain("crash hook: killing myself after pause step 1");

        current = await start("2026-12-03T20:03:00Z");
        await until(`${name} to be paused`, async () => (await state()).state === "paused", RECOVERED);
        // Several schedule passes after the restart.
        await new Promise((r) => setTimeout(r, PASSES.ms));
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
      });
    } finally {
      if (current.child.exitCode === null && current.child.signalCode === null) {
        current.child.kill("SIGTERM");
        await current.exited;
      }
    }
  });
});
