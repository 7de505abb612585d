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
import { ALL_DETAIL_TYPES } from "../../localcloud/world/events.js";
import { LONG_POLL_SECONDS } from "../../coordinator/events/consumer.js";
import { MAX_NOTICE_MS } from "../../coordinator/workflow/runbooks/replace.js";
import { budget, PROCESS_START_MS, plus, runbookModel, runbookSteps, SCHEDULING_SLACK } from "../support/budgets.js";
import { crashCaseEvidence, instanceEvidence, json, settled, withEvidence } from "../support/evidence.js";
import { adminApi, type CoordinatorChild, killAll, reachState, spawnCoordinator } from "./coordinator-process.js";
import { coordinatorConfig, type Env, ensureAgentBundle, ROOT, startEnv, until } from "./harness.js";

const VISIBILITY_SECONDS = 10;
/**
 * The restarted coordinator must take the warning back from the queue (once its visibility timeout
 * ends) before the notice runs out and EC2's state change says the instance is going: a real
 * coordinator start, with scheduling slack, has to fit in the notice less the visibility timeout.
 * (At 0.05 a start under load took longer than those 5.5 s and the replacement was, correctly, a
 * lost instance's.)
 */
const SCALE = Math.ceil(((SCHEDULING_SLACK * PROCESS_START_MS) / (MAX_NOTICE_MS - VISIBILITY_SECONDS * 1000)) * 100) / 100;

// What each phase may take (test/support/budgets.ts): env.spec's shape (root persistence, 30 s
// hooks); the queue's long poll and visibility timeout run on localcloud's model clock.
const SHAPE = { hooksTimeoutSeconds: 30, root: true };
const LONG_POLL = { "long poll": LONG_POLL_SECONDS * 1000 };
/** The first coordinator's start and the create (no workload: the agent alone starts). */
const CREATED = budget({
  scale: SCALE,
  model: runbookModel("create", SHAPE),
  steps: runbookSteps("create"),
  starts: { coordinator: 1, agent: 1 },
});
/** The coordinator receives and deletes what is in the queue: a long poll at most per round. */
const DRAINED = budget({ scale: SCALE, model: { ...LONG_POLL } });
/** A restarted coordinator receives the interruption warning and dies once it recorded it. */
const CRASHED = budget({ scale: SCALE, model: { ...LONG_POLL }, starts: { coordinator: 1 } });
/**
 * After the restart: the message comes back after its visibility timeout, a long poll receives it,
 * and the replacement runs (its quiesce waits for a stopped agent up to the quiesce budget).
 */
const RECOVERED = budget({
  scale: SCALE,
  model: { "visibility timeout": VISIBILITY_SECONDS * 1000, ...LONG_POLL, ...runbookModel("replace", SHAPE) },
  steps: runbookSteps("replace"),
  starts: { coordinator: 1, agent: 1 },
});
/** The replacement's clean-up steps after the instance serves (delete the old root, retention). */
const FINISHED = budget({
  scale: SCALE,
  model: { "delete old root": runbookModel("replace", SHAPE)["delete old root"]! },
  steps: { replace: 2 },
});
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
  it("handles the event exactly once after the restart", {
    timeout: plus(CREATED, DRAINED, CRASHED, RECOVERED, FINISHED, DRAINED).ms,
  }, async (ctx) => {
    const name = "crash-queue";
    const cfgFile = join(dir, "coordinator.json");
    const dataDir = join(dir, "coord");
    writeFileSync(
      cfgFile,
      JSON.stringify(coordinatorConfig(env, dataDir, SCALE, { events: { queueUrl, visibilityTimeoutSeconds: VISIBILITY_SECONDS } })),
    );
    const runs: CoordinatorChild[] = [];
    let c = await coordinator(cfgFile, false);
    runs.push(c);
    const evidence = {
      ...crashCaseEvidence({ runs, call: (m, p) => adminApi(c.url, TOKEN).call(m, p), name, world: env.lc.world }),
      "queue.json": async () => json({ messages: await queueCounts() }),
    };
    try {
      await withEvidence(ctx, import.meta.filename, evidence, async () => {
        await c.api("POST", "instances", env.spec(name, { workload: false }));
        const created = await reachState(c.url, name, "running", null, CREATED);
        const instanceId: string = created.instanceId;
        // Only the queue speaks for this instance from here on: its agent is stopped.
        await env.control("POST", `instances/${instanceId}/agent`, { state: "stopped" });
        await until("the queue to drain", async () => (await queueCounts()) === 0, DRAINED);
        c.child.kill("SIGTERM");
        expect((await c.exited).code).toBe(0);

        c = await coordinator(cfgFile, true);
        runs.push(c);
        await env.control("POST", `instances/${instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
        const how = await Promise.race([c.exited, new Promise((r) => setTimeout(() => r("no-crash"), CRASHED.ms))]);
        expect(how, c.log.join("")).toMatchObject({ signal: "SIGKILL" });
        expect(c.log.join("")).toMatch(/crash hook: killing myself after recording event/);
        // Recorded, not deleted: the message is still in the queue (in flight until its visibility timeout).
        expect(await queueCounts()).toBe(1);

        c = await coordinator(cfgFile, false);
        runs.push(c);
        const after = await reachState(c.url, name, "running", 2, RECOVERED);
        expect(after.instanceId).not.toBe(instanceId);
        // The instance serves from the `finish` step on; the replacement's clean-up steps come after it.
        await until(
          "the replacement workflow to finish",
          async () =>
            (await c.api("GET", `instances/${name}/events`)).timelines.some(
              (t: { kind: string; outcome: string }) => t.kind === "replace" && t.outcome === "succeeded",
            ),
          FINISHED,
        );
        await until("the queue to drain", async () => (await queueCounts()) === 0, DRAINED);
        // The store is read with the coordinator stopped: its view of the instance is kept first.
        Object.assign(evidence, await settled(instanceEvidence((m, p) => adminApi(c.url, TOKEN).call(m, p), name)));
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
    } finally {
      if (c.child.exitCode === null && c.child.signalCode === null) {
        c.child.kill("SIGKILL");
        await c.exited;
      }
    }
  });
});
