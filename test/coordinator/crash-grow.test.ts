/**
 * Crash test of the grow runbook (an update that grows a data volume and adds one to a running
 * instance): the coordinator process is SIGKILLed right after each step is recorded
 * (test/support/crash-matrix.ts), in one run: killed after step 1, started again, killed after
 * step 2, ... then started unarmed (test/support/crash-chain.ts). The run must end with the
 * instance still running on its first generation, /dev/sdf modified once to 2 GiB, exactly one new
 * /dev/sdg volume (attached and mounted), the stored spec and volumes the new ones, and every
 * record the workload acknowledged still on its data volume.
 */
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROFILES } from "../../localcloud/profiles.js";
import { budget, plus, runbookModel, runbookSteps } from "../support/budgets.js";
import { crashAtEveryStep } from "../support/crash-chain.js";
import { crashCases, stepCount } from "../support/crash-matrix.js";
import { crashCaseEvidence, withEvidence } from "../support/evidence.js";
import { adminApi, coordinatorSlot, type CrashAt, killAll, reachState, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import { ensureAgentBundle, readAcks, readRecords, startEnv, terminateCaseInstances, until, type Env } from "./harness.js";

/** A coordinator's restart (about a second of real time) is a few model seconds at 0.2, as in the field. */
const SCALE = 0.2;

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();

const slot = (id: string) => coordinatorSlot(env, dir, id, SCALE);
const startCoordinatorProcess = (s: Slot, crash: CrashAt | undefined, firstStart: boolean) =>
  startCoordinatorCli(s, { ownerDir: dir, children, crash, firstStart });
const api = (s: Slot, method: string, path: string, body?: unknown) => adminApi(`http://127.0.0.1:${s.port}`).call(method, path, body);

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

const SHAPE = { hooksTimeoutSeconds: 30, root: true };
const p = PROFILES.realistic;
/** The first coordinator's start and the instance's create (the agent and the workload start). */
const CREATED = budget({
  scale: SCALE,
  model: runbookModel("create", SHAPE),
  steps: runbookSteps("create"),
  starts: { coordinator: 1, agent: 1 },
});
/**
 * One kill, or the end after the last: a coordinator start and the rest of the grow (at most all of
 * it): the modification until optimizing, the new volume's create and attach, the agent's answers.
 */
const RECOVERED = budget({
  scale: SCALE,
  model: { "modifying → optimizing": p.modifyVolume ?? 0, "create volume": p.createVolume, "attach volume": p.attachVolume },
  steps: { grow: stepCount("grow") },
  starts: { coordinator: 1 },
});
const TIMEOUT = plus(CREATED, ...crashCases("grow").map(() => RECOVERED), RECOVERED).ms;

describe("coordinator crash at every step boundary of grow", () => {
  it("SIGKILL after each step in turn: the volume grows once, one new volume is mounted, nothing lost", {
    timeout: TIMEOUT,
  }, async (ctx) => {
    const name = "crash-grow";
    const s = await slot(name);
    const acks = join(dir, `${name}.acks`);
    const spec = env.spec(name, { acks });
    const runs: Awaited<ReturnType<typeof startCoordinatorProcess>>[] = [];
    const call = (method: string, path: string) => api(s, method, path);
    const evidence = crashCaseEvidence({ runs, call, name, world: env.lc.world });
    try {
      await withEvidence(ctx, import.meta.filename, evidence, async () => {
        let growId = "";
        let before: { instanceId: string; generation: number; resources: { volumes: Array<{ volumeId: string }> } } | null = null;
        const last = await crashAtEveryStep({
          cases: crashCases("grow"),
          runs,
          eachKill: RECOVERED,
          start: (crash, first) => startCoordinatorProcess(s, crash, first),
          async begin() {
            expect((await api(s, "POST", "instances", spec)).status).toBe(201);
            before = await reachState(`http://127.0.0.1:${s.port}`, name, "running", null, CREATED);
            await until("records to be acknowledged", () => readAcks(acks).length > 10);
            const next = structuredClone(spec) as typeof spec & { persistence: { volumes: Array<Record<string, unknown>> } };
            next.persistence.volumes[0]!.sizeGiB = 2;
            next.persistence.volumes.push({ device: "/dev/sdg", sizeGiB: 1, mountPoint: "/data1" });
            const r = await api(s, "PUT", `instances/${name}`, next);
            expect(r.status, JSON.stringify(r.body)).toBe(200);
            growId = r.body.workflowId;
            expect(growId).toBeTruthy();
          },
        });
        expect(last).toBeTruthy();
        const wf = await until(
          "the grow to finish",
          async () => {
            const g = (await api(s, "GET", `workflows/${growId}`)).body;
            if (g?.status === "failed") throw new Error(`grow failed: ${g.error}`);
            return g?.status === "succeeded" ? g : null;
          },
          RECOVERED,
        );
        expect(wf.kind).toBe("grow");
        const after = (await api(s, "GET", `instances/${name}`)).body;
        const b = before!;
        expect(after.state).toBe("running");
        expect(after.generation).toBe(b.generation);
        expect(after.instanceId).toBe(b.instanceId);
        const sdf = b.resources.volumes[0]!.volumeId;
        // Modified once, to 2 GiB; exactly one new volume for /dev/sdg, attached to the instance.
        expect(env.lc.world.volumes.get(sdf)!.size).toBe(2);
        const sdg = [...env.lc.world.volumes.values()].filter(
          (v) => v.tags.get("spotkeep:instance") === name && v.tags.get("spotkeep:device") === "/dev/sdg" && v.state !== "deleted",
        );
        expect(sdg.map((v) => v.attachment?.instanceId)).toEqual([b.instanceId]);
        expect(after.resources.volumes.map((v: { device: string; volumeId: string }) => [v.device, v.volumeId])).toEqual([
          ["/dev/sdf", sdf],
          ["/dev/sdg", sdg[0]!.id],
        ]);
        expect(existsSync(join(env.rootDir(b.instanceId), "data1"))).toBe(true);
        const acked = readAcks(acks);
        const records = readRecords(join(env.rootDir(b.instanceId), "data", "records.log"));
        expect(acked.filter((n) => !records.has(n))).toEqual([]);
      });
    } finally {
      killAll(new Set(runs.map((r) => r.child)));
      await Promise.all(runs.map((r) => r.exited));
      await terminateCaseInstances(env, name);
    }
  });
});
