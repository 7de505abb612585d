/**
 * `npm run e2e:ha`: two coordinators on one throwaway PostgreSQL and one localcloud (no root
 * needed). The leader is SIGKILLed after each step of a replacement in turn, then paused
 * (SIGSTOP) mid-replacement and woken after the standby took over (see ha-scenario.ts). Progress
 * goes to stderr; stdout gets ONE JSON line; exit 0 only when every failover completed with no
 * duplicate launch, no orphan, no lost record and no mutation or write after losing the lease.
 *
 *   npm run e2e:ha [-- --steps 1,5,9] [-- --time-scale 0.05]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { ChildProcess } from "node:child_process";
import { killAll } from "../coordinator/coordinator-process.js";
import { ensureAgentBundle, startEnv } from "../coordinator/harness.js";
import { postgresUnavailable, startPostgres } from "../support/pg-server.js";
import { killScenario, pauseScenario, type ScenarioResult, summarise } from "./ha-scenario.js";

/** begin, quiesce, snapshot-root, terminate-old, wait-old-terminated, image, wait-snapshots, subnets, launch, wait-running, attach, restore, finish, delete-old-root, retention */
const REPLACE_STEPS = 15;

const { values } = parseArgs({
  options: { steps: { type: "string" }, "time-scale": { type: "string", default: "0.05" } },
  strict: true,
});
const timeScale = Number(values["time-scale"]);
if (!(timeScale > 0 && timeScale <= 1)) {
  console.error(`--time-scale: must be a number in (0, 1], got ${JSON.stringify(values["time-scale"])}`);
  process.exit(2);
}
const steps = values.steps ? values.steps.split(",").map(Number) : Array.from({ length: REPLACE_STEPS }, (_, i) => i + 1);
if (steps.some((n) => !Number.isInteger(n) || n < 1 || n > REPLACE_STEPS)) {
  console.error(`--steps: must be step numbers 1-${REPLACE_STEPS} separated by commas, got ${JSON.stringify(values.steps)}`);
  process.exit(2);
}
const why = postgresUnavailable();
if (why) {
  console.error(`e2e:ha cannot run here: ${why}`);
  console.log(JSON.stringify({ failovers: 0, completed: 0, skipped: why }));
  process.exit(1);
}

ensureAgentBundle();
const dir = mkdtempSync(join(tmpdir(), "spotkeep-ha-"));
const children = new Set<ChildProcess>();
const env = await startEnv(dir, timeScale);
const pgs = await startPostgres();
const results: ScenarioResult[] = [];
const log = (l: string) => console.error(l);
try {
  for (const n of steps) {
    const r = await killScenario({ env, pgs, dir, children, timeScale, log }, n);
    console.error(
      `${r.ok ? "ok  " : "FAIL"} ${r.scenario}${r.ok ? "" : `: ${JSON.stringify({ ...r, error: undefined })}`}${r.error ? `: ${r.error}` : ""}`,
    );
    results.push(r);
  }
  const r = await pauseScenario({ env, pgs, dir, children, timeScale, log });
  console.error(
    `${r.ok ? "ok  " : "FAIL"} ${r.scenario}${r.ok ? "" : `: ${JSON.stringify({ ...r, error: undefined })}`}${r.error ? `: ${r.error}` : ""}`,
  );
  results.push(r);
} finally {
  killAll(children);
  await env.stop();
  pgs.stop();
  rmSync(dir, { recursive: true, force: true });
}
const summary = summarise(results);
console.log(JSON.stringify(summary));
const ok =
  results.every((r) => r.ok) &&
  summary.completed === results.length &&
  summary.duplicateLaunches === 0 &&
  summary.orphans === 0 &&
  summary.mutationsAfterLosingLease === 0 &&
  summary.writesAfterLosingLease === 0;
process.exit(ok ? 0 : 1);
