/**
 * A local process that can read the instance's identity document but not the agent's session
 * secret loops hellos. Regression: each refused hello was its own `agent-impostor` event (4,286 in
 * 20 s), so the instance's visible history (its last 500 events) held nothing else. Now every
 * refusal is counted, the timeline gets the first one and a summary per interval, and the real
 * events stay visible.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { parseSpec } from "../../shared/spec.js";
import { newMessageId } from "../../shared/protocol.js";
import type { Coordinator } from "../../coordinator/service.js";
import { FakeAgent } from "./fake-agent.js";
import { inProcessCoordinator, startEnv, until, type Env } from "./harness.js";
import { agentStandIn } from "../support/in-process.js";

let dir: string;
let env: Env;
let coord: Coordinator;
let agent: FakeAgent;
let ec2Id: string;
const NAME = "flooded";
const HELLOS = 4000;
/** Model time runs 20 times faster, so the coordinator's one-minute summary interval is 3 s. */
const SCALE = 0.05;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-refusal-flood-"));
  env = await startEnv(dir, SCALE, { runtime: "none", profile: "instant" });
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE, { agentBundlePath: agentStandIn(dir) });
  const { workflowId } = await coord.views.createInstance(parseSpec(env.spec(NAME, { workload: false, root: false })));
  ec2Id = await until("generation 1 to launch", async () => (await coord.store.generations.get(NAME, 1))?.ec2InstanceId);
  await until("the instance to run", async () => (await env.ec2.describeInstances([ec2Id]))[0]?.state === "running");
  agent = new FakeAgent(ec2Id, env, coord);
  await agent.start();
  expect((await coord.engine.wait(workflowId)).status).toBe("succeeded");
}, 120_000);

afterAll(async () => {
  agent?.close();
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The instance's identity document and signature, as any local process reads them from IMDS. */
async function identity(): Promise<{ document: string; signature: string }> {
  const { endpoint } = await env.control("GET", `instances/${ec2Id}/imds`);
  const token = await (
    await fetch(`${endpoint}/latest/api/token`, { method: "PUT", headers: { "x-aws-ec2-metadata-token-ttl-seconds": "21600" } })
  ).text();
  const get = async (p: string) => (await fetch(`${endpoint}${p}`, { headers: { "x-aws-ec2-metadata-token": token } })).text();
  return {
    document: await get("/latest/dynamic/instance-identity/document"),
    signature: await get("/latest/dynamic/instance-identity/signature"),
  };
}

/** One impostor hello; resolves with the close code. */
function impostorHello(id: { document: string; signature: string }): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(coord.wsUrl);
    ws.on("error", () => resolve(-1));
    ws.on("close", (code) => resolve(code));
    ws.on("open", () =>
      ws.send(
        JSON.stringify({
          v: 1,
          id: newMessageId("i"),
          ts: new Date().toISOString(),
          type: "hello",
          identity: id,
          agentVersion: "impostor",
          mode: "run",
          sessionSecret: "impostor-secret-0123456789abcdefghijklmnopqrs",
        }),
      ),
    );
  });
}

describe("a flood of impostor hellos", () => {
  it(`${HELLOS} refused hellos are all counted, and the instance's real events stay among its last 500`, async () => {
    const id = await identity();
    const codes = new Map<number, number>();
    let next = 0;
    // Below the per-source cap on connections waiting for their hello (16).
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < HELLOS) {
          next++;
          const code = await impostorHello(id);
          codes.set(code, (codes.get(code) ?? 0) + 1);
        }
      }),
    );
    expect(Object.fromEntries(codes)).toEqual({ 1008: HELLOS });
    expect(coord.hub.isConnected(ec2Id)).toBe(true);
    const metric = /spotkeep_agent_rejections_total\{reason="session-secret-mismatch"\} (\d+)/.exec(await coord.metrics.text());
    expect(Number(metric?.[1])).toBe(HELLOS);

    const events = (await coord.views.getEvents(NAME))?.events ?? [];
    expect(events.some((e) => e.kind === "workflow-succeeded")).toBe(true);
    const impostors = events.filter((e) => e.kind === "agent-impostor");
    expect(impostors.length).toBeGreaterThanOrEqual(1);
    expect(impostors.length).toBeLessThanOrEqual(2);
    expect(impostors[0]?.message).toMatch(/^session-secret-mismatch: hello for i-/);
  }, 300_000);

  it("every refusal after the first is in one summary event that grows in place", async () => {
    const summary = await until(
      "the summary to count every refusal",
      async () => {
        const rows = ((await coord.views.getEvents(NAME))?.events ?? []).filter(
          (e) => e.kind === "agent-impostor" && /repeated/.test(e.message),
        );
        return (
          rows.length === 1 && rows[0]!.message.startsWith(`session-secret-mismatch, repeated: ${HELLOS - 1} more refused from `) && rows
        );
      },
      30_000,
    );
    expect(summary[0]?.message).toMatch(/; the latest: hello for i-[0-9a-f]+ .*the session secret does not match/);
  });
});
