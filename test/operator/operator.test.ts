/**
 * Operator surfaces against a real coordinator on localcloud (process runtime, real agent): the
 * admin CLI in table and --json forms (create --wait with progress, status, describe, events), and
 * /metrics parsing as Prometheus text with counters that move after a replacement.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import YAML from "yaml";
import type { Coordinator } from "../../coordinator/service.js";
import { ensureAgentBundle, inProcessCoordinator, startEnv, until, type Env } from "../coordinator/harness.js";
import { parsePromText, sampleValue } from "./prom-text.js";

const SCALE = 0.03;
const cli = join(import.meta.dirname, "..", "..", "bin", "spotkeep.js");
let dir: string;
let env: Env;
let coord: Coordinator;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args, "--url", coord.url, "--token", coord.adminToken], {
      env: { ...process.env, SPOTKEEP_URL: "", SPOTKEEP_TOKEN: "" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

async function metrics() {
  const res = await fetch(`${coord.url}/metrics`);
  expect(res.status).toBe(200);
  return parsePromText(await res.text());
}

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-operator-"));
  env = await startEnv(dir, SCALE);
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE);
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("admin CLI against a coordinator on localcloud", () => {
  it("create --wait shows progress and ends ready; status/describe/events in table and --json", async () => {
    const spec = join(dir, "ops-db.yaml");
    writeFileSync(spec, YAML.stringify(env.spec("ops-db", { dataMethod: "reattach" })));
    const created = await run(["create", "-f", spec, "--wait"]);
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/\] launch\s+(running|done)/);
    expect(created.stdout).toMatch(/STEP\s+STATUS\s+DURATION\s+ATTEMPTS/);
    expect(created.stdout).toMatch(/ops-db is ready\n$/);

    const status = await run(["status"]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/^NAME\s+STATE\s+GEN/);
    expect(status.stdout).toMatch(/ops-db\s+running\s+1\s+i-[0-9a-f]{17}\s+m5\.large\s+us-east-1a\s+spot\s+172\.31\./);
    const statusJson = JSON.parse((await run(["status", "--json"])).stdout);
    expect(statusJson).toEqual([expect.objectContaining({ name: "ops-db", state: "running", generation: 1, lifecycle: "spot" })]);

    const describeOut = await run(["describe", "ops-db"]);
    expect(describeOut.code).toBe(0);
    expect(describeOut.stdout).toMatch(/network interface\s+eni-[0-9a-f]{17}/);
    expect(describeOut.stdout).toMatch(/\/dev\/sdf\s+\/data\s+vol-[0-9a-f]{17}\s+us-east-1a/);
    const d = JSON.parse((await run(["describe", "ops-db", "--json"])).stdout);
    expect(d.resources.volumes[0].volumeId).toMatch(/^vol-/);

    const events = await run(["events", "ops-db"]);
    expect(events.code).toBe(0);
    expect(events.stdout).toMatch(/^create \S+ \(trigger: create\): succeeded/);
    expect(events.stdout).toMatch(/critical path: /);
    expect(JSON.parse((await run(["events", "ops-db", "--json"])).stdout).timelines[0].kind).toBe("create");
  }, 120_000);

  it("a replacement moves the metrics counters and shows in events", async () => {
    const before = await metrics();
    expect(before.types.get("spotkeep_replacements_total")).toBe("counter");
    expect(sampleValue(before.samples, "spotkeep_instances", { state: "running" })).toBe(1);
    const replacedBefore = sampleValue(before.samples, "spotkeep_replacements_total", { outcome: "succeeded" });
    const callsBefore = sampleValue(before.samples, "spotkeep_ec2_api_calls_total");
    expect(callsBefore).toBeGreaterThan(0);

    const old = (await coord.views.getInstance("ops-db"))!;
    await env.control("POST", `instances/${old.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await until("a replace workflow", async () =>
      (await coord.store.workflows.listFor("ops-db")).find((w) => w.kind === "replace"),
    );
    expect((await coord.engine.wait(wf.id)).status).toBe("succeeded");

    const after = await metrics();
    expect(sampleValue(after.samples, "spotkeep_replacements_total", { outcome: "succeeded" })).toBe(replacedBefore + 1);
    expect(sampleValue(after.samples, "spotkeep_interruptions_total")).toBeGreaterThanOrEqual(1);
    expect(sampleValue(after.samples, "spotkeep_downtime_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(sampleValue(after.samples, "spotkeep_ec2_api_calls_total")).toBeGreaterThan(callsBefore);

    const events = await run(["events", "ops-db"]);
    expect(events.stdout).toMatch(/^replace \S+ \(trigger: spot-interruption\): succeeded; downtime \d+\.\ds, recovery \d+\.\ds/);
  }, 120_000);
});
