/**
 * Two coordinators on one PostgreSQL (ha-scenario.ts): the leader SIGKILLed after a few
 * representative steps of a replacement (`npm run e2e:ha` runs every step), and the leader
 * paused past its lease and woken after the standby took over.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAll } from "./coordinator-process.js";
import { ensureAgentBundle, type Env, startEnv } from "./harness.js";
import { type PostgresServer, postgresUnavailable, startPostgres } from "../support/pg-server.js";
import { execFileSync } from "node:child_process";
import { haPair, healthz, killScenario, pauseScenario, startNode, waitLeader } from "../e2e/ha-scenario.js";
import { adminApi, TEST_TOKEN } from "./coordinator-process.js";
import { ROOT } from "./harness.js";

const SCALE = 0.05;
/** quiesce (the agent was asked), terminate-old (EC2 acted), launch (a ClientToken in flight), finish. */
const STEPS = [2, 4, 9, 13];
const why = postgresUnavailable();

let dir: string;
let env: Env;
let pgs: PostgresServer;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  if (why) return;
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-ha-"));
  env = await startEnv(dir, SCALE);
  pgs = await startPostgres();
}, 120_000);
afterAll(async () => {
  killAll(children);
  await env?.stop();
  pgs?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ctx = () => ({ env, pgs, dir, children, timeScale: SCALE, log: process.env.SPOTKEEP_TEST_LOG ? console.log : undefined });

describe.skipIf(why !== null)(`two coordinators on one PostgreSQL${why ? ` (skipped: ${why})` : ""}`, () => {
  it("the standby serves reads, refuses writes naming the leader, and says so in /healthz, /metrics and spotkeep status", async () => {
    const pair = await haPair(env, pgs, dir, "roles", SCALE);
    try {
      await startNode(pair.a, { ownerDir: dir, children });
      await waitLeader(pair.a);
      await startNode(pair.b, { ownerDir: dir, children });
      expect(await healthz(pair.b)).toMatchObject({ ok: true, role: "standby", leader: pair.a.url, epoch: 1 });
      expect(await healthz(pair.a)).toMatchObject({ role: "leader", leader: pair.a.url, epoch: 1 });
      expect((await fetch(`${pair.b.url}/healthz?role=leader`)).status).toBe(503);
      expect((await fetch(`${pair.a.url}/healthz?role=leader`)).status).toBe(200);
      expect(await (await fetch(`${pair.b.url}/metrics`)).text()).toMatch(
        /spotkeep_coordinator_leader 0\n[\s\S]*spotkeep_coordinator_lease_epoch 1\n/,
      );
      expect(await (await fetch(`${pair.a.url}/metrics`)).text()).toMatch(/spotkeep_coordinator_leader 1\n/);
      expect((await adminApi(pair.b.url).ok("GET", "instances")).instances).toEqual([]);
      const refused = await adminApi(pair.b.url).call("POST", "instances", env.spec("ha-roles"));
      expect(refused).toMatchObject({ status: 503, body: { error: { code: "not-leader" }, leader: pair.a.url } });
      expect((await adminApi(pair.a.url).ok("GET", "instances")).instances).toEqual([]);
      const status = (url: string) =>
        execFileSync(process.execPath, [join(ROOT, "bin", "spotkeep.js"), "status", "--url", url, "--token", TEST_TOKEN], {
          encoding: "utf8",
        });
      expect(status(pair.b.url)).toContain(`coordinator: ${pair.b.url} is a standby; ${pair.a.url} leads (lease epoch 1)`);
      expect(status(pair.a.url)).toMatch(new RegExp(`^coordinator: ${pair.a.url} leads \\(.+, lease epoch 1\\)`));
    } finally {
      for (const n of [pair.a, pair.b]) n.proc?.child.kill("SIGKILL");
    }
  }, 120_000);

  it.each(STEPS)(
    "SIGKILL the leader after replace step %i: the standby takes over and finishes with one live generation, no duplicate launch, no orphan, data intact",
    async (n) => {
      const r = await killScenario(ctx(), n);
      expect(r.error ?? null).toBeNull();
      expect(r).toMatchObject({ ok: true, completed: true, duplicateLaunches: 0, orphans: [], lostRecords: 0, replaceWorkflows: 1 });
      expect(r.failoverSeconds).not.toBeNull();
    },
    240_000,
  );

  it("SIGSTOP the leader mid-replacement until the standby takes over, then SIGCONT: it makes no EC2 mutation and no store write after the takeover, and exits", async () => {
    const r = await pauseScenario(ctx());
    expect(r.error ?? null).toBeNull();
    expect(r).toMatchObject({
      ok: true,
      completed: true,
      duplicateLaunches: 0,
      orphans: [],
      lostRecords: 0,
      replaceWorkflows: 1,
      mutationsAfterLosingLease: 0,
      writesAfterLosingLease: 0,
    });
    // The call log and the write audit did see the old leader act before it was paused.
    expect(r.leaderMutationsBefore).toBeGreaterThan(0);
    expect(r.leaderWritesBefore).toBeGreaterThan(0);
  }, 240_000);
});
