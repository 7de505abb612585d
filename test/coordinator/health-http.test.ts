/**
 * The HTTP health check end to end on localcloud (process runtime, realistic profile, time-scaled,
 * the shipped IAM policy enforced) with the real agent bundle and a real application: the agent
 * probes the application's endpoint and reports it in its heartbeats; when it starts failing the
 * instance is recycled within grace period + unhealthy duration + one sweep, onto the same IP with
 * every acknowledged record, and the new generation's probe passes. The other health decisions
 * (hung, impaired, observe only, scheduled maintenance) are test/coordinator/health.test.ts's, in
 * process.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Coordinator } from "../../coordinator/service.js";
import { parseSpec, type SpecInput } from "../../shared/spec.js";
import { freePort } from "./coordinator-process.js";
import { type Env, ensureAgentBundle, inProcessCoordinator, liveInstances, readAcks, readRecords, startEnv, until } from "./harness.js";

const SCALE = 0.03;
/** Model ms between the coordinator's passes (lost instances, health checks). */
const SWEEP_MS = 5000;
const GRACE_S = 20;
const UNHEALTHY_S = 30;
/**
 * Allowance for a loaded test machine, model seconds (0.9 s real): the exact boundaries are the
 * unit tests' business (coordinator/health.test.ts, fake clock).
 */
const JITTER_S = 30;

let dir: string;
let env: Env;
let coord: Coordinator;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-health-http-"));
  env = await startEnv(dir, SCALE);
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE, { lostCheckIntervalMs: SWEEP_MS });
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** An HTTP server on 127.0.0.1:PORT answering 200, or 503 while the host file FLAG-<instance id> exists. */
function appUserData(port: number, flagPrefix: string): string {
  const app = `const http = require("http"), fs = require("fs");
const flag = ${JSON.stringify(flagPrefix)} + process.env.SPOTKEEP_INSTANCE_ID;
http.createServer((req, res) => { res.writeHead(fs.existsSync(flag) ? 503 : 200); res.end(); }).listen(${port}, "127.0.0.1");`;
  return `R="\${SPOTKEEP_ROOT_DIR:-}"
mkdir -p "$R/opt"
cat > "$R/opt/app.js" <<'APP_EOF'
${app}
APP_EOF
nohup node "$R/opt/app.js" >/dev/null 2>&1 &
`;
}

async function create(name: string, extra: Partial<SpecInput>, userDataExtra = "") {
  const acks = join(dir, `${name}.acks`);
  const base = env.spec(name, { acks });
  const spec = parseSpec({ ...base, ...extra, launch: { ...base.launch, userData: `${base.launch.userData}${userDataExtra}` } });
  const { workflowId } = await coord.views.createInstance(spec);
  const created = await coord.engine.wait(workflowId);
  expect(created.error).toBeNull();
  const d = (await coord.views.getInstance(name))!;
  await until("the workload to acknowledge records", () => readAcks(acks).length > 10);
  return { acks, instanceId: d.instanceId!, privateIp: d.privateIp! };
}

const workflows = async (name: string, trigger: string) => (await coord.store.workflows.listFor(name)).filter((w) => w.trigger === trigger);
const modelSeconds = (realMs: number) => realMs / 1000 / SCALE;

/** The recycle finished, onto the same IP, with every acknowledged record, and the old instance is gone. */
async function expectRecycled(name: string, wfId: string, before: { acks: string; instanceId: string; privateIp: string }) {
  const done = await coord.engine.wait(wfId);
  expect(done.error).toBeNull();
  expect(done.status).toBe("succeeded");
  const after = (await coord.views.getInstance(name))!;
  expect(after.state).toBe("running");
  expect(after.generation).toBe(2);
  expect(after.instanceId).not.toBe(before.instanceId);
  expect(after.privateIp).toBe(before.privateIp);
  expect((await liveInstances(env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
  const acked = readAcks(before.acks); // acks first: a record is on disk before its ack is written
  const records = readRecords(join(env.rootDir(after.instanceId!), "data", "records.log"));
  expect(acked.filter((n) => !records.has(n))).toEqual([]);
  return after;
}

describe("autohealing with the real agent's HTTP probe", () => {
  it("an application whose HTTP health endpoint starts failing is recycled likewise", async () => {
    const name = "hl-http";
    // A port reserved for this test process: a random one can already be another test's server, and
    // the probe would then read that server instead of the application.
    const port = await freePort();
    const flag = join(dir, "unhealthy-");
    const before = await create(
      name,
      { health: { type: "http", gracePeriodSeconds: GRACE_S, unhealthyDurationSeconds: UNHEALTHY_S, http: { port, path: "/healthz" } } },
      appUserData(port, flag),
    );
    await until("the probe to pass", async () => (await coord.views.getInstance(name))?.health?.status === "healthy", 30_000);
    const failedAt = Date.now();
    writeFileSync(`${flag}${before.instanceId}`, "");
    await until("the instance to be failing", async () => (await coord.views.getInstance(name))?.health?.status === "failing", 30_000);
    expect((await coord.views.getInstance(name))?.health?.reason).toMatch(
      new RegExp(`127\\.0\\.0\\.1:${port}/healthz failed \\(HTTP 503\\)`),
    );
    const wf = await until("an autohealing recycle", async () => (await workflows(name, "autohealing"))[0], 60_000);
    expect(modelSeconds(wf.startedAt - failedAt)).toBeLessThanOrEqual(GRACE_S + UNHEALTHY_S + SWEEP_MS / 1000 + JITTER_S);
    const after = await expectRecycled(name, wf.id, before);
    expect(existsSync(`${flag}${after.instanceId}`)).toBe(false);
    await until(
      "the new generation's probe to pass",
      async () => (await coord.views.getInstance(name))?.health?.status === "healthy",
      30_000,
    );
  });
});
