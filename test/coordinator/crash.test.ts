/**
 * Crash test: the coordinator process is SIGKILLed right after each step of a runbook is recorded,
 * every step of create, replace, recycle, pause, resume and snapshot (test/support/crash-matrix.ts),
 * in one run of each runbook: killed after step 1, started again, killed after step 2, ... then
 * started unarmed (test/support/crash-chain.ts). Every run must end where the runbook leads (running
 * on the next generation, paused, or with the snapshot taken) with at most one live EC2 instance,
 * no duplicate launch, the same data volume and ENI (no orphaned or deleted one) and every
 * acknowledged record intact.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { adminApi, coordinatorSlot, type CrashAt, killAll, reachState, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import { AGENT_RECONNECT_CAP_MS, type Budget, budget, plus, type RunbookKind, runbookModel, runbookStarts } from "../support/budgets.js";
import { crashAtEveryStep } from "../support/crash-chain.js";
import { crashCases } from "../support/crash-matrix.js";
import { crashCaseEvidence, withEvidence } from "../support/evidence.js";
import { ensureAgentBundle, liveInstances, terminateCaseInstances, readAcks, readRecords, startEnv, until, type Env } from "./harness.js";

/**
 * A coordinator's restart (about a second of real time on a loaded machine) is model time too: at
 * 0.2 it is a few model seconds, as it is in the field, so the kills of a chain fit in the
 * interruption notice they happen in.
 */
const SCALE = 0.2;
/** The runbooks this file kills at every step (the spec: root persistence, one data volume, same ENI). */
const KINDS = ["create", "replace", "recycle", "pause", "resume", "snapshot"] as const;

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
  dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-"));
  env = await startEnv(dir, SCALE);
});
afterAll(async () => {
  killAll(children);
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

type Slotted = Awaited<ReturnType<typeof startCoordinatorProcess>>;

const reach = (s: Slot, name: string, state: string, generation: number | null, limit: Budget) =>
  reachState(`http://127.0.0.1:${s.port}`, name, state, generation, limit);

// What each phase may take (test/support/budgets.ts): env.spec's shape (root persistence, 30 s hooks).
const SHAPE = { hooksTimeoutSeconds: 30, root: true };
const model = (kind: string) => runbookModel(kind as RunbookKind, SHAPE);
const starts = (kind: string) => runbookStarts(kind as RunbookKind);
const CREATED = budget({ scale: SCALE, model: model("create"), starts: starts("create") });
const PAUSED = budget({ scale: SCALE, model: model("pause"), starts: starts("pause") });
/** One kill, or the end after the last: the agents find the new coordinator, and the rest of the runbook (at most all of it). */
const recovered = (kind: string) =>
  budget({
    scale: SCALE,
    model: { "agent reconnect": AGENT_RECONNECT_CAP_MS, ...model(kind) },
    starts: { coordinator: 1, ...starts(kind) },
  });
/** The old generation's root volume goes once the workflow has ended. */
const SETTLED = budget({ scale: SCALE, model: { "delete root": model("pause")["delete root"]! } });
const timeout = (kind: string) =>
  plus(CREATED, PAUSED, ...crashCases(kind as (typeof KINDS)[number]).map(() => recovered(kind)), recovered(kind), SETTLED).ms;

/** Start the workflow of `kind` on a running (or, for resume, paused) instance. */
async function trigger(s: Slot, kind: string, name: string, instanceId: string): Promise<void> {
  if (kind === "replace") await env.control("POST", `instances/${instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
  else await api(s, "POST", `instances/${name}/${kind}`);
}

/** Where each kind ends: the state and the generation it leaves the instance at. */
const END: Record<string, { state: string; generation: number }> = {
  create: { state: "running", generation: 1 },
  replace: { state: "running", generation: 2 },
  recycle: { state: "running", generation: 2 },
  pause: { state: "paused", generation: 1 },
  resume: { state: "running", generation: 2 },
  snapshot: { state: "running", generation: 1 },
};

describe.concurrent("coordinator crash at every step boundary of create, replace, recycle, pause, resume and snapshot", () => {
  // SPOTKEEP_CRASH_STEPS may list no step of this runbook.
  for (const kind of KINDS)
    it.skipIf(crashCases(kind).length === 0)(
      `SIGKILL after each step of ${kind} in turn: resumes to where the runbook leads, with one identity and the data intact`,
      {
        timeout: timeout(kind),
      },
      async (ctx) => {
        const name = `crash-${kind}`;
        const acks = join(dir, `${name}.acks`);
        const s = await slot(kind);
        const runs: Slotted[] = [];
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
              cases: crashCases(kind),
              runs,
              eachKill: recovered(kind),
              start: (crash, first) => startCoordinatorProcess(s, crash, first),
              async begin() {
                await api(s, "POST", "instances", env.spec(name, { acks }));
                if (kind === "create") return;
                created = await reach(s, name, "running", 1, CREATED);
                await until("records to be acknowledged", () => readAcks(acks).length > 10);
                if (kind === "resume") {
                  await api(s, "POST", `instances/${name}/pause`);
                  await reach(s, name, "paused", 1, PAUSED);
                }
                await trigger(s, kind, name, created.instanceId);
              },
            });
            const end = END[kind]!;
            const after = await reach(s, name, end.state, end.generation, recovered(kind));
            if (kind === "snapshot") {
              // The snapshot resumes to its end: the data volume's snapshot recorded and completed in EC2,
              // and the workload writing again (the freeze was lifted).
              const snapshotId = await until(
                "the data volume's snapshot to be recorded",
                async () => (await api(s, "GET", `instances/${name}`)).resources.volumes[0].latestSnapshotId ?? null,
                recovered(kind),
              );
              expect(env.lc.world.snapshots.get(snapshotId)?.state).toBe("completed");
              const acked = readAcks(acks).length;
              await until("the workload to write again", () => (readAcks(acks).length > acked ? true : null), recovered(kind));
            }
            const volumeId: string = after.resources.volumes[0].volumeId;
            const eniId: string = after.resources.network.eniId;
            if (created) {
              expect(volumeId).toBe(created.resources.volumes[0].volumeId);
              expect(eniId).toBe(created.resources.network.eniId);
            }
            // Exactly the one data volume and the one ENI, nothing orphaned.
            const dataVols = [...env.lc.world.volumes.values()].filter(
              (v) => v.tags.get("spotkeep:instance") === name && v.tags.has("spotkeep:device") && v.state !== "deleted",
            );
            expect(dataVols.map((v) => v.id)).toEqual([volumeId]);
            const enis = [...env.lc.world.enis.values()].filter((e) => e.tags.get("spotkeep:instance") === name);
            expect(enis.map((e) => e.id)).toEqual([eniId]);
            // Root volumes outlive their instances: only the live generation's is left once the workflow has ended.
            const roots = () =>
              [...env.lc.world.volumes.values()]
                .filter((v) => v.tags.get("spotkeep:instance") === name && v.tags.get("spotkeep:root") === "true")
                .filter((v) => v.state !== "deleted" && v.state !== "deleting")
                .map((v) => v.attachment?.instanceId ?? v.id);
            const wantRoots = end.state === "paused" ? [] : [after.instanceId];
            await until(
              "only the live generation's root volume",
              () => (JSON.stringify(roots()) === JSON.stringify(wantRoots) ? true : null),
              SETTLED,
            );
            const live = await liveInstances(env, name);
            if (end.state === "paused") {
              expect(live).toEqual([]);
              expect((await env.ec2.describeVolume(volumeId))?.state).toBe("available");
              return;
            }
            // One live generation; no duplicate launch of the final generation.
            expect(live.map((i) => i.instanceId)).toEqual([after.instanceId]);
            const gen = await env.ec2.findInstances({ "spotkeep:instance": name, "spotkeep:generation": String(end.generation) });
            expect(gen.map((i) => i.instanceId)).toEqual([after.instanceId]);
            const vol = await env.ec2.describeVolume(volumeId);
            expect(vol?.attachments.map((a) => a.instanceId)).toEqual([after.instanceId]);
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
      },
    );
});
