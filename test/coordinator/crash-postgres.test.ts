/**
 * The crash test's replace cases on the PostgreSQL store: `spotkeep coordinator` with `store.url`
 * is SIGKILLed right after each step of a replacement in turn, then a coordinator is started
 * again on the same database and address but from another data directory (the store is all it
 * resumes from). Every run must end with
 * the instance running on generation 2: one live EC2 instance, no duplicate launch, the same data
 * volume and ENI, every acknowledged record intact.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PostgresServer, postgresUnavailable, startPostgres } from "../support/pg-server.js";
import { AGENT_RECONNECT_CAP_MS, budget, plus, runbookModel, runbookSteps } from "../support/budgets.js";
import { crashCases } from "../support/crash-matrix.js";
import { crashCaseEvidence, withEvidence } from "../support/evidence.js";
import { adminApi, freePort, killAll, reachState, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import { coordinatorConfig, ensureAgentBundle, liveInstances, readAcks, readRecords, startEnv, until, type Env } from "./harness.js";

const SCALE = 0.03;
/** Every step of a replacement (test/support/crash-matrix.ts). */
const STEPS = crashCases("replace");
const why = postgresUnavailable();

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
/** Up to the crash: a restarted coordinator and the replacement so far (at most all of it). */
const CRASHED = budget({
  scale: SCALE,
  model: runbookModel("replace", SHAPE),
  steps: runbookSteps("replace"),
  starts: { coordinator: 1, agent: 1 },
});
/** After the restart: the agents find the new coordinator, and the rest of the replacement. */
const RECOVERED = budget({
  scale: SCALE,
  model: { "agent reconnect": AGENT_RECONNECT_CAP_MS, ...runbookModel("replace", SHAPE) },
  steps: runbookSteps("replace"),
  starts: { coordinator: 1, agent: 1 },
});

describe.skipIf(why !== null)(
  `coordinator crash at every step of a replacement, PostgreSQL store${why ? ` (skipped: ${why})` : ""}`,
  () => {
    let dir: string;
    let env: Env;
    let pg: PostgresServer;
    const children = new Set<ChildProcess>();

    beforeAll(async () => {
      ensureAgentBundle();
      dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-pg-"));
      pg = await startPostgres();
      env = await startEnv(dir, SCALE);
    });
    afterAll(async () => {
      killAll(children);
      await env?.stop();
      pg?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    /** A coordinator config on database `url` with its own data directory, on a free port or another slot's. */
    async function slot(id: string, url: string, samePortAs?: Slot): Promise<Slot> {
      const port = samePortAs?.port ?? (await freePort());
      const cfgFile = join(dir, `coordinator-${id}.json`);
      const cfg = coordinatorConfig(env, join(dir, `coord-${id}`), SCALE, {
        listen: `127.0.0.1:${port}`,
        lostCheckIntervalMs: 3000,
        store: { url },
      });
      writeFileSync(cfgFile, JSON.stringify(cfg));
      return { port, cfgFile };
    }

    it.concurrent.for(STEPS)(
      "SIGKILL after replace step $n ($step): a coordinator started on the same database finishes it, one identity, data intact",
      { timeout: plus(CREATED, RECORDS, CRASHED, RECOVERED).ms },
      async ({ n, step }, ctx) => {
        const name = `pgcrash-${n}`;
        const acks = join(dir, `${name}.acks`);
        const url = pg.createDatabase(`crash_${n}`);
        const first = await slot(`${n}-a`, url);
        const api = (s: Slot) => adminApi(`http://127.0.0.1:${s.port}`);
        let current = await startCoordinatorCli(first, { ownerDir: dir, children, firstStart: true });
        const runs = [current];
        // Every coordinator of the case serves on the first one's address.
        const evidence = crashCaseEvidence({ runs, call: (m, p) => api(first).call(m, p), name, world: env.lc.world });
        try {
          await withEvidence(ctx, import.meta.filename, evidence, async () => {
            await api(first).ok("POST", "instances", env.spec(name, { acks }));
            const created = await reachState(`http://127.0.0.1:${first.port}`, name, "running", 1, CREATED);
            await until("records to be acknowledged", () => readAcks(acks).length > 10, RECORDS);
            current.child.kill("SIGTERM");
            await current.exited;
            current = await startCoordinatorCli(first, { ownerDir: dir, children, crash: { kind: "replace", n, step } });
            runs.push(current);
            await env.control("POST", `instances/${created.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
            const how = await Promise.race([current.exited, new Promise((r) => setTimeout(() => r("no-crash"), CRASHED.ms))]);
            expect(how, current.log.join("")).toMatchObject({ signal: "SIGKILL" });

            // Agents were given the first coordinator's URL: the next one serves on the same address.
            const second = await slot(`${n}-b`, url, first);
            current = await startCoordinatorCli(second, { ownerDir: dir, children });
            runs.push(current);
            const after = await reachState(`http://127.0.0.1:${second.port}`, name, "running", 2, RECOVERED);
            expect(after.resources.volumes[0].volumeId).toBe(created.resources.volumes[0].volumeId);
            expect(after.resources.network.eniId).toBe(created.resources.network.eniId);
            expect((await liveInstances(env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
            const gen2 = await env.ec2.findInstances({ "spotkeep:instance": name, "spotkeep:generation": "2" });
            expect(gen2.map((i) => i.instanceId)).toEqual([after.instanceId]);
            const enis = [...env.lc.world.enis.values()].filter((e) => e.tags.get("spotkeep:instance") === name);
            expect(enis.map((e) => e.id)).toEqual([after.resources.network.eniId]);
            const acked = readAcks(acks);
            const records = readRecords(join(env.rootDir(after.instanceId), "data", "records.log"));
            expect(acked.filter((x) => !records.has(x))).toEqual([]);
          });
        } finally {
          if (current.child.exitCode === null && current.child.signalCode === null) {
            current.child.kill("SIGKILL");
            await current.exited;
          }
        }
      },
    );
  },
);
