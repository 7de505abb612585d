/**
 * Crash test of a group's runbooks: the coordinator process is SIGKILLed right after each step of
 * the group-update runbook of a 2-member group (plan, roll g-0, wait g-0, roll g-1, wait g-1), in
 * one run of the rolling update: killed after step 1, started again, killed after step 2, ... then
 * started unarmed (test/support/crash-chain.ts). The roll-out must finish where it stopped: each
 * member recycled exactly once with the new template, never two members down at once (sampled
 * throughout, across every kill), one live EC2 instance per member with its own address and ENI.
 * The same for every step of the group's create (group-scale 0 → 2), in one run of it: two members,
 * each with one ENI at its own pool address, one volume and one live instance; nothing launched or
 * created twice.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminApi, coordinatorSlot, type CrashAt, killAll, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import { type Env, ensureAgentBundle, liveInstances, startEnv, terminateCaseInstances, until } from "./harness.js";
import { AGENT_RECONNECT_CAP_MS, budget, plus, runbookModel, runbookSteps } from "../support/budgets.js";
import { crashAtEveryStep } from "../support/crash-chain.js";
import { type CrashCase, groupStepNumbers, groupSteps } from "../support/crash-matrix.js";
import { groupCaseEvidence, withEvidence } from "../support/evidence.js";

/**
 * A coordinator's restart (about a second of real time on a loaded machine) is model time too: at
 * 0.2 it is a few model seconds, as it is in the field, so a chain's kills do not stretch the
 * members' runbooks by minutes of model time.
 */
const SCALE = 0.2;
type GroupKind = "group-update" | "group-scale";
/** The group each chain runs (its members are `${group}-0` and `${group}-1`). */
const GROUP: Record<GroupKind, string> = { "group-update": "g-update", "group-scale": "g-scale" };
/**
 * Every step of a 2-member group's update and of its create (test/support/crash-matrix.ts, named after its members), as the
 * cases of a chain: the crashing coordinator matches the group's own workflow (its kind), not the members' recycles or creates.
 */
const cases = (kind: GroupKind): CrashCase[] => {
  const steps = groupSteps(kind, GROUP[kind]);
  return groupStepNumbers(kind).map((n) => ({ kind, n, step: steps[n - 1]! }));
};
const UPDATE_CASES = cases("group-update");
const SCALE_CASES = cases("group-scale");

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-group-"));
  env = await startEnv(dir, SCALE);
});
afterAll(async () => {
  killAll(children);
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

// What each phase may take (test/support/budgets.ts): groupSpec's template (no root persistence,
// 30 s hooks), two members each with its own agent.
const SHAPE = { hooksTimeoutSeconds: 30, root: false, members: 2 };
const AGENTS = { agent: SHAPE.members };
/** The first coordinator's start and the group's create. */
const CREATED = budget({
  scale: SCALE,
  model: runbookModel("group-scale", SHAPE),
  steps: runbookSteps("group-scale", SHAPE),
  starts: { coordinator: 1, ...AGENTS },
});
/**
 * One kill, or the end after the last: a coordinator started, the agents find it, and the rest of
 * the runbook (at most all of it).
 */
const recovered = (kind: GroupKind) =>
  budget({
    scale: SCALE,
    model: { "agent reconnect": AGENT_RECONNECT_CAP_MS, ...runbookModel(kind, SHAPE) },
    steps: runbookSteps(kind, SHAPE),
    starts: { coordinator: 1, ...AGENTS },
  });

/** A 2-member group whose pool is 172.31.0.`host` and 172.31.16.`host` (each chain its own addresses). */
function groupSpec(name: string, rev: string, host: number) {
  const { name: _n, ...template } = env.spec("x", { volumes: 1, root: false, workload: false });
  template.launch.subnetIds = env.subnets.slice(0, 2).map((s) => s.id);
  template.launch.tags = { rev };
  return { kind: "group", name, size: 2, ipPool: [`172.31.0.${host}`, `172.31.16.${host}`], template };
}

/** A chain's coordinator slot (port, data dir), its starts and its admin API. */
async function chainSlot(id: string) {
  const s: Slot = await coordinatorSlot(env, dir, id, SCALE);
  return {
    start: (crash: CrashAt | undefined, firstStart: boolean) => startCoordinatorCli(s, { ownerDir: dir, children, crash, firstStart }),
    // The port can move on the first start (startCoordinatorCli): read it at each call.
    api: () => adminApi(`http://127.0.0.1:${s.port}`),
  };
}
type Run = Awaited<ReturnType<Awaited<ReturnType<typeof chainSlot>>["start"]>>;

/** SIGKILLs whatever of the chain still runs, and terminates the members' instances. */
async function cleanUp(runs: Run[], members: string[]): Promise<void> {
  killAll(new Set(runs.map((r) => r.child)));
  await Promise.all(runs.map((r) => r.exited));
  for (const m of members) await terminateCaseInstances(env, m);
}

describe.concurrent("coordinator crash at every step of a group's rolling update", () => {
  it.skipIf(UPDATE_CASES.length === 0)(
    "SIGKILL after each group-update step in turn: the roll-out resumes where it stopped, never two members down",
    { timeout: plus(CREATED, ...UPDATE_CASES.map(() => recovered("group-update")), recovered("group-update")).ms },
    async (ctx) => {
      const group = GROUP["group-update"];
      const members = [`${group}-0`, `${group}-1`];
      const { start, api } = await chainSlot(group);
      const runs: Run[] = [];
      const evidence = groupCaseEvidence({ runs, call: (m, p) => api().call(m, p), group, members, world: env.lc.world });
      let sampling = true;
      let sampler: Promise<void> = Promise.resolve();
      try {
        await withEvidence(ctx, import.meta.filename, evidence, async () => {
          let before: any = null;
          let maxDown = 0;
          await crashAtEveryStep({
            cases: UPDATE_CASES,
            runs,
            eachKill: recovered("group-update"),
            start,
            async begin() {
              const created = await api().ok("POST", "groups", groupSpec(group, "1", 101));
              await until(
                `${group} to be ready`,
                async () => (await api().ok("GET", `workflows/${created.workflowId}`)).status === "succeeded",
                CREATED,
              );
              before = await api().ok("GET", `groups/${group}`);
              expect(before.memberList.map((m: { state: string }) => m.state)).toEqual(["running", "running"]);
              // Members down at once, sampled from the roll-out's start to its end, across every kill and restart.
              sampler = (async () => {
                while (sampling) {
                  try {
                    const d = await api().ok("GET", `groups/${group}`);
                    maxDown = Math.max(maxDown, d.memberList.filter((m: { state: string }) => m.state !== "running").length);
                  } catch {
                    // the coordinator is down between a kill and the next start
                  }
                  await new Promise((r) => setTimeout(r, 25));
                }
              })();
              await api().ok("PUT", `groups/${group}`, groupSpec(group, "2", 101));
            },
          });
          const after = await until(
            `${group} to finish its roll-out`,
            async () => {
              const d = await api().ok("GET", `groups/${group}`);
              if (d.state === "stopped") throw new Error(`${group} stopped: ${d.stateReason}`);
              return d.state === "ready" ? d : null;
            },
            recovered("group-update"),
          );
          sampling = false;
          await sampler;
          expect(maxDown).toBeLessThanOrEqual(1);
          for (const [i, m] of after.memberList.entries()) {
            const was = before.memberList[i];
            expect(m.state).toBe("running");
            expect(m.generation).toBe(2);
            expect({ ip: m.privateIp, eni: m.eniId }).toEqual({ ip: was.privateIp, eni: was.eniId });
            const live = await liveInstances(env, members[i]!);
            expect(live.map((x) => x.instanceId)).toEqual([m.instanceId]);
            expect(live[0]!.tags.rev).toBe("2");
            // Recycled exactly once by the roll-out (no duplicate after any of the replays).
            const detail = await api().ok("GET", `instances/${members[i]}`);
            expect(detail.generations.length).toBe(2);
          }
        });
      } finally {
        sampling = false;
        await sampler;
        await cleanUp(runs, members);
      }
    },
  );
});

describe.concurrent("coordinator crash at every step of a group's create", () => {
  it.skipIf(SCALE_CASES.length === 0)(
    "SIGKILL after each group-scale step in turn: the create resumes, one address, ENI, volume and instance per member",
    // The first coordinator's start is the first kill's.
    { timeout: plus(...SCALE_CASES.map(() => recovered("group-scale")), recovered("group-scale")).ms },
    async (ctx) => {
      const group = GROUP["group-scale"];
      const members = [`${group}-0`, `${group}-1`];
      const { start, api } = await chainSlot(group);
      const runs: Run[] = [];
      const evidence = groupCaseEvidence({ runs, call: (m, p) => api().call(m, p), group, members, world: env.lc.world });
      try {
        await withEvidence(ctx, import.meta.filename, evidence, async () => {
          await crashAtEveryStep({
            cases: SCALE_CASES,
            runs,
            eachKill: recovered("group-scale"),
            start,
            async begin() {
              await api().ok("POST", "groups", groupSpec(group, "1", 121));
            },
          });
          const d = await until(
            `${group} to be ready`,
            async () => {
              const g = await api().ok("GET", `groups/${group}`);
              if (g.state === "stopped") throw new Error(`${group} stopped: ${g.stateReason}`);
              return g.state === "ready" ? g : null;
            },
            recovered("group-scale"),
          );
          expect(d.memberList.map((m: { privateIp: string }) => m.privateIp).sort()).toEqual(["172.31.0.121", "172.31.16.121"]);
          for (const m of d.memberList) {
            expect(m.state).toBe("running");
            const enis = [...env.lc.world.enis.values()].filter((e) => e.tags.get("spotkeep:instance") === m.name);
            expect(enis.map((e) => [e.id, e.privateIp])).toEqual([[m.eniId, m.privateIp]]);
            const vols = [...env.lc.world.volumes.values()].filter(
              (v) => v.tags.get("spotkeep:instance") === m.name && v.tags.has("spotkeep:device") && v.state !== "deleted",
            );
            expect(vols).toHaveLength(1);
            expect((await liveInstances(env, m.name)).map((i) => i.instanceId)).toEqual([m.instanceId]);
            expect((await api().ok("GET", `instances/${m.name}`)).generations).toHaveLength(1);
          }
        });
      } finally {
        await cleanUp(runs, members);
      }
    },
  );
});
