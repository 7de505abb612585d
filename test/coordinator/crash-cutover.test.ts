/**
 * Crash test for `attach: secondary`: the coordinator process is SIGKILLed right after each step of
 * create (secondary) and of the make-before-break replace is recorded (test/support/crash-matrix.ts),
 * in one run of each runbook: killed after step 1, started again, killed after step 2, ... then
 * started unarmed (test/support/crash-chain.ts). Every run must end running on the next generation
 * with one live EC2 instance, no duplicate launch, the same data volume and stable ENI (attached to
 * exactly that instance, at device index 1), no orphaned root volume and every acknowledged record
 * intact. The replace must stay make-before-break across all its kills: a fall back to
 * break-before-make records other steps than the matrix's and fails the chain.
 * SPOTKEEP_CRASH_STEPS=5,6 kills only after those steps.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminApi, coordinatorSlot, type CrashAt, killAll, reachState, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import { ensureAgentBundle, liveInstances, terminateCaseInstances, readAcks, readRecords, startEnv, until, type Env } from "./harness.js";
import { AGENT_RECONNECT_CAP_MS, type Budget, budget, plus, runbookModel, runbookStarts } from "../support/budgets.js";
import { crashAtEveryStep } from "../support/crash-chain.js";
import { crashCases } from "../support/crash-matrix.js";
import { crashCaseEvidence, withEvidence } from "../support/evidence.js";

/**
 * A coordinator's restart (one to three seconds of real time on a loaded machine) is model time too,
 * and the make-before-break replace must stay make-before-break across its kills: the restarts after
 * begin, mbb-subnets and mbb-launch, then the replacement's launch and boot (26.5 model s) and its
 * agent's start, must fit before its ready-by time, 70 model s after the notice (120 s less the 20 s
 * quiesce margin and the 30 s cutover reserve). At 0.4 three restarts of 3 s real are 22.5 model s,
 * about what one restart of 3 s cost at 0.1 when each run was killed once. At 0.2 (the scale of
 * crash.test.ts) they took up to 50 model s on a loaded machine and the replace fell back to
 * break-before-make in one run of two: correctly, but the fallback records other steps than the
 * matrix's, which fails the chain.
 */
const SCALE = 0.4;
/** create with `attach: secondary`, and the make-before-break replace (test/support/crash-matrix.ts). */
const MATRICES = ["create-secondary", "replace-mbb"] as const;
type Matrix = (typeof MATRICES)[number];

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();

/** Each chain gets its own coordinator (port, data dir) so chains can run side by side. */
const slot = (id: string) => coordinatorSlot(env, dir, id, SCALE);
const startCoordinatorProcess = (s: Slot, crash: CrashAt | undefined, firstStart: boolean) =>
  startCoordinatorCli(s, { ownerDir: dir, children, crash, firstStart });
const api = (s: Slot, method: string, path: string, body?: unknown) => adminApi(`http://127.0.0.1:${s.port}`).ok(method, path, body);

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-mbb-"));
  env = await startEnv(dir, SCALE);
});
afterAll(async () => {
  killAll(children);
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

type Slotted = Awaited<ReturnType<typeof startCoordinatorProcess>>;

const reach = (s: Slot, name: string, state: string, generation: number, limit: Budget) =>
  reachState(`http://127.0.0.1:${s.port}`, name, state, generation, limit);

// What each phase may take (test/support/budgets.ts): the spec has no root persistence and 30 s hooks.
const SHAPE = { hooksTimeoutSeconds: 30, root: false };
const runbook = (m: Matrix) => (m === "create-secondary" ? "create" : "replace-mbb");
const CREATED = budget({ scale: SCALE, model: runbookModel("create", SHAPE), starts: runbookStarts("create") });
/**
 * One kill, or the end after the last: the agents find the new coordinator, and the rest of the
 * runbook (at most all of it, fallback included).
 */
const recovered = (m: Matrix) =>
  budget({
    scale: SCALE,
    model: { "agent reconnect": AGENT_RECONNECT_CAP_MS, ...runbookModel(runbook(m), SHAPE) },
    starts: { coordinator: 1, ...runbookStarts(runbook(m)) },
  });
/** The old generation's instance and root volume go once the workflow has ended. */
const SETTLED = budget({ scale: SCALE, model: runbookModel("pause", SHAPE) });
const timeout = (m: Matrix) =>
  plus(...(m === "replace-mbb" ? [CREATED] : []), ...crashCases(m).map(() => recovered(m)), recovered(m), SETTLED, SETTLED).ms;

function secondarySpec(name: string, acks: string) {
  const spec = env.spec(name, { root: false, acks });
  return { ...spec, persistence: { ...spec.persistence, network: { privateIp: "same-eni", attach: "secondary" } } };
}

describe.concurrent("coordinator crash at every step of create and make-before-break replace (attach: secondary)", () => {
  for (const m of MATRICES)
    it(`SIGKILL after each step of ${m} in turn: one generation serves, the stable ENI and the volume on it, data intact`, {
      timeout: timeout(m),
    }, async (ctx) => {
      const name = `crash-mbb-${m}`;
      const acks = join(dir, `${name}.acks`);
      const s = await slot(m);
      const runs: Slotted[] = [];
      const evidence = crashCaseEvidence({
        runs,
        call: (method, p) => adminApi(`http://127.0.0.1:${s.port}`).call(method, p),
        name,
        world: env.lc.world,
      });
      try {
        await withEvidence(ctx, import.meta.filename, evidence, async () => {
          let created: any = null;
          await crashAtEveryStep({
            cases: crashCases(m),
            runs,
            eachKill: recovered(m),
            start: (crash, first) => startCoordinatorProcess(s, crash, first),
            async begin() {
              await api(s, "POST", "instances", secondarySpec(name, acks));
              if (m === "create-secondary") return;
              created = await reach(s, name, "running", 1, CREATED);
              await until("records to be acknowledged", () => readAcks(acks).length > 10);
              await env.control("POST", `instances/${created.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
            },
          });
          const generation = m === "create-secondary" ? 1 : 2;
          const after = await reach(s, name, "running", generation, recovered(m));
          const volumeId: string = after.resources.volumes[0].volumeId;
          const eniId: string = after.resources.network.eniId;
          if (created) {
            expect(volumeId).toBe(created.resources.volumes[0].volumeId);
            expect(eniId).toBe(created.resources.network.eniId);
            expect(after.privateIp).toBe(created.privateIp);
          }
          // The one data volume and the one stable ENI, each attached to exactly the live instance.
          const dataVols = [...env.lc.world.volumes.values()].filter(
            (v) => v.tags.get("spotkeep:instance") === name && v.tags.has("spotkeep:device") && v.state !== "deleted",
          );
          expect(dataVols.map((v) => v.id)).toEqual([volumeId]);
          // (Each generation's own primary ENI carries its generation tag and goes with its instance.)
          const enis = [...env.lc.world.enis.values()].filter(
            (e) => e.tags.get("spotkeep:instance") === name && !e.tags.has("spotkeep:generation"),
          );
          expect(enis.map((e) => e.id)).toEqual([eniId]);
          const eni = await until("the stable ENI attached", async () => {
            const e = await env.ec2.describeNetworkInterface(eniId);
            return e?.attachment?.status === "attached" ? e : null;
          });
          expect(eni.attachment).toMatchObject({ instanceId: after.instanceId, deviceIndex: 1 });
          const vol = await env.ec2.describeVolume(volumeId);
          expect(vol?.attachments.map((a) => a.instanceId)).toEqual([after.instanceId]);
          // One live generation, no duplicate launch; only its root volume is left once the old one is gone.
          await until("one live instance", async () => ((await liveInstances(env, name)).length === 1 ? true : null), SETTLED);
          expect((await liveInstances(env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
          const gen = await env.ec2.findInstances({ "spotkeep:instance": name, "spotkeep:generation": String(generation) });
          expect(gen.map((i) => i.instanceId)).toEqual([after.instanceId]);
          const roots = () =>
            [...env.lc.world.volumes.values()]
              .filter((v) => v.tags.get("spotkeep:instance") === name && v.tags.get("spotkeep:root") === "true")
              .filter((v) => v.state !== "deleted" && v.state !== "deleting")
              .map((v) => v.attachment?.instanceId ?? v.id);
          await until(
            "only the live generation's root volume",
            () => (JSON.stringify(roots()) === JSON.stringify([after.instanceId]) ? true : null),
            SETTLED,
          );
          // Every acknowledged record survived.
          if (created) {
            const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
            const records = readRecords(join(env.rootDir(after.instanceId), "data", "records.log"));
            expect(acked.filter((x) => !records.has(x))).toEqual([]);
          }
        });
      } finally {
        killAll(new Set(runs.map((r) => r.child)));
        await Promise.all(runs.map((r) => r.exited));
        await terminateCaseInstances(env, name);
      }
    });
});
