import { defineConfig } from "vitest/config";

const ALL = [
  "shared/**/*.test.ts",
  "agent/**/*.test.ts",
  "coordinator/**/*.test.ts",
  "localcloud/**/*.test.ts",
  "bench/**/*.test.ts",
  "test/**/*.test.ts",
];

/**
 * The suites that run many real processes (coordinators killed and restarted, agents and workloads
 * per instance, PostgreSQL servers, network namespaces, an npm install that compiles a native
 * module) and whose runbooks race model-time deadlines. They run after the main lane, two files at
 * a time: the crash chains (test/support/crash-chain.ts) spend most of their time waiting on model
 * time at scales of 0.2 to 0.4, so two such files side by side leave the cores to each other. Each
 * keeps its own concurrency inside the file (describe.concurrent, at most `maxConcurrency` cases).
 */
export const HEAVY = [
  "test/coordinator/crash.test.ts",
  "test/coordinator/crash-*.test.ts",
  "test/coordinator/*-crash.test.ts",
  "test/coordinator/ha.test.ts",
  "test/coordinator/faults.test.ts",
  "test/e2e/postgres.test.ts",
  "test/linux/linux.test.ts",
  // npm pack rebuilds dist/ in place, from the same sources: every file is written to a temporary
  // name and renamed over the same bytes, so a built coordinator starting beside it (a crash suite
  // in the other heavy worker) reads whole files. It stays out of the main lane, whose suites edit
  // nothing in dist/ but start built CLIs all the time.
  "test/release/pack.test.ts",
];

/**
 * The inner loop (`npm run test:fast`): the unit tests beside their modules and the suites that run
 * everything in this process (test/support/in-process.ts: localcloud without a runtime, the
 * coordinator in process, fake agents; or no localcloud at all). No child process: no localcloud
 * process runtime, no built CLI or agent bundle, no coordinator child. Its own project, so
 * `vitest run` still runs every file once.
 */
export const FAST = [
  "shared/**/*.test.ts",
  "agent/**/*.test.ts",
  "coordinator/**/*.test.ts",
  "localcloud/**/*.test.ts",
  "test/api/*.test.ts",
  "test/coordinator/architecture.test.ts",
  "test/coordinator/boot-report.test.ts",
  "test/coordinator/delete.test.ts",
  "test/coordinator/events.test.ts",
  "test/coordinator/gateway.test.ts",
  "test/coordinator/groups.test.ts",
  "test/coordinator/health.test.ts",
  "test/coordinator/hub.test.ts",
  "test/coordinator/import.test.ts",
  "test/coordinator/inventory.test.ts",
  "test/coordinator/hub-security.test.ts",
  "test/coordinator/lifecycle.test.ts",
  "test/coordinator/refusal-flood.test.ts",
  "test/coordinator/region.test.ts",
  "test/coordinator/relocate.test.ts",
  "test/coordinator/tasks-targets.test.ts",
  "test/coordinator/untrusted-agent.test.ts",
];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default", "./test/summary-reporter.ts"],
    pool: "forks",
    // The AWS SDK warns on Node < 22 (CI's main pass runs the machine's Node 20) on every client: noise in test logs.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
    projects: [
      {
        extends: true,
        test: { name: "fast", include: FAST, sequence: { groupOrder: 0 }, maxWorkers: 2 },
      },
      {
        extends: true,
        test: { name: "main", include: ALL, exclude: [...FAST, ...HEAVY], sequence: { groupOrder: 0 }, maxWorkers: 2 },
      },
      {
        extends: true,
        // Three cases at a time inside a file: each case is a coordinator with its agents and
        // workloads polling on a time-scaled clock (at time scale 0.03 an agent's 1 s IMDS poll is
        // 30 ms of real time), so five side by side kept a load average above 20 on 2 cores and
        // pushed boots past the runbooks' own model-time budgets.
        test: { name: "heavy", include: HEAVY, sequence: { groupOrder: 1 }, maxWorkers: 2, maxConcurrency: 3 },
      },
    ],
  },
});
