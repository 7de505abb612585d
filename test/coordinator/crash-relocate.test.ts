/**
 * Crash test of the relocate runbook (spotkeep restore NAME --region R): localcloud serves
 * us-east-1 and us-west-2, an instance in us-east-1 with copyToRegions [us-west-2] is snapshotted
 * (its writer stopped first) and paused, and once the copies are in us-west-2 it is restored there.
 * The coordinator process is SIGKILLed right after each step of the relocate is recorded
 * (test/support/crash-matrix.ts), in one run: killed after step 1, started again, killed after
 * step 2, ... then started unarmed (test/support/crash-chain.ts). The run must end with the instance
 * running in us-west-2 on one new generation, one EC2 instance and one ENI made for it there, no
 * volume left over, the old region untouched, and the root marker and every acknowledged record on
 * the restored generation.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
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
const WEST = "us-west-2";

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();

const slot = (id: string) => coordinatorSlot(env, dir, id, SCALE, { regions: [WEST] });
const startCoordinatorProcess = (s: Slot, crash: CrashAt | undefined, firstStart: boolean) =>
  startCoordinatorCli(s, { ownerDir: dir, children, crash, firstStart });
const api = (s: Slot, method: string, path: string, body?: unknown) => adminApi(`http://127.0.0.1:${s.port}`).call(method, path, body);

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-relocate-"));
  env = await startEnv(dir, SCALE, { regions: ["us-east-1", WEST] });
});
afterAll(async () => {
  killAll(children);
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const SHAPE = { hooksTimeoutSeconds: 30, root: true };
const p = PROFILES.realistic;
const CREATED = budget({
  scale: SCALE,
  model: runbookModel("create", SHAPE),
  steps: runbookSteps("create"),
  starts: { coordinator: 1, agent: 1 },
});
/** A data snapshot, a pause (its root image), and their copies into us-west-2 on the schedule's passes. */
const COPIED = budget({
  scale: SCALE,
  model: {
    "data snapshot": p.snapshotBase + p.snapshotPerGiB,
    ...runbookModel("pause", SHAPE),
    "snapshot copy": p.snapshotBase + p.snapshotPerGiB + (p.snapshotCopyCrossRegionPerGiB ?? 0),
    "image copy": p.snapshotBase + p.snapshotPerGiB * 8 + (p.snapshotCopyCrossRegionPerGiB ?? 0) * 8 + p.image,
    "schedule passes": 2 * 3000,
  },
  steps: { snapshot: stepCount("snapshot"), pause: stepCount("pause") },
});
/** One kill, or the end after the last: a coordinator start and the rest of the relocate (at most all of it). */
const RECOVERED = budget({
  scale: SCALE,
  model: { ...runbookModel("resume", SHAPE), "volume from snapshot": p.createVolume },
  steps: { relocate: stepCount("relocate") },
  starts: { coordinator: 1, agent: 1 },
});
const TIMEOUT = plus(CREATED, COPIED, ...crashCases("relocate").map(() => RECOVERED), RECOVERED).ms;

describe("coordinator crash at every step boundary of relocate", () => {
  it("SIGKILL after each step in turn: one generation in us-west-2, no orphan, root and data back", { timeout: TIMEOUT }, async (ctx) => {
    const name = "crash-relocate";
    const s = await slot(name);
    const acks = join(dir, `${name}.acks`);
    const spec = { ...env.spec(name, { acks }), snapshots: { copyToRegions: [WEST] } };
    const west = env.lc.worldFor(WEST);
    const runs: Awaited<ReturnType<typeof startCoordinatorProcess>>[] = [];
    const call = (method: string, path: string) => api(s, method, path);
    const evidence = crashCaseEvidence({ runs, call, name, world: west });
    const ok = async (method: string, path: string, body?: unknown) => {
      const r = await api(s, method, path, body);
      expect(r.status, JSON.stringify(r.body)).toBeLessThan(300);
      return r.body;
    };
    const finished = (id: string, limit: typeof RECOVERED) =>
      until(
        `workflow ${id} to finish`,
        async () => {
          const w = (await api(s, "GET", `workflows/${id}`)).body;
          if (w?.status === "failed") throw new Error(`${w.kind} failed: ${w.error}`);
          return w?.status === "succeeded" ? w : null;
        },
        limit,
      );
    try {
      await withEvidence(ctx, import.meta.filename, evidence, async () => {
        let relocateId = "";
        let first: {
          instanceId: string;
          generation: number;
          privateIp: string;
          resources: { volumes: Array<{ volumeId: string }> };
        } | null = null;
        let acked: number[] = [];
        const last = await crashAtEveryStep({
          cases: crashCases("relocate"),
          runs,
          eachKill: RECOVERED,
          start: (crash, firstStart) => startCoordinatorProcess(s, crash, firstStart),
          async begin() {
            expect((await api(s, "POST", "instances", spec)).status).toBe(201);
            first = await reachState(`http://127.0.0.1:${s.port}`, name, "running", null, CREATED);
            await until("records to be acknowledged", () => readAcks(acks).length > 10);
            // The workload stops writing, so the snapshot holds every acknowledged record.
            const pid = Number(readFileSync(join(env.rootDir(first!.instanceId), "run", "writer.pid"), "utf8"));
            process.kill(pid, "SIGTERM");
            await until("the writer to exit", () => {
              try {
                process.kill(pid, 0);
                return /^State:\s*Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
              } catch {
                return true;
              }
            });
            acked = readAcks(acks);
            await finished((await ok("POST", `instances/${name}/snapshot`)).workflowId, COPIED);
            await finished((await ok("POST", `instances/${name}/pause`)).workflowId, COPIED);
            await until(
              "the copies in us-west-2",
              () => {
                const mine = (tags: Map<string, string>) => tags.get("spotkeep:instance") === name && tags.has("spotkeep:copy-of");
                return (
                  [...west.snapshots.values()].some(
                    (x) => mine(x.tags) && x.state === "completed" && x.description?.includes("/dev/sdf"),
                  ) && [...west.images.values()].some((x) => mine(x.tags) && x.state === "available")
                );
              },
              COPIED,
            );
            // Subnets whose CIDR differs from the old one's (both regions' default VPCs are 172.31.0.0/16): the new address must differ.
            const oldEni = env.lc.world.enis.get((await ok("GET", `instances/${name}`)).resources.network.eniId)!;
            const oldCidr = env.lc.world.subnets.get(oldEni.subnetId)!.cidr;
            const subnets = [...west.subnets.values()].filter((x) => x.cidr !== oldCidr).map((x) => x.id);
            relocateId = (await ok("POST", `instances/${name}/restore`, { region: WEST, overrides: { launch: { subnetIds: subnets } } }))
              .workflowId;
          },
        });
        expect(last).toBeTruthy();
        const wf = await finished(relocateId, RECOVERED);
        expect(wf.kind).toBe("relocate");
        const b = first!;
        const after = (await api(s, "GET", `instances/${name}`)).body;
        expect(after.state).toBe("running");
        expect(after.spec.region).toBe(WEST);
        expect(after.generation).toBe(b.generation + 1);
        // One EC2 instance and one ENI made for it in us-west-2; no volume of it left unattached there.
        const tagged = (tags: Map<string, string>) => tags.get("spotkeep:instance") === name;
        expect([...west.instances.values()].filter((i) => tagged(i.tags)).map((i) => i.id)).toEqual([after.instanceId]);
        expect([...west.enis.values()].filter((e) => tagged(e.tags)).map((e) => e.id)).toEqual([after.resources.network.eniId]);
        const loose = [...west.volumes.values()].filter((v) => v.state === "available");
        expect(loose.map((v) => v.id)).toEqual([]);
        // The old region is untouched: its volume is still there, kept.
        expect(env.lc.world.volumes.get(b.resources.volumes[0]!.volumeId)?.state).toBe("available");
        // The root and every acknowledged record came back.
        const root = env.rootDir(after.instanceId);
        expect(readFileSync(join(root, "etc", "spotkeep-marker"), "utf8")).toContain(`first-boot ${b.instanceId}`);
        const records = readRecords(join(root, "data", "records.log"));
        expect(acked.length).toBeGreaterThan(10);
        expect(acked.filter((n) => !records.has(n))).toEqual([]);
        expect(after.privateIp).not.toBe(b.privateIp);
      });
    } finally {
      killAll(new Set(runs.map((r) => r.child)));
      await Promise.all(runs.map((r) => r.exited));
      await terminateCaseInstances(env, name);
    }
  });
});
