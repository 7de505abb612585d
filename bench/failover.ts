/**
 * Coordinator failover at time scale 1: two coordinators on one throwaway PostgreSQL and
 * localcloud (process runtime, real agent). The leader is SIGKILLed and a spot interruption
 * notice is raised at the same moment; the report gives, from the kill, when the standby leads
 * (/healthz says leader) and when the notice is handled (the stateful instance is `replacing`:
 * the agent moved to the new leader, delivered the notice from its outbox, and the replacement
 * was admitted).
 *
 *   npx tsx bench/failover.ts [--lease-seconds 15] [--count 1] [--profile instant|realistic]
 *
 * Writes bench/reports/failover.json.
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { adminApi, killAll } from "../test/coordinator/coordinator-process.js";
import { ensureAgentBundle, ROOT, startEnv, until } from "../test/coordinator/harness.js";
import { haPair, healthz, reach, startNode, waitLeader } from "../test/e2e/ha-scenario.js";
import { postgresUnavailable, startPostgres } from "../test/support/pg-server.js";
import { benchSummary, commandLine } from "./summary.js";

const { values } = parseArgs({
  options: {
    "lease-seconds": { type: "string", default: "15" },
    count: { type: "string", default: "1" },
    profile: { type: "string", default: "instant" },
  },
  strict: true,
});
const leaseSeconds = Number(values["lease-seconds"]);
const count = Number(values.count);
const profile = values.profile === "realistic" ? "realistic" : "instant";
if (!(leaseSeconds >= 1 && leaseSeconds <= 300)) throw new Error("--lease-seconds: 1 to 300");
if (!(Number.isInteger(count) && count >= 1 && count <= 20)) throw new Error("--count: 1 to 20");
const why = postgresUnavailable();
if (why) {
  console.error(`bench/failover cannot run here: ${why}`);
  process.exit(1);
}

ensureAgentBundle();
const dir = mkdtempSync(join(tmpdir(), "spotkeep-failover-"));
const children = new Set<ChildProcess>();
const env = await startEnv(dir, 1, { profile });
const pgs = await startPostgres();
const runs: { leaderSeconds: number; noticeHandledSeconds: number; epochAfter: number | null }[] = [];
try {
  for (let i = 0; i < count; i++) {
    const pair = await haPair(env, pgs, dir, `bench_${i}`, 1, leaseSeconds);
    const a = await startNode(pair.a, { ownerDir: dir, children });
    await waitLeader(pair.a);
    await startNode(pair.b, { ownerDir: dir, children });
    const name = `failover-${i}`;
    await adminApi(pair.a.url).ok("POST", "instances", env.spec(name, { acks: join(dir, `${name}.acks`) }));
    const created = await reach(pair.a, name, "running", 1, 300_000);
    // Let the agent settle on the leader (its hello and first heartbeats).
    await new Promise((r) => setTimeout(r, 3000));
    a.child.kill("SIGKILL");
    const killedAt = performance.now();
    await env.control("POST", `instances/${created.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    await waitLeader(pair.b, 120_000);
    const leaderSeconds = (performance.now() - killedAt) / 1000;
    await until(
      "the notice to be handled by the new leader",
      async () => {
        const d = await adminApi(pair.b.url)
          .ok("GET", `instances/${name}`)
          .catch(() => null);
        return d && d.state !== "running" ? true : null;
      },
      120_000,
      50,
    );
    const noticeHandledSeconds = (performance.now() - killedAt) / 1000;
    const epochAfter = (await healthz(pair.b))?.epoch ?? null;
    runs.push({ leaderSeconds, noticeHandledSeconds, epochAfter });
    console.error(
      `run ${i + 1}: standby leading after ${leaderSeconds.toFixed(2)} s, notice handled after ${noticeHandledSeconds.toFixed(2)} s`,
    );
    killAll(children);
  }
} finally {
  killAll(children);
  await env.stop();
  pgs.stop();
  rmSync(dir, { recursive: true, force: true });
}
const max = (k: "leaderSeconds" | "noticeHandledSeconds") => Math.max(...runs.map((r) => r[k]));
const report = {
  bench: "failover",
  at: new Date().toISOString(),
  timeScale: 1,
  leaseSeconds,
  profile,
  runs: runs.map((r) => ({
    leaderSeconds: Math.round(r.leaderSeconds * 100) / 100,
    noticeHandledSeconds: Math.round(r.noticeHandledSeconds * 100) / 100,
    epochAfter: r.epochAfter,
  })),
  maxLeaderSeconds: Math.round(max("leaderSeconds") * 100) / 100,
  maxNoticeHandledSeconds: Math.round(max("noticeHandledSeconds") * 100) / 100,
  /** The standby tries when the lease runs out: it leads at most leaseSeconds after the leader's last renewal. */
  targetLeaderSeconds: leaseSeconds,
};
const summary = benchSummary({
  benchmark: "failover",
  measures: `two coordinators on one PostgreSQL, leader SIGKILLed with a notice raised at once (lease ${leaseSeconds} s, ${profile} profile, time scale 1)`,
  command: commandLine("bench/failover.ts"),
  results: [
    {
      name: "killed leader -> standby leading (slowest run)",
      measured: report.maxLeaderSeconds,
      unit: "s",
      target: { op: "<=", value: leaseSeconds },
    },
    { name: "killed leader -> notice handled (slowest run)", measured: report.maxNoticeHandledSeconds, unit: "s", target: null },
  ],
});
mkdirSync(join(ROOT, "bench", "reports"), { recursive: true });
writeFileSync(join(ROOT, "bench", "reports", "failover.json"), `${JSON.stringify({ summary, ...report }, null, 2)}\n`);
console.log(JSON.stringify(report));
