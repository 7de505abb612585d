/**
 * Crash test for `attach: secondary`: the coordinator process is SIGKILLed right after step n of
 * create (secondary) and of the make-before-break replace, then restarted. Every run must end
 * running on the next generation with one live EC2 instance, no duplicate launch, the same data
 * volume and stable ENI (attached to exactly that instance, at device index 1), no orphaned root
 * volume and every acknowledged record intact. SPOTKEEP_CRASH_STEPS=5,6 runs only those steps.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminApi, coordinatorSlot, killAll, reachState, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import { ensureAgentBundle, liveInstances, terminateCaseInstances, readAcks, readRecords, startEnv, until, type Env } from "./harness.js";
import { AGENT_RECONNECT_CAP_MS, type Budget, budget, plus, runbookModel, runbookStarts } from "../support/budgets.js";
import { crashCases } from "../support/crash-matrix.js";
import { crashCaseEvidence, withEvidence } from "../support/evidence.js";

// Slower than crash.test.ts: the replacement must be ready to take over within the notice window
// even across a coordinator restart, or the run (correctly) falls back to break-before-make.
const SCALE = 0.1;
/** create with `attach: secondary`, and the make-before-break replace (test/support/crash-matrix.ts). */
const CASES = [...crashCases("create-secondary"), ...crashCases("replace-mbb")];

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();

const slot = (id: string) => coordinatorSlot(env, dir, id, SCALE);
const startCoordinatorProcess = (s: Slot, crash?: { kind: string; n: number; step: string }, firstStart = false) =>
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
const CREATED = budget({ scale: SCALE, model: runbookModel("create", SHAPE), starts: runbookStarts("create") });
/** Up to the crash: the runbook so far (at most all of it) in a coordinator just started. */
const crashed = (kind: string) =>
  budget({
    scale: SCALE,
    model: runbookModel(kind === "create" ? "create" : "replace-mbb", SHAPE),
    starts: { coordinator: 1, ...runbookStarts(kind === "create" ? "create" : "replace-mbb") },
  });
/** After the restart: the agents find the new coordinator, and the rest of the runbook, fallback included. */
const recovered = (kind: string) =>
  budget({
    scale: SCALE,
    model: { "agent reconnect": AGENT_RECONNECT_CAP_MS, ...runbookModel(kind === "create" ? "create" : "replace-mbb", SHAPE) },
    starts: { coordinator: 1, ...runbookStarts(kind === "create" ? "create" : "replace-mbb") },
  });
/** The old generation's instance and root volume go once the workflow has ended. */
const SETTLED = budget({ scale: SCALE, model: runbookModel("pause", SHAPE) });
const caseTimeout = (kind: string) =>
  plus(
    kind === "replace" ? plus(CREATED, budget({ scale: SCALE, starts: { coordinator: 1 } })) : budget({ scale: SCALE }),
    crashed(kind),
    recovered(kind),
    SETTLED,
    SETTLED,
  ).ms;

function secondarySpec(name: string, acks: string) {
  const spec = env.spec(name, { root: false, acks });
  return { ...spec, persistence: { ...spec.persistence, network: { privateIp: "same-eni", attach: "secondary" } } };
}

describe.concurrent("coordinator crash at every step of create and make-before-break replace (attach: secondary)", () => {
  it.for(CASES)(
    "SIGKILL after $kind step $n ($step): one generation serves, the stable ENI and the volume on it, data intact",
    { timeout: Math.max(caseTimeout("create"), caseTimeout("replace")) },
    async ({ kind, n, step }, ctx) => {
      const name = `crash-mbb-${kind}-${n}`;
      const acks = join(dir, `${name}.acks`);
      const s = await slot(`mbb-${kind}-${n}`);
      const runs: Slotted[] = [];
      const evidence = crashCaseEvidence({
        runs,
        call: (m, p) => adminApi(`http://127.0.0.1:${s.port}`).call(m, p),
        name,
        world: env.lc.world,
      });
      let current: Slotted = await startCoordinatorProcess(s, kind === "create" ? { kind, n, step } : undefined, true);
      runs.push(current);
      try {
        await withEvidence(ctx, import.meta.filename, evidence, async () => {
          await api(s, "POST", "instances", secondarySpec(name, acks));
          let created: any = null;
          if (kind === "replace") {
            created = await reach(s, name, "running", 1, CREATED);
            await until("records to be acknowledged", () => readAcks(acks).length > 10);
            current.child.kill("SIGTERM");
            await current.exited;
            current = await startCoordinatorProcess(s, { kind, n, step });
            runs.push(current);
            await env.control("POST", `instances/${created.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
          }
          const how = await Promise.race([current.exited, new Promise((r) => setTimeout(() => r("no-crash"), crashed(kind).ms))]);
          expect(how, current.log.join("")).toMatchObject({ signal: "SIGKILL" });

          current = await startCoordinatorProcess(s);
          runs.push(current);
          const generation = kind === "create" ? 1 : 2;
          const after = await reach(s, name, "running", generation, recovered(kind));
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
          if (created) {
            const acked = readAcks(acks);
            const records = readRecords(join(env.rootDir(after.instanceId), "data", "records.log"));
            expect(acked.filter((x) => !records.has(x))).toEqual([]);
          }
        });
      } finally {
        if (current.child.exitCode === null && current.child.signalCode === null) {
          current.child.kill("SIGKILL");
          await current.exited;
        }
        await terminateCaseInstances(env, name);
      }
    },
  );
});
