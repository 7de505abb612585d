/**
 * `npm run e2e:postgres`: the PostgreSQL end-to-end run (root + Debian's PostgreSQL), see
 * postgres-scenario.ts. Progress goes to stderr; stdout gets ONE JSON line. Exit 0 only when no
 * acknowledged row was lost, the private IP never changed, and nothing was left behind.
 *
 *   npm run e2e:postgres [-- --time-scale 0.05] [-- --verbose]
 */
import { parseArgs } from "node:util";
import { postgresE2eUnavailable, REPORT_PATH, runPostgresScenario, summaryLine } from "./postgres-scenario.js";

const { values } = parseArgs({
  options: { "time-scale": { type: "string", default: "0.05" }, verbose: { type: "boolean", default: false } },
  strict: true,
});
const timeScale = Number(values["time-scale"]);
if (!(timeScale > 0 && timeScale <= 1)) {
  console.error(`--time-scale: must be a number in (0, 1], got ${JSON.stringify(values["time-scale"])}`);
  process.exit(2);
}
const why = postgresE2eUnavailable();
if (why) {
  console.error(`e2e:postgres cannot run here: ${why}`);
  console.log(JSON.stringify({ interruptions: 0, acknowledged: 0, lost: null, downtimeSeconds: [], sameIp: null, skipped: why }));
  process.exit(1);
}
const r = await runPostgresScenario({ timeScale, verbose: values.verbose, log: (l) => console.error(l) });
console.error(`report: ${REPORT_PATH}`);
console.log(summaryLine(r));
process.exit(r.ok && r.lost === 0 && r.sameIp ? 0 : 1);
