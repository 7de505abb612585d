/**
 * Crash test of a group's rolling update: the coordinator process is SIGKILLed right after each
 * step of the group-update runbook of a 2-member group (plan, roll g-0, wait g-0, roll g-1, wait
 * g-1), then restarted. Every run must finish the roll-out where it stopped: each member recycled
 * exactly once with the new template, never two members down at once (sampled throughout, across
 * the crash), one live EC2 instance per member with its own address and ENI. The same for each step
 * of the group's create (group-scale 0 → 2): two members, each with one ENI at its own pool address,
 * one volume and one live instance; nothing launched or created twice.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminApi, coordinatorSlot, killAll, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import { type Env, ensureAgentBundle, liveInstances, startEnv, until } from "./harness.js";
import { AGENT_RECONNECT_CAP_MS, budget, plus, runbookModel, runbookSteps } from "../support/budgets.js";
import { groupStepNumbers, groupSteps } from "../support/crash-matrix.js";
import { groupCaseEvidence, withEvidence } from "../support/evidence.js";

const SCALE = 0.03;
/** Every step of a 2-member group's update and of its create (test/support/crash-matrix.ts, named after its members). */
const STEPS = groupStepNumbers("group-update");
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
/** Up to the crash: a restarted coordinator and the runbook so far (at most all of it). */
const crashed = (kind: "group-scale" | "group-update") =>
  budget({ scale: SCALE, model: runbookModel(kind, SHAPE), steps: runbookSteps(kind, SHAPE), starts: { coordinator: 1, ...AGENTS } });
/** After the restart: the agents find the new coordinator, and the rest of the runbook. */
const recovered = (kind: "group-scale" | "group-update") =>
  budget({
    scale: SCALE,
    model: { "agent reconnect": AGENT_RECONNECT_CAP_MS, ...runbookModel(kind, SHAPE) },
    steps: runbookSteps(kind, SHAPE),
    starts: { coordinator: 1, ...AGENTS },
  });

function groupSpec(name: string, n: number, rev: string, base = 100) {
  const { name: _n, ...template } = env.spec("x", { volumes: 1, root: false, workload: false });
  template.launch.subnetIds = env.subnets.slice(0, 2).map((s) => s.id);
  template.launch.tags = { rev };
  // Each case its own addresses: 172.31.0.(100+n) and 172.31.16.(100+n).
  return { kind: "group", name, size: 2, ipPool: [`172.31.0.${base + n}`, `172.31.16.${base + n}`], template };
}

describe.concurrent("coordinator crash at every step of a group's rolling update", () => {
  it.for(STEPS)(
    "SIGKILL after group-update step %i: the roll-out resumes where it stopped, never two members down",
    { timeout: plus(CREATED, crashed("group-update"), recovered("group-update")).ms },
    async (n, ctx) => {
      const group = `g${n}`;
      const members = [`${group}-0`, `${group}-1`];
      const s: Slot = await coordinatorSlot(env, dir, `group-${n}`, SCALE);
      const start = (crash?: { kind: string; n: number; step: string }, firstStart = false) =>
        startCoordinatorCli(s, { ownerDir: dir, children, crash, firstStart });
      const api = () => adminApi(`http://127.0.0.1:${s.port}`);
      let current = await start(undefined, true);
      const runs = [current];
      const evidence = groupCaseEvidence({ runs, call: (m, p) => api().call(m, p), group, members, world: env.lc.world });
      let sampling = true;
      try {
        await withEvidence(ctx, import.meta.filename, evidence, async () => {
          const created = await api().ok("POST", "groups", groupSpec(group, n, "1"));
          await until(
            `${group} to be ready`,
            async () => (await api().ok("GET", `workflows/${created.workflowId}`)).status === "succeeded",
            CREATED,
          );
          const before = await api().ok("GET", `groups/${group}`);
          expect(before.memberList.map((m: { state: string }) => m.state)).toEqual(["running", "running"]);

          // Restart armed to die after step n of the roll-out, then start it.
          current.child.kill("SIGTERM");
          await current.exited;
          current = await start({ kind: "group-update", n, step: groupSteps("group-update", group)[n - 1]! });
          runs.push(current);
          let maxDown = 0;
          const sampler = (async () => {
            while (sampling) {
              try {
                const d = await api().ok("GET", `groups/${group}`);
                maxDown = Math.max(maxDown, d.memberList.filter((m: { state: string }) => m.state !== "running").length);
              } catch {
                // the coordinator is down between the crash and the restart
              }
              await new Promise((r) => setTimeout(r, 25));
            }
          })();
          await api().ok("PUT", `groups/${group}`, groupSpec(group, n, "2"));
          const how = await Promise.race([current.exited, new Promise((r) => setTimeout(() => r("no-crash"), crashed("group-update").ms))]);
          expect(how, current.log.join("")).toMatchObject({ signal: "SIGKILL" });

          current = await start();
          runs.push(current);
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
            // Recycled exactly once by the roll-out (no duplicate after the replay).
            const detail = await api().ok("GET", `instances/${members[i]}`);
            expect(detail.generations.length).toBe(2);
          }
        });
      } finally {
        sampling = false;
        if (current.child.exitCode === null && current.child.signalCode === null) {
          current.child.kill("SIGKILL");
          await current.exited;
        }
      }
    },
  );
});

const SCALE_STEPS = groupStepNumbers("group-scale");

describe.concurrent("coordinator crash at every step of a group's create", () => {
  it.for(SCALE_STEPS)(
    "SIGKILL after group-scale step %i: the create resumes, one address, ENI, volume and instance per member",
    { timeout: plus(budget({ scale: SCALE, starts: { coordinator: 1 } }), crashed("group-scale"), recovered("group-scale")).ms },
    async (n, ctx) => {
      const group = `c${n}`;
      const s: Slot = await coordinatorSlot(env, dir, `group-scale-${n}`, SCALE);
      const start = (crash?: { kind: string; n: number; step: string }, firstStart = false) =>
        startCoordinatorCli(s, { ownerDir: dir, children, crash, firstStart });
      const api = () => adminApi(`http://127.0.0.1:${s.port}`);
      let current = await start({ kind: "group-scale", n, step: groupSteps("group-scale", group)[n - 1]! }, true);
      const runs = [current];
      const members = [`${group}-0`, `${group}-1`];
      const evidence = groupCaseEvidence({ runs, call: (m, p) => api().call(m, p), group, members, world: env.lc.world });
      try {
        await withEvidence(ctx, import.meta.filename, evidence, async () => {
          await api().ok("POST", "groups", groupSpec(group, n, "1", 120));
          const how = await Promise.race([current.exited, new Promise((r) => setTimeout(() => r("no-crash"), crashed("group-scale").ms))]);
          expect(how, current.log.join("")).toMatchObject({ signal: "SIGKILL" });
          current = await start();
          runs.push(current);
          const d = await until(
            `${group} to be ready`,
            async () => {
              const g = await api().ok("GET", `groups/${group}`);
              if (g.state === "stopped") throw new Error(`${group} stopped: ${g.stateReason}`);
              return g.state === "ready" ? g : null;
            },
            recovered("group-scale"),
          );
          expect(d.memberList.map((m: { privateIp: string }) => m.privateIp).sort()).toEqual([
            `172.31.0.${120 + n}`,
            `172.31.16.${120 + n}`,
          ]);
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
        if (current.child.exitCode === null && current.child.signalCode === null) {
          current.child.kill("SIGKILL");
          await current.exited;
        }
      }
    },
  );
});
