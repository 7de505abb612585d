/**
 * The in-process harness for suites that test the coordinator's decisions: localcloud without a
 * runtime (the EC2 model alone: instances, volumes, ENIs, snapshots, images, target groups, IMDS,
 * no processes or folders), the coordinator in this process, and a FakeAgent for every running
 * spotkeep instance, speaking the real protocol over the real WebSocket and living as the agent does
 * (heartbeats, IMDS spot notices relayed). Time is localcloud's and the coordinator's time scale:
 * model seconds pass in a fraction of real ones, so no test sleeps for long.
 *
 * What it cannot show is what a real workload shows: records written by a process on the data
 * volume, the root's contents carried through an image, quiesce hooks and freezes. Those live in
 * the process-level suites (test/coordinator/e2e.test.ts, crash*.test.ts, make-before-break.test.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main } from "../../cli/main.js";
import { type Coordinator, startCoordinator } from "../../coordinator/service.js";
import type { SpecInput } from "../../shared/spec.js";
import type { FakeAgent, LiveAgent } from "../coordinator/fake-agent.js";
import { watchAgents } from "../coordinator/fake-agent.js";
import { coordinatorConfig, type Env, startEnv } from "../coordinator/harness.js";

/**
 * A stand-in agent bundle in `dir`, for a coordinator whose instances run nothing: the user-data
 * names the bundle by its SHA-256, and nothing runs it, so the inner loop needs no `npm run build`.
 */
export function agentStandIn(dir: string): string {
  const path = join(dir, "agent-stand-in.js");
  writeFileSync(path, "// no runtime: the agent is a FakeAgent in the test process\n");
  return path;
}

export interface InProcess {
  env: Env;
  dir: string;
  timeScale: number;
  /** The coordinator now (replaced by restart()). */
  readonly coord: Coordinator;
  /** The fake agent of each EC2 instance, by instance id (the latest one when it reconnected). */
  agents: Map<string, FakeAgent>;
  /** The application health each agent reports (default healthy): set an instance id to fail its probe. */
  failingProbe: Set<string>;
  /** A spec without a workload (nothing would run it): the same persistence and network as env.spec. */
  spec(name: string, o?: Parameters<Env["spec"]>[1]): SpecInput;
  /** The coordinator's HTTP API, with the admin token. */
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** The spotkeep CLI, in this process (cli/main.ts, not the built one), against this coordinator: exit code and output. */
  cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** A hung instance: its agent's connection stays open and goes silent (localcloud's `hang` without processes). */
  hang(instanceId: string): void;
  /** Stop the coordinator and start another on the same data directory (its agents reconnect). */
  restart(): Promise<Coordinator>;
  stop(): Promise<void>;
}

export async function startInProcess(
  o: {
    /** The temp dir's prefix. */
    prefix: string;
    /** real = model × timeScale (both localcloud and the coordinator); default 0.01. */
    timeScale?: number;
    /** Coordinator config beyond coordinatorConfig's (a function of the env: e.g. the events queue's URL). */
    config?: Record<string, unknown> | ((env: Env) => Record<string, unknown>);
    /** The calendar the coordinator reads cron expressions on (default the real clock). */
    calendar?: () => number;
    /** An SQS queue that EC2's instance events go to (localcloud's eventsQueue). */
    eventsQueue?: string;
    /** Instances whose bootstrap cannot start the agent: their boot report is sent instead (LiveAgent.bootFailure). */
    bootFailure?: LiveAgent["bootFailure"];
    /** The regions localcloud serves (default us-east-1 alone); give the coordinator the others in `config.regions`. */
    regions?: string[];
  } = { prefix: "spotkeep-inproc-" },
): Promise<InProcess> {
  const timeScale = o.timeScale ?? 0.01;
  const dir = mkdtempSync(join(tmpdir(), o.prefix));
  const env = await startEnv(dir, timeScale, { runtime: "none", eventsQueue: o.eventsQueue, regions: o.regions });
  const extra = { agentBundlePath: agentStandIn(dir), ...(typeof o.config === "function" ? o.config(env) : (o.config ?? {})) };
  const start = () =>
    startCoordinator({
      config: coordinatorConfig(env, join(dir, "coord"), timeScale, extra),
      calendar: o.calendar,
      log: process.env.SPOTKEEP_TEST_LOG ? (l) => console.log(l) : undefined,
    });
  let coord = await start();
  const failingProbe = new Set<string>();
  const live: LiveAgent = {
    timeScale,
    health: (id) => (failingProbe.has(id) ? { ok: false, detail: "HTTP 503" } : { ok: true, detail: "HTTP 200" }),
    ...(o.bootFailure ? { bootFailure: o.bootFailure } : {}),
  };
  const watch = watchAgents(env, () => coord, live);
  return {
    env,
    dir,
    timeScale,
    get coord() {
      return coord;
    },
    agents: watch.agents,
    failingProbe,
    spec: (name, s) => env.spec(name, { ...s, workload: false }),
    async api(method, path, body) {
      const res = await fetch(`${coord.url}/api/v1/${path}`, {
        method,
        headers: { authorization: `Bearer ${coord.adminToken}`, "content-type": "application/json" },
        body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    },
    async cli(...args) {
      const out = { stdout: "", stderr: "" };
      const [write, writeErr] = [process.stdout.write, process.stderr.write];
      const capture = (k: "stdout" | "stderr") =>
        ((chunk: string | Uint8Array) => {
          out[k] += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
          return true;
        }) as typeof process.stdout.write;
      process.stdout.write = capture("stdout");
      process.stderr.write = capture("stderr");
      try {
        const code = await main([...args, "--url", coord.url, "--token", coord.adminToken]);
        return { code, ...out };
      } finally {
        process.stdout.write = write;
        process.stderr.write = writeErr;
      }
    },
    hang(instanceId) {
      const a = watch.agents.get(instanceId);
      if (!a) throw new Error(`no agent connected for ${instanceId}`);
      a.silence();
    },
    async restart() {
      await coord.stop();
      coord = await start();
      return coord;
    },
    async stop() {
      await watch.stop();
      await coord.stop();
      await env.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
