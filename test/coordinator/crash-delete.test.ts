/**
 * Crash test of the delete runbook: the coordinator process is SIGKILLed right after each step of a
 * running instance's delete is recorded (test/support/crash-matrix.ts; its quiesce, where the real
 * agent runs the preStop hook, included), with nothing kept and with keep=volumes,network, in one
 * run of each delete: killed after step 1, started again, killed after step 2, ... then
 * started unarmed (test/support/crash-chain.ts). Every run must end `deleted` under its archived
 * name with the name free, no EC2 instance left, nothing orphaned (every resource tagged with the
 * instance is one the delete kept) and the kept volume and ENI the very ones it had, tagged with
 * their expiry.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adminApi, coordinatorSlot, type CrashAt, killAll, reachState, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import { ensureAgentBundle, startEnv, terminateCaseInstances, until, type Env } from "./harness.js";
import { budget, plus, runbookModel, runbookSteps } from "../support/budgets.js";
import { crashAtEveryStep } from "../support/crash-chain.js";
import { crashCases } from "../support/crash-matrix.js";
import { crashCaseEvidence, instanceEvidence, prefixed, withEvidence } from "../support/evidence.js";

/**
 * A coordinator's restart (about a second of real time on a loaded machine) is model time too: at
 * 0.2 it is a few model seconds, as it is in the field, so a chain's restarts weigh on the delete as
 * they would in production, not as minutes of model time between two steps.
 */
const SCALE = 0.2;
/** Delete's matrices for the chains' spec (one data volume, same ENI, root persistence), each with what it keeps. */
const MATRICES = [
  { m: "delete", keep: "" },
  { m: "delete-keep", keep: "volumes,network" },
] as const;

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();

const slot = (id: string) => coordinatorSlot(env, dir, id, SCALE);
const startCoordinatorProcess = (s: Slot, crash: CrashAt | undefined, firstStart: boolean) =>
  startCoordinatorCli(s, { ownerDir: dir, children, crash, firstStart });
const api = (s: Slot, method: string, path: string, body?: unknown) => adminApi(`http://127.0.0.1:${s.port}`).call(method, path, body);

/** Live resources localcloud holds with tag spotkeep:instance = name. */
function tagged(name: string) {
  const w = env.lc.world;
  const mine = (t: Map<string, string>) => t.get("spotkeep:instance") === name;
  return {
    instances: [...w.instances.values()].filter((i) => mine(i.tags) && i.state !== "terminated").map((i) => i.id),
    volumes: [...w.volumes.values()].filter((v) => mine(v.tags) && v.state !== "deleted" && v.state !== "deleting"),
    enis: [...w.enis.values()].filter((e) => mine(e.tags)),
    snapshots: [...w.snapshots.values()].filter((s) => mine(s.tags)).map((s) => s.id),
  };
}

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-"));
  env = await startEnv(dir, SCALE);
});
afterAll(async () => {
  killAll(children);
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

// What each phase may take (test/support/budgets.ts): env.spec's shape (root persistence, 30 s hooks).
const SHAPE = { hooksTimeoutSeconds: 30, root: true };
/** The first coordinator's start and the instance's create (no workload: the agent alone starts). */
const CREATED = budget({
  scale: SCALE,
  model: runbookModel("create", SHAPE),
  steps: runbookSteps("create"),
  starts: { coordinator: 1, agent: 1 },
});
/** One kill, or the end after the last: a coordinator start and the rest of the delete (at most all of it). */
const RECOVERED = budget({ scale: SCALE, model: runbookModel("delete", SHAPE), steps: runbookSteps("delete"), starts: { coordinator: 1 } });
/** A volume whose DeleteVolume was accepted leaves localcloud's list once its deletion completes. */
const SETTLED = budget({ scale: SCALE, model: { "delete volume": runbookModel("delete", SHAPE)["delete volume"]! } });
const timeout = (m: (typeof MATRICES)[number]["m"]) => plus(CREATED, ...crashCases(m).map(() => RECOVERED), RECOVERED, SETTLED).ms;

describe.concurrent("coordinator crash at every step boundary of delete", () => {
  for (const { m, keep } of MATRICES)
    it(`SIGKILL after each step of ${m} in turn (keep: ${keep || "nothing"}): the delete finishes, nothing orphaned, kept resources kept`, {
      timeout: timeout(m),
    }, async (ctx) => {
      const name = `crash-del-${keep ? "keep" : "all"}`;
      const s = await slot(name);
      const runs: Awaited<ReturnType<typeof startCoordinatorProcess>>[] = [];
      const call = (method: string, p: string) => api(s, method, p);
      const evidence = crashCaseEvidence({ runs, call, name, world: env.lc.world });
      try {
        await withEvidence(ctx, import.meta.filename, evidence, async () => {
          let volumeId = "";
          let eniId = "";
          let archivedAs = "";
          await crashAtEveryStep({
            cases: crashCases(m),
            runs,
            eachKill: RECOVERED,
            start: (crash, first) => startCoordinatorProcess(s, crash, first),
            async begin() {
              expect((await api(s, "POST", "instances", env.spec(name, { workload: false }))).status).toBe(201);
              const created = await reachState(`http://127.0.0.1:${s.port}`, name, "running", null, CREATED);
              volumeId = created.resources.volumes[0].volumeId;
              eniId = created.resources.network.eniId;
              const started = await api(s, "DELETE", `instances/${name}${keep ? `?keep=${keep}&ttlHours=24` : ""}`);
              expect(started.status, JSON.stringify(started.body)).toBe(202);
              archivedAs = started.body.archivedAs;
              // The timeline moves with the record to its archived name.
              Object.assign(evidence, prefixed("archived-", instanceEvidence(call, archivedAs)));
            },
          });
          const after = await until(
            "the delete to finish",
            async () => {
              const d = await api(s, "GET", `instances/${encodeURIComponent(archivedAs)}`);
              if (d.status === 200 && d.body.state === "failed") throw new Error(`delete failed: ${d.body.stateReason}`);
              return d.status === 200 && d.body.state === "deleted" ? d.body : null;
            },
            RECOVERED,
          );
          // The name is free; no EC2 instance remains; nothing tagged with it but what was kept.
          expect((await api(s, "GET", `instances/${name}`)).status).toBe(404);
          const left = tagged(name);
          expect(left.instances).toEqual([]);
          expect(left.snapshots).toEqual([]);
          if (keep) {
            expect(left.volumes.map((v) => v.id)).toEqual([volumeId]);
            expect(left.volumes[0]!.state).toBe("available");
            expect(left.enis.map((e) => e.id)).toEqual([eniId]);
            for (const r of [left.volumes[0]!, left.enis[0]!])
              expect(Date.parse(r.tags.get("spotkeep:expires-at") ?? "")).toBeGreaterThan(Date.now());
            expect(after.resources.volumes[0].volumeId).toBe(volumeId);
            expect(after.resources.network.eniId).toBe(eniId);
            expect(after.stateReason).toContain(volumeId);
          } else {
            await until("the deleted volume to be gone", () => tagged(name).volumes.length === 0, SETTLED);
            expect(left.enis).toEqual([]);
          }
        });
      } finally {
        // After the evidence was read: every run still alive goes, and any instance the delete left.
        killAll(new Set(runs.map((r) => r.child)));
        await Promise.all(runs.map((r) => r.exited));
        await terminateCaseInstances(env, name);
      }
    });
});
