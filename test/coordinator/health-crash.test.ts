/**
 * Autohealing across coordinator crashes: a hung instance's autohealing recycle, the coordinator
 * process SIGKILLed right after each of the recycle's begin, quiesce, terminate-old and launch in
 * turn, in one run of the recycle: killed after begin, started again, killed after quiesce, ...
 * then started unarmed (test/support/crash-chain.ts). The recycle resumes and ends with the next
 * generation running (same volume, ENI and address, every acknowledged record), and no restarted
 * coordinator, each of which has forgotten what the one before it observed, starts a second recycle.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_HEARTBEAT_MS, AGENT_SILENT_MS } from "../../coordinator/health.js";
import { budget, plus, runbookModel, runbookSteps } from "../support/budgets.js";
import { crashAtEveryStep } from "../support/crash-chain.js";
import { crashCases } from "../support/crash-matrix.js";
import { crashCaseEvidence, withEvidence } from "../support/evidence.js";
import {
  adminApi,
  coordinatorSlot,
  killAll,
  reachState,
  SLOT_CHECK_INTERVAL_MS,
  type Slot,
  startCoordinatorCli,
} from "./coordinator-process.js";
import { type Env, ensureAgentBundle, liveInstances, readAcks, readRecords, startEnv, terminateCaseInstances, until } from "./harness.js";

/**
 * A coordinator's restart (about a second of real time on a loaded machine) is model time too: at
 * 0.2 it is a few model seconds, as it is in the field, and shorter than the agent's silence (15 s)
 * and the spec's unhealthy duration (20 s) that autohealing counts; at 0.03 one restart outlasted both.
 */
const SCALE = 0.2;
/** The autohealing recycle's begin, its quiesce (skipped: the agent is hung), terminate-old and launch. */
const CASES = crashCases("recycle").filter((c) => ["begin", "quiesce", "terminate-old", "launch"].includes(c.step));
const UNHEALTHY_SECONDS = 20;

// What each phase may take (test/support/budgets.ts): env.spec's shape (root persistence, 30 s hooks).
const SHAPE = { hooksTimeoutSeconds: 30, root: true };
/** The first coordinator's start and the create. */
const CREATED = budget({
  scale: SCALE,
  model: runbookModel("create", SHAPE),
  steps: runbookSteps("create"),
  starts: { coordinator: 1, agent: 1 },
});
/** The workload's first acknowledged records. */
const RECORDS = budget({ scale: SCALE, starts: { workload: 1 } });
/**
 * Before the first kill: the coordinator sees the hung agent fall silent and counts it unhealthy for
 * the spec's duration (seen on its next schedule pass) before the recycle begins.
 */
const DETECTED = budget({
  scale: SCALE,
  model: { "agent silent": AGENT_SILENT_MS, "unhealthy duration": UNHEALTHY_SECONDS * 1000, "schedule pass": SLOT_CHECK_INTERVAL_MS },
});
/**
 * One kill, or the end after the last: a coordinator started, and the rest of the recycle (at most
 * all of it), with the next generation's agent and workload.
 */
const RECOVERED = budget({
  scale: SCALE,
  model: runbookModel("recycle", SHAPE),
  steps: runbookSteps("recycle"),
  starts: { coordinator: 1, agent: 1, workload: 1 },
});
/** The new generation's first heartbeats, seen on a schedule pass. */
const HEALTHY = budget({ scale: SCALE, model: { heartbeat: AGENT_HEARTBEAT_MS, "schedule pass": SLOT_CHECK_INTERVAL_MS } });

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();
const api = (s: Slot, method: string, path: string, body?: unknown) => adminApi(`http://127.0.0.1:${s.port}`).ok(method, path, body);

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-health-"));
  env = await startEnv(dir, SCALE);
});
afterAll(async () => {
  killAll(children);
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

type Run = Awaited<ReturnType<typeof startCoordinatorCli>>;

describe.concurrent("coordinator crash during an autohealing recycle", () => {
  it.skipIf(CASES.length === 0)(
    `SIGKILL after each of recycle steps ${CASES.map((c) => `${c.n} (${c.step})`).join(", ")} in turn: ` +
      "resumes to the next generation, one recycle, the data intact",
    { timeout: plus(CREATED, RECORDS, DETECTED, ...CASES.map(() => RECOVERED), RECOVERED, HEALTHY).ms },
    async (ctx) => {
      const name = "crash-heal";
      const acks = join(dir, `${name}.acks`);
      const s = await coordinatorSlot(env, dir, "heal", SCALE);
      const runs: Run[] = [];
      const evidence = crashCaseEvidence({
        runs,
        call: (m, p) => adminApi(`http://127.0.0.1:${s.port}`).call(m, p),
        name,
        world: env.lc.world,
      });
      try {
        await withEvidence(ctx, import.meta.filename, evidence, async () => {
          let created: any = null;
          await crashAtEveryStep({
            cases: CASES,
            runs,
            // The first kill also waits for DETECTED, less model time than the whole recycle RECOVERED allows.
            eachKill: RECOVERED,
            start: (crash, first) => startCoordinatorCli(s, { ownerDir: dir, children, crash, firstStart: first }),
            async begin() {
              await api(s, "POST", "instances", {
                ...env.spec(name, { acks }),
                health: { type: "agent", gracePeriodSeconds: 0, unhealthyDurationSeconds: UNHEALTHY_SECONDS },
              });
              created = await reachState(`http://127.0.0.1:${s.port}`, name, "running", null, CREATED);
              await until("records to be acknowledged", () => readAcks(acks).length > 10, RECORDS);
              // The armed coordinator sees the agent fall silent, counts it unhealthy and begins the recycle.
              await env.control("POST", `instances/${created.instanceId}/hang`, {});
            },
          });
          const after = await reachState(`http://127.0.0.1:${s.port}`, name, "running", 2, RECOVERED);
          expect(after.resources.volumes[0].volumeId).toBe(created.resources.volumes[0].volumeId);
          expect(after.resources.network.eniId).toBe(created.resources.network.eniId);
          expect(after.privateIp).toBe(created.privateIp);
          expect((await liveInstances(env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
          const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
          const records = readRecords(join(env.rootDir(after.instanceId), "data", "records.log"));
          expect(acked.filter((x) => !records.has(x))).toEqual([]);
          // A few more passes of the last coordinator: the new generation is healthy and nothing else starts.
          await until(
            "the new generation to be healthy",
            async () => (await api(s, "GET", `instances/${name}`)).health?.status === "healthy",
            HEALTHY,
          );
          // One autohealing recycle over the whole chain: none of the restarted coordinators started another.
          const events = (await api(s, "GET", `instances/${name}/events`)) as { events: Array<{ kind: string }> };
          expect(events.events.filter((e) => e.kind === "autohealing")).toHaveLength(1);
          expect((await api(s, "GET", `instances/${name}`)).generation).toBe(2);
        });
      } finally {
        killAll(new Set(runs.map((r) => r.child)));
        await Promise.all(runs.map((r) => r.exited));
        await terminateCaseInstances(env, name);
      }
    },
  );
});
