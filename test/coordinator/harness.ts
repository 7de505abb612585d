/**
 * Shared set-up for the coordinator's end-to-end suites: localcloud (process runtime) + a
 * coordinator (in-process or as a child process) + a workload that writes numbered, fsync'd
 * records to the data volume and appends each acknowledged number to a file OUTSIDE the instance.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { startLocalCloud, type LocalCloud } from "../../localcloud/index.js";
import type { ProcessRuntime } from "../../localcloud/runtime/process.js";
import { startCoordinator, type Coordinator } from "../../coordinator/service.js";
import { createAwsGateway } from "../../coordinator/cloud/aws.js";
import type { Ec2Gateway, InstanceInfo } from "../../coordinator/cloud/gateway.js";
import type { SpecInput } from "../../shared/spec.js";
import { parseSpec } from "../../shared/spec.js";
import { ensureBuilt } from "../cli/built.js";
import { type Budget, explain } from "../support/budgets.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const AGENT_BUNDLE = join(ROOT, "dist", "spotkeep-agent.js");
export const COORDINATOR_POLICY = join(ROOT, "docs", "iam", "coordinator-policy.json");

/** Build dist/ (the agent bundle, and the CLI that child-process coordinators run) when stale. */
export function ensureAgentBundle(): void {
  ensureBuilt();
}

/** Writes "<n> <generation-marker>" lines with fsync to /data/records.log; acks go to ACKS (host path). */
const WRITER = `
const fs = require("fs");
const [file, acks, pidFile] = process.argv.slice(2);
let n = 0;
try { const lines = fs.readFileSync(file, "utf8").split("\\n").filter(Boolean); if (lines.length) n = Number(lines[lines.length - 1].split(" ")[0]) || 0; } catch {}
fs.writeFileSync(pidFile, String(process.pid));
const fd = fs.openSync(file, "a");
const afd = fs.openSync(acks, "a");
let stop = false;
process.on("SIGTERM", () => { stop = true; });
const tick = () => {
  if (stop) { fs.closeSync(fd); process.exit(0); }
  n++;
  fs.writeSync(fd, n + " " + process.env.SPOTKEEP_INSTANCE_ID + "\\n");
  fs.fsyncSync(fd);
  fs.writeSync(afd, n + "\\n");
  setTimeout(tick, 15);
};
tick();
`;

/** The user's user-data: root marker on first boot, then the writer in the background. */
export function workloadUserData(acksFile: string): string {
  return `R="\${SPOTKEEP_ROOT_DIR:-}"
mkdir -p "$R/etc" "$R/opt" "$R/run"
[ -f "$R/etc/spotkeep-marker" ] || echo "first-boot $SPOTKEEP_INSTANCE_ID" > "$R/etc/spotkeep-marker"
cat > "$R/opt/writer.js" <<'WRITER_EOF'
${WRITER}
WRITER_EOF
nohup node "$R/opt/writer.js" "$R/data/records.log" ${JSON.stringify(acksFile)} "$R/run/writer.pid" >/dev/null 2>&1 &
`;
}

/**
 * preStop: stop the writer and wait until it is gone (its last acked record is on disk). An exited
 * writer that its parent has not reaped yet (a zombie: the writer is reparented to PID 1, and in a
 * container that is not always an init that reaps at once) still answers kill -0, so a zombie counts
 * as gone; otherwise the hook would wait for the reaper, not for the writer.
 */
export const STOP_WRITER =
  `R="\${SPOTKEEP_ROOT_DIR:-}"; P=$(cat "$R/run/writer.pid" 2>/dev/null); if [ -n "$P" ]; then kill -TERM "$P" 2>/dev/null; for i ` +
  `in $(seq 1 200); do kill -0 "$P" 2>/dev/null || break; grep -qs '^State:[[:space:]]*Z' "/proc/$P/status" && break; sleep 0.02; done; fi`;

export interface Env {
  lc: LocalCloud;
  dir: string;
  ec2: Ec2Gateway;
  subnets: Array<{ id: string; az: string }>;
  control(method: string, path: string, body?: unknown): Promise<any>;
  rootDir(instanceId: string): string;
  spec(
    name: string,
    o?: {
      dataMethod?: "reattach" | "snapshot";
      root?: boolean;
      volumes?: number;
      instanceTypes?: string[];
      fallbackToOnDemand?: boolean;
      acks?: string;
      workload?: boolean;
    },
  ): SpecInput;
  stop(): Promise<void>;
}

/** Env entry that marks processes a suite started itself (coordinator children); see reapLeftovers. */
export const OWNER_ENV = "SPOTKEEP_TEST_OWNER_DIR";
const SUITE_DIR = /^spotkeep-(e2e|faults|crash|bad|cli|bench|burst)-/;

/**
 * Leftovers of an earlier run of these suites that died before its afterAll (a killed vitest):
 * for every suite temp dir whose owner process is gone, SIGKILL the processes started under it
 * (localcloud instances carry SPOTKEEP_LOCALCLOUD_RUNTIME=<its dir>/…, coordinator children
 * OWNER_ENV=<dir>) and remove the dir. Dirs without an owner.pid are not ours to judge.
 */
export function reapLeftovers(): void {
  const root = tmpdir();
  const dead: string[] = [];
  for (const name of readdirSync(root)) {
    if (!SUITE_DIR.test(name)) continue;
    const d = join(root, name);
    let owner: number;
    try {
      owner = Number(readFileSync(join(d, "owner.pid"), "utf8"));
    } catch {
      continue;
    }
    try {
      process.kill(owner, 0);
    } catch {
      dead.push(d);
    }
  }
  if (dead.length === 0) return;
  for (const pid of readdirSync("/proc")
    .filter((n) => /^\d+$/.test(n))
    .map(Number)) {
    if (pid === process.pid) continue;
    let env: string[];
    try {
      env = readFileSync(`/proc/${pid}/environ`).toString("utf8").split("\0");
    } catch {
      continue;
    }
    if (dead.some((d) => env.some((e) => e.startsWith(`SPOTKEEP_LOCALCLOUD_RUNTIME=${d}/`) || e === `${OWNER_ENV}=${d}`))) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }
  for (const d of dead) rmSync(d, { recursive: true, force: true });
}

export async function startEnv(
  dir: string,
  timeScale: number,
  opts: {
    throttle?: boolean;
    runtime?: "process" | "none";
    profile?: "realistic" | "instant";
    /** The IAM policy localcloud enforces; default the one spotkeep ships, null for none. */
    iamPolicy?: string | null;
    /** An SQS queue and a rule that sends EC2's instance events to it (localcloud's eventsQueue). */
    eventsQueue?: string;
    /** The regions localcloud serves (default us-east-1 alone); `subnets` and `spec` are the first's. */
    regions?: string[];
  } = {},
): Promise<Env> {
  reapLeftovers();
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "owner.pid"), String(process.pid));
  const lc = await startLocalCloud({
    port: 0,
    profile: opts.profile ?? "realistic",
    timeScale,
    runtime: opts.runtime ?? "process",
    stateDir: join(dir, "localcloud"),
    throttle: opts.throttle ?? false,
    log: () => undefined,
    // Every suite runs under the least-privilege policy spotkeep ships, as on AWS.
    iamPolicy: opts.iamPolicy === null ? undefined : (opts.iamPolicy ?? COORDINATOR_POLICY),
    eventsQueue: opts.eventsQueue,
    ...(opts.regions ? { regions: opts.regions } : {}),
  });
  const ec2 = createAwsGateway({ region: "us-east-1", endpoint: lc.endpoint, pacingHeadroom: 0 });
  const subnets = [...lc.world.subnets.values()].map((s) => ({ id: s.id, az: s.az })).sort((a, b) => a.az.localeCompare(b.az));
  return {
    lc,
    dir,
    ec2,
    subnets,
    async control(method, path, body) {
      const res = await fetch(`${lc.controlUrl}/${path}`, {
        method,
        headers: { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return text ? JSON.parse(text) : null;
    },
    rootDir: (id) => (lc.runtime as ProcessRuntime).rootDir(id),
    spec(name, o = {}) {
      const nVol = o.volumes ?? 1;
      return {
        name,
        launch: {
          imageId: lc.world.baseImageId,
          instanceTypes: o.instanceTypes ?? ["m5.large", "m6i.large"],
          subnetIds: subnets.map((s) => s.id),
          userData: o.workload === false ? "" : workloadUserData(o.acks ?? join(dir, `${name}.acks`)),
          market: { type: "spot", fallbackToOnDemand: o.fallbackToOnDemand ?? true, revertToSpot: true },
        },
        persistence: {
          root: o.root ?? true,
          volumes: Array.from({ length: nVol }, (_, i) => ({
            device: `/dev/sd${"fghijk"[i]}`,
            sizeGiB: 1,
            mountPoint: i === 0 ? "/data" : `/data${i}`,
          })),
          dataMethod: o.dataMethod ?? "reattach",
          network: { privateIp: "same-eni" },
        },
        hooks: { preStop: STOP_WRITER, timeoutSeconds: 30 },
      };
    },
    async stop() {
      await lc.stop();
    },
  };
}

export function coordinatorConfig(env: Env, dataDir: string, timeScale: number, extra: Record<string, unknown> = {}) {
  return {
    listen: "127.0.0.1:0",
    dataDir,
    ec2Endpoint: env.lc.endpoint,
    identityCertificate: env.lc.certificatePem,
    timeScale,
    adminToken: "test-admin-token-0123456789",
    agentBundlePath: AGENT_BUNDLE,
    lostCheckIntervalMs: 5000,
    // localcloud's process runtime: every instance reaches the coordinator from loopback.
    agentSourceCheck: false,
    ...extra,
  };
}

export async function inProcessCoordinator(
  env: Env,
  dataDir: string,
  timeScale: number,
  extra: Record<string, unknown> = {},
): Promise<Coordinator> {
  return startCoordinator({
    config: coordinatorConfig(env, dataDir, timeScale, extra),
    log: process.env.SPOTKEEP_TEST_LOG ? (l) => console.log(l) : undefined,
  });
}

/**
 * Polls `f` until it answers truthy. `limit` is real ms, or a Budget (test/support/budgets.ts) whose
 * terms the timeout message spells out: what was awaited, for how long, and why that long.
 */
export async function until<T>(
  what: string,
  f: () => Promise<T | null | undefined | false> | T | null | undefined | false,
  limit: number | Budget = 60_000,
  every = 50,
): Promise<T> {
  const ms = typeof limit === "number" ? limit : limit.ms;
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end)
      throw new Error(`timed out after ${ms} ms waiting for ${what}${typeof limit === "number" ? "" : ` (budget ${explain(limit)})`}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Instances of a stateful instance that are pending or running in EC2. */
export async function liveInstances(env: Env, name: string): Promise<InstanceInfo[]> {
  return (await env.ec2.findInstances({ "spotkeep:instance": name })).filter((i) => i.state === "pending" || i.state === "running");
}

export function readAcks(file: string): number[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8").split("\n").filter(Boolean).map(Number);
}

export function readRecords(file: string): Set<number> {
  if (!existsSync(file)) return new Set();
  return new Set(
    readFileSync(file, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => Number(l.split(" ")[0])),
  );
}

export { parseSpec, writeFileSync, spawn, type ChildProcess };

/**
 * A finished case's EC2 instances go (after its coordinator is stopped): otherwise every case of a
 * long matrix leaves an agent and a workload polling on the scaled clock, and the last cases of the
 * file run beside dozens of them.
 */
export async function terminateCaseInstances(env: Env, name: string): Promise<void> {
  for (const i of await liveInstances(env, name).catch(() => [])) await env.ec2.terminateInstance(i.instanceId).catch(() => undefined);
}
