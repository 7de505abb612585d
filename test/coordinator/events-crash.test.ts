/**
 * A coordinator SIGKILLed between recording a queue event and deleting its message: the message
 * comes back after its visibility timeout and the restarted coordinator handles it exactly once
 * (one replacement, one timeline entry for the event, the message deleted).
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STORE_FILE } from "../../coordinator/db/open.js";
import { SqliteStore } from "../../coordinator/db/sqlite/index.js";
import { ALL_DETAIL_TYPES } from "../../localcloud/events/bus.js";
import { adminApi, killAll, spawnCoordinator } from "./coordinator-process.js";
import { coordinatorConfig, type Env, ensureAgentBundle, ROOT, startEnv, until } from "./harness.js";

const SCALE = 0.05;
const TOKEN = "test-admin-token-0123456789";
let dir: string;
let env: Env;
let sqs: SQSClient;
let queueUrl: string;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-events-"));
  env = await startEnv(dir, SCALE);
  queueUrl = env.lc.sqs.createQueue("spotkeep-events").url;
  env.lc.events.putRule({ name: "spotkeep", queue: "spotkeep-events", detailTypes: [...ALL_DETAIL_TYPES] });
  sqs = new SQSClient({ region: "us-east-1", endpoint: env.lc.endpoint, credentials: { accessKeyId: "x", secretAccessKey: "y" } });
});
afterAll(async () => {
  killAll(children);
  sqs?.destroy();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function coordinator(cfgFile: string, crash: boolean) {
  const c = await spawnCoordinator(
    ["--import", "tsx", join(ROOT, "test", "coordinator", "events-crash-child.ts"), cfgFile, crash ? "crash" : ""],
    {
      ownerDir: dir,
      children,
    },
  );
  return { ...c, api: adminApi(c.url, TOKEN).ok };
}

const queueCounts = async () => {
  const a = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: queueUrl,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    }),
  );
  return Number(a.Attributes!.ApproximateNumberOfMessages) + Number(a.Attributes!.ApproximateNumberOfMessagesNotVisible);
};

describe("coordinator crash between recording a queue event and deleting its message", () => {
  it("handles the event exactly once after the restart", async () => {
    const name = "crash-queue";
    const cfgFile = join(dir, "coordinator.json");
    const dataDir = join(dir, "coord");
    writeFileSync(cfgFile, JSON.stringify(coordinatorConfig(env, dataDir, SCALE, { events: { queueUrl, visibilityTimeoutSeconds: 10 } })));
    let c = await coordinator(cfgFile, false);
    await c.api("POST", "instances", env.spec(name, { workload: false }));
    const created = await until(
      `${name} to be running`,
      async () => {
        const d = await c.api("GET", `instances/${name}`);
        if (d.state === "failed") throw new Error(`${name} failed: ${d.stateReason}\n${c.log.join("")}`);
        return d.state === "running" ? d : null;
      },
      60_000,
    );
    const instanceId: string = created.instanceId;
    // Only the queue speaks for this instance from here on: its agent is stopped.
    await env.control("POST", `instances/${instanceId}/agent`, { state: "stopped" });
    await until("the queue to drain", async () => (await queueCounts()) === 0);
    c.child.kill("SIGTERM");
    expect((await c.exited).code).toBe(0);

    c = await coordinator(cfgFile, true);
    await env.control("POST", `instances/${instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const how = await Promise.race([c.exited, new Promise((r) => setTimeout(() => r("no-crash"), 30_000))]);
    expect(how, c.log.join("")).toMatchObject({ signal: "SIGKILL" });
    expect(c.log.join("")).toMatch(/crash hook: killing myself after recording event/);
    // Recorded, not deleted: the message is still in the queue (in flight until its visibility timeout).
    expect(await queueCounts()).toBe(1);

    c = await coordinator(cfgFile, false);
    const after = await until(
      `${name} to be replaced`,
      async () => {
        const d = await c.api("GET", `instances/${name}`);
        if (d.state === "failed") throw new Error(`${name} failed: ${d.stateReason}\n${c.log.join("")}`);
        return d.state === "running" && d.generation === 2 ? d : null;
      },
      60_000,
    );
    expect(after.instanceId).not.toBe(instanceId);
    // The instance serves from the `finish` step on; the replacement's clean-up steps come after it.
    await until("the replacement workflow to finish", async () =>
      (await c.api("GET", `instances/${name}/events`)).timelines.some(
        (t: { kind: string; outcome: string }) => t.kind === "replace" && t.outcome === "succeeded",
      ),
    );
    await until("the queue to drain", async () => (await queueCounts()) === 0);
    c.child.kill("SIGTERM");
    expect((await c.exited).code).toBe(0);

    const store = SqliteStore.open(join(dataDir, STORE_FILE));
    try {
      const replaces = (await store.workflows.listFor(name)).filter((w) => w.kind === "replace");
      expect(replaces.map((w) => [w.trigger, w.status])).toEqual([["spot-interruption", "succeeded"]]);
      const events = await store.events.list(name, 1000);
      const warnings = events.filter((e) => e.kind === "queue-event" && e.message.includes("spot interruption warning"));
      expect(warnings).toHaveLength(1);
      expect(events.filter((e) => e.kind === "replace-started")).toHaveLength(1);
      const eventId = /\(event ([^,]+),/.exec(warnings[0]!.message)![1]!;
      const recorded = await store.queueEvents.get(eventId);
      expect(recorded?.handledAt).not.toBeNull();
      expect(recorded?.outcome).toBe("acted");
    } finally {
      await store.close();
    }
  });
});
