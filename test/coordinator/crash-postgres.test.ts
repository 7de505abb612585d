/**
 * The crash test's replace runbook on the PostgreSQL store: `spotkeep coordinator` with `store.url`
 * is SIGKILLed right after each step of a replacement, every step of it (test/support/crash-matrix.ts),
 * in one run of the replacement: killed after step 1, started again, killed after step 2, ... then
 * started unarmed (test/support/crash-chain.ts). Every restart is on the same database and address
 * but from another data directory (the store is all it resumes from). The run must end with the
 * instance running on generation 2: one live EC2 instance, no duplicate launch, the same data
 * volume and ENI, every acknowledged record intact.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PostgresServer, postgresUnavailable, startPostgres } from "../support/pg-server.js";
import { AGENT_RECONNECT_CAP_MS, budget, plus, runbookModel, runbookSteps } from "../support/budgets.js";
import { crashAtEveryStep } from "../support/crash-chain.js";
import { crashCases } from "../support/crash-matrix.js";
import { crashCaseEvidence, withEvidence } from "../support/evidence.js";
import { adminApi, type CoordinatorChild, freePort, killAll, reachState, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import {
  coordinatorConfig,
  ensureAgentBundle,
  liveInstances,
  readAcks,
  readRecords,
  startEnv,
  terminateCaseInstances,
  until,
  type Env,
} from "./harness.js";

/**
 * A coordinator's restart (about a second of real time on a loaded machine) is model time too: at
 * 0.2 it is a few model seconds, as it is in the field, so the chain's kills fit in the 120 s
 * interruption notice they happen in.
 */
const SCALE = 0.2;
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
/** One kill, or the end after the last: the agents find the new coordinator, and the rest of the replacement (at most all of it). */
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

    it("SIGKILL after each step of replace in turn: a coordinator started on the same database finishes it each time, one identity, data intact", {
      timeout: plus(CREATED, RECORDS, ...STEPS.map(() => RECOVERED), RECOVERED).ms,
    }, async (ctx) => {
      const name = "pgcrash";
      const acks = join(dir, `${name}.acks`);
      const url = pg.createDatabase("crash");
      const first = await slot("0", url);
      const api = (s: Slot) => adminApi(`http://127.0.0.1:${s.port}`);
      const runs: CoordinatorChild[] = [];
      // Every coordinator of the chain serves on the first one's address.
      const evidence = crashCaseEvidence({ runs, call: (m, p) => api(first).call(m, p), name, world: env.lc.world });
      let created: any = null;
      try {
        await withEvidence(ctx, import.meta.filename, evidence, async () => {
          await crashAtEveryStep({
            cases: STEPS,
            runs,
            eachKill: RECOVERED,
            // Agents were given the first coordinator's URL: each restart serves on the same address, from a data directory
            // no coordinator has used.
            start: async (crash, isFirst) =>
              startCoordinatorCli(isFirst ? first : await slot(String(runs.length), url, first), {
                ownerDir: dir,
                children,
                crash,
                firstStart: isFirst,
              }),
            async begin() {
              await api(first).ok("POST", "instances", env.spec(name, { acks }));
              created = await reachState(`http://127.0.0.1:${first.port}`, name, "running", 1, CREATED);
              await until("records to be acknowledged", () => readAcks(acks).length > 10, RECORDS);
              await env.control("POST", `instances/${created.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
            },
          });
          const after = await reachState(`http://127.0.0.1:${first.port}`, name, "running", 2, RECOVERED);
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
        killAll(new Set(runs.map((r) => r.child)));
        await Promise.all(runs.map((r) => r.exited));
        await terminateCaseInstances(env, name);
      }
    });
  },
);
