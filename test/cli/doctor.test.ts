/**
 * `spotkeep doctor` (the built CLI) against localcloud and a running coordinator: all ok on a good
 * set-up; an unreachable agent URL, a permission the policy lacks, rules that no longer target the
 * queue and a deleted queue are each a failure with its fix and exit code 1; a bad config too.
 */
import { packRuntime } from "../../coordinator/agent-runtime/fetch.js";
import { spawn } from "node:child_process";
import { createServer, type AddressInfo } from "node:net";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeleteQueueCommand, SQSClient } from "@aws-sdk/client-sqs";
import type { Coordinator } from "../../coordinator/service.js";
import { openDatabase } from "../../coordinator/db/open.js";
import { AGENT_BUNDLE, COORDINATOR_POLICY, type Env, ensureAgentBundle, inProcessCoordinator, startEnv } from "../coordinator/harness.js";
import { CLI } from "./built.js";

const SCALE = 0.05;
let dir: string;
let env: Env;
let coord: Coordinator;

interface Report {
  ok: boolean;
  checks: Array<{ check: string; status: "ok" | "warning" | "failure"; detail: string; fix: string | null }>;
}

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, "doctor", ...args], {
      env: { ...process.env, AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A coordinator config for doctor, with `extra` laid over; returns its path. */
function config(name: string, extra: Record<string, unknown> = {}): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      listen: "127.0.0.1:7400",
      publicUrl: coord.url,
      dataDir: join(dir, "coord"),
      ec2Endpoint: env.lc.endpoint,
      events: { queueUrl: env.lc.eventsQueueUrl },
      agentBundlePath: AGENT_BUNDLE,
      agentRuntime: { hostNode: true },
      ...extra,
    }),
  );
  return file;
}

async function doctor(file: string): Promise<{ code: number; report: Report; byCheck: Map<string, Report["checks"][number]> }> {
  const t = await run(["--config", file, "--json"]);
  expect(t.stderr).toBe("");
  const report = JSON.parse(t.stdout) as Report;
  return { code: t.code, report, byCheck: new Map(report.checks.map((c) => [c.check, c])) };
}

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-cli-doctor-"));
  env = await startEnv(dir, SCALE, { eventsQueue: "spotkeep-events" });
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE);
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("spotkeep doctor", () => {
  it("a good set-up: every check ok, a table with each result, exit 0", async () => {
    const { code, report } = await doctor(config("good"));
    expect(report.checks.filter((c) => c.status !== "ok")).toEqual([]);
    expect(report.checks.map((c) => c.check)).toEqual([
      "config",
      "store",
      "permissions",
      "EBS encryption",
      "identity certificate us-east-1",
      "agent URL",
      "events queue",
      "events rules",
      "agent bundle",
      "runtime",
      "agent runtime",
    ]);
    expect(report.ok).toBe(true);
    expect(code).toBe(0);
    const bundleSha = (await import("node:crypto")).createHash("sha256").update(readFileSync(AGENT_BUNDLE)).digest("hex");
    expect(report.checks.find((c) => c.check === "agent bundle")!.detail).toContain(`sha256 ${bundleSha}`);
    expect(report.checks.find((c) => c.check === "events rules")!.detail).toContain("spotkeep-interruptions");
    expect(report.checks.find((c) => c.check === "EBS encryption")!.detail).toMatch(/^off by default in us-east-1: /);
    expect(report.checks.find((c) => c.check === "store")!.detail).toMatch(/integrity_check ok.*in use by a coordinator/);
    const table = await run(["--config", config("good")]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^CHECK\s+RESULT\s+DETAIL\n/);
    expect(table.stdout).toMatch(/^agent URL\s+ok\s+http:\/\/127\.0\.0\.1:\d+ resolves and serves the agent bundle/m);
    expect(table.stdout).toContain("no check failed");
  }, 120_000);

  it("an agent runtime folder without a runtime, or without one architecture's, is a warning naming spotkeep runtime fetch", async () => {
    const empty = join(dir, "runtime-empty");
    const none = await doctor(config("no-runtime", { agentRuntime: { dir: empty } }));
    expect(none.byCheck.get("agent runtime")).toMatchObject({
      status: "warning",
      detail: expect.stringMatching(/^none in .*runtime-empty: an instance whose image has no Node\.js 20\.19\+ cannot start the agent/),
      fix: `spotkeep runtime fetch --dir ${empty} (then restart the coordinator)`,
    });
    expect(none.code).toBe(0);
    const x64Only = join(dir, "runtime-x64");
    await packRuntime({ dir: x64Only, binary: process.execPath, version: process.versions.node, arches: ["x64"] });
    const half = await doctor(config("x64-runtime", { agentRuntime: { dir: x64Only } }));
    expect(half.byCheck.get("agent runtime")).toMatchObject({
      status: "warning",
      detail: expect.stringMatching(
        new RegExp(`^Node\\.js ${process.versions.node.replace(/\./g, "\\.")} for linux-x64 from .*; none for linux-arm64`),
      ),
    });
  }, 120_000);

  it("an agent URL that does not answer is a failure with its fix", async () => {
    // A port nothing listens on: one the system just handed out and took back.
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    await new Promise((r) => server.close(r));
    const { code, byCheck } = await doctor(config("unreachable", { publicUrl: `http://127.0.0.1:${port}` }));
    expect(code).toBe(1);
    expect(byCheck.get("agent URL")).toMatchObject({
      status: "failure",
      detail: `http://127.0.0.1:${port}/agent/v1/agent.js does not answer from this host (ECONNREFUSED)`,
      fix: expect.stringContaining("start the coordinator"),
    });
    const unresolved = await doctor(config("unresolved", { publicUrl: "http://spotkeep.invalid:7400" }));
    expect(unresolved.byCheck.get("agent URL")).toMatchObject({ status: "failure", detail: expect.stringContaining("does not resolve") });
  }, 120_000);

  it("a permission the account's policy lacks is a failure naming it, with the policy to attach", async () => {
    const policy = JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")) as { Statement: Array<{ Action: string | string[] }> };
    for (const s of policy.Statement) if (Array.isArray(s.Action)) s.Action = s.Action.filter((a) => a !== "ec2:TerminateInstances");
    await env.control("PUT", "iam/policy", policy);
    try {
      const { code, byCheck } = await doctor(config("good"));
      expect(code).toBe(1);
      expect(byCheck.get("permissions")).toEqual({
        check: "permissions",
        status: "failure",
        detail: "EC2 denies ec2:TerminateInstances",
        fix: "attach docs/iam/coordinator-policy.json to the coordinator's role (or grant ec2:TerminateInstances)",
      });
    } finally {
      await env.control("PUT", "iam/policy", JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")));
    }
  }, 120_000);

  it("a stopped coordinator's store is checked without a file added to its data dir; a damaged one is a failure", async () => {
    const stopped = join(dir, "stopped");
    mkdirSync(stopped, { mode: 0o700 });
    openDatabase(join(stopped, "coordinator.sqlite")).close();
    const before = readdirSync(stopped).sort();
    const { byCheck } = await doctor(config("stopped", { dataDir: stopped }));
    expect(byCheck.get("store")).toMatchObject({ status: "ok", detail: expect.stringContaining("integrity_check ok") });
    expect(readdirSync(stopped).sort()).toEqual(before);

    writeFileSync(join(stopped, "coordinator.sqlite"), Buffer.alloc(8192, 7));
    const damaged = await doctor(config("stopped", { dataDir: stopped }));
    expect(damaged.code).toBe(1);
    expect(damaged.byCheck.get("store")).toMatchObject({ status: "failure", fix: expect.stringContaining("spotkeep restore-backup") });
  }, 120_000);

  it("a bad config is a failure naming the field", async () => {
    const file = join(dir, "bad.yaml");
    writeFileSync(file, "listen: nope\n");
    const t = await run(["--config", file]);
    expect(t.code).toBe(1);
    expect(t.stdout).toMatch(/^config\s+failure\s+.*listen/m);
  });

  it("rules that no longer send to the queue, then a deleted queue, are failures with the fix", async () => {
    await env.control("DELETE", "events/rules/spotkeep-interruptions");
    const noRules = await doctor(config("good"));
    expect(noRules.code).toBe(1);
    expect(noRules.byCheck.get("events queue")!.status).toBe("ok");
    expect(noRules.byCheck.get("events rules")).toMatchObject({
      status: "failure",
      detail: expect.stringContaining("no EventBridge rule sends to arn:aws:sqs:us-east-1:"),
      fix: expect.stringContaining("deploy/spotkeep.cfn.yaml"),
    });

    const sqs = new SQSClient({ region: "us-east-1", endpoint: env.lc.endpoint, credentials: { accessKeyId: "x", secretAccessKey: "x" } });
    await sqs.send(new DeleteQueueCommand({ QueueUrl: env.lc.eventsQueueUrl! }));
    sqs.destroy();
    const gone = await doctor(config("good"));
    expect(gone.code).toBe(1);
    expect(gone.byCheck.get("events queue")).toEqual({
      check: "events queue",
      status: "failure",
      detail: `${env.lc.eventsQueueUrl} does not exist`,
      fix: "create it with its rules (deploy/spotkeep.cfn.yaml, or the CloudFormation in docs/deploy-aws.md) or correct events.queueUrl",
    });
    // The other checks still ran and passed.
    expect(gone.byCheck.get("agent URL")!.status).toBe("ok");
  }, 120_000);
});
