/**
 * Autohealing across a coordinator crash: a hung instance's autohealing recycle, the coordinator
 * process SIGKILLed right after a step of it is recorded, then restarted. The recycle resumes and
 * ends with the next generation running (same volume and ENI, every acknowledged record), and the
 * restarted coordinator, which has forgotten what it observed, starts no second recycle.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_HEARTBEAT_MS, AGENT_SILENT_MS } from "../../coordinator/health.js";
import { budget, plus, runbookModel, runbookSteps } from "../support/budgets.js";
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
import { type Env, ensureAgentBundle, liveInstances, readAcks, readRecords, startEnv, until } from "./harness.js";

const SCALE = 0.03;
// begin (1), quiesce (2, skipped: the agent is hung), terminate-old (4), launch (9).
/** The autohealing recycle's begin, its quiesce (skipped: the agent is hung), terminate-old and launch. */
const STEPS = crashCases("recycle").filter((c) => ["begin", "quiesce", "terminate-old", "launch"].includes(c.step));
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
 * Up to the crash: a restarted coordinator sees the hung agent fall silent, counts it unhealthy for
 * the spec's duration (seen on its next schedule pass), and runs the recycle so far (at most all of it).
 */
const CRASHED = budget({
  scale: SCALE,
  model: {
    "agent silent": AGENT_SILENT_MS,
    "unhealthy duration": UNHEALTHY_SECONDS * 1000,
    "schedule pass": SLOT_CHECK_INTERVAL_MS,
    ...runbookModel("recycle", SHAPE),
  },
  steps: runbookSteps("recycle"),
  starts: { coordinator: 1 },
});
/** After the restart: the rest of the recycle, with the next generation's agent and workload. */
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

describe.concurrent("coordinator crash during an autohealing recycle", () => {
  it.for(STEPS)(
    "SIGKILL after recycle step $n ($step): resumes to the next generation, one recycle, the data intact",
    { timeout: plus(CREATED, RECORDS, CRASHED, RECOVERED, HEALTHY).ms },
    async ({ n, step }, ctx) => {
      const name = `crash-heal-${n}`;
      const acks = join(dir, `${name}.acks`);
      const s = await coordinatorSlot(env, dir, `heal-${n}`, SCALE);
      let current = await startCoordinatorCli(s, { ownerDir: dir, children, firstStart: true });
      const runs = [current];
      const evidence = crashCaseEvidence({
        runs,
        call: (m, p) => adminApi(`http://127.0.0.1:${s.port}`).call(m, p),
        name,
        world: env.lc.world,
      });
      try {
        await withEvidence(ctx, import.meta.filename, evidence, async () => {
          await api(s, "POST", "instances", {
            ...env.spec(name, { acks }),
            health: { type: "agent", gracePeriodSeconds: 0, unhealthyDurationSeconds: UNHEALTHY_SECONDS },
          });
          const created = await reachState(`http://127.0.0.1:${s.port}`, name, "running", null, CREATED);
          await until("records to be acknowledged", () => readAcks(acks).length > 10, RECORDS);
          // Restart armed for this step of a recycle, then hang the instance.
          current.child.kill("SIGTERM");
          await current.exited;
          current = await startCoordinatorCli(s, { ownerDir: dir, children, crash: { kind: "recycle", n, step } });
          runs.push(current);
          await env.control("POST", `instances/${created.instanceId}/hang`, {});
          const how = await Promise.race([current.exited, new Promise((r) => setTimeout(() => r("no-crash"), CRASHED.ms))]);
          expect(how, current.log.join("")).toMatchObject({ signal: "SIGKILL" });

          current = await startCoordinatorCli(s, { ownerDir: dir, children });
          runs.push(current);
          const after = await reachState(`http://127.0.0.1:${s.port}`, name, "running", 2, RECOVERED);
          expect(after.resources.volumes[0].volumeId).toBe(created.resources.volumes[0].volumeId);
          expect(after.resources.network.eniId).toBe(created.resources.network.eniId);
          expect(after.privateIp).toBe(created.privateIp);
          expect((await liveInstances(env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
          const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
          const records = readRecords(join(env.rootDir(after.instanceId), "data", "records.log"));
          expect(acked.filter((x) => !records.has(x))).toEqual([]);
          // A few more passes of the restarted coordinator: the new generation is healthy and nothing else starts.
          await until(
            "the new generation to be healthy",
            async () => (await api(s, "GET", `instances/${name}`)).health?.status === "healthy",
            HEALTHY,
          );
          const events = (await api(s, "GET", `instances/${name}/events`)) as { events: Array<{ kind: string }> };
          expect(events.events.filter((e) => e.kind === "autohealing")).toHaveLength(1);
          expect((await api(s, "GET", `instances/${name}`)).generation).toBe(2);
        });
      } finally {
        if (current.child.exitCode === null && current.child.signalCode === null) {
          current.child.kill("SIGKILL");
          await current.exited;
        }
      }
    },
  );
});
