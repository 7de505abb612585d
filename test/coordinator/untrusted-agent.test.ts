/**
 * What an agent says is a claim, not a fact. A replayed identity document opens no session and its
 * notice terminates nothing; a genuine agent's spot-interruption notice that EC2 does not confirm
 * terminates nothing either, and the timeline says why. The same notice, once EC2 marks the spot
 * request, does start the replacement.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSpec } from "../../shared/spec.js";
import type { Coordinator } from "../../coordinator/service.js";
import { FakeAgent } from "./fake-agent.js";
import { inProcessCoordinator, startEnv, until, type Env } from "./harness.js";
import { agentStandIn } from "../support/in-process.js";

let dir: string;
let env: Env;
let coord: Coordinator;
let agent: FakeAgent;
let ec2Id: string;
const NAME = "guarded";

const replaceWorkflows = async () => (await coord.store.workflows.listFor(NAME)).filter((w) => w.kind === "replace");
const ec2State = async () => (await env.ec2.describeInstances([ec2Id]))[0]?.state;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-untrusted-"));
  env = await startEnv(dir, 1, { runtime: "none", profile: "instant" });
  coord = await inProcessCoordinator(env, join(dir, "coord"), 1, { agentBundlePath: agentStandIn(dir) });
  const { workflowId } = await coord.views.createInstance(parseSpec(env.spec(NAME, { workload: false, root: false })));
  ec2Id = await until("generation 1 to launch", async () => (await coord.store.generations.get(NAME, 1))?.ec2InstanceId);
  await until("the instance to run", async () => (await ec2State()) === "running");
  agent = new FakeAgent(ec2Id, env, coord);
  await agent.start();
  expect((await coord.engine.wait(workflowId)).status).toBe("succeeded");
});

afterAll(async () => {
  agent?.close();
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("agent claims need proof", () => {
  it("refuses a replayed hello (same document, other secret) and keeps the real session; the impostor's notice is never heard", async () => {
    const impostor = new FakeAgent(ec2Id, env, coord, { sessionSecret: "impostor-secret-0123456789abcdefghijklmnopqrs" });
    await impostor.start();
    expect(await impostor.closed).toBe(1008);
    expect(impostor.received.some((m) => m.type === "welcome")).toBe(false);
    impostor.notice("terminate", new Date(Date.now() - 60_000).toISOString());
    expect(coord.hub.isConnected(ec2Id)).toBe(true);
    expect(await coord.metrics.text()).toMatch(/spotkeep_agent_rejections_total\{reason="session-secret-mismatch"\} [1-9]/);
    const events = (await coord.views.getEvents(NAME))?.events ?? [];
    expect(events.some((e) => e.kind === "agent-impostor" && /session-secret-mismatch/.test(e.message))).toBe(true);
    expect(await replaceWorkflows()).toEqual([]);
    expect(await ec2State()).toBe("running");
  });

  it("does not act on a genuine agent's spot notice that EC2 does not confirm, and says so on the timeline", async () => {
    agent.notice("terminate", new Date(Date.now() + 1000).toISOString());
    const event = await until("the unconfirmed-notice event", async () =>
      (await coord.views.getEvents(NAME))?.events.find((e) => e.kind === "notice-unconfirmed"),
    );
    expect(event.message).toMatch(/EC2 does not confirm the spot interruption notice from i-/);
    expect(event.message).toMatch(/nothing is terminated/);
    expect(await replaceWorkflows()).toEqual([]);
    expect(await ec2State()).toBe("running");
    expect((await coord.views.getInstance(NAME))?.state).toBe("running");
  });

  it("replaces the instance once EC2 has marked its spot request, with the notice's far deadline clamped", async () => {
    await env.control("POST", `instances/${ec2Id}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    // The agent claims a deadline a year away; the coordinator believes at most EC2's two minutes.
    agent.notice("terminate", new Date(Date.now() + 365 * 86_400_000).toISOString());
    const [wf] = await until("a replace workflow", async () => {
      const w = await replaceWorkflows();
      return w.length ? w : null;
    });
    const input = wf?.input as { deadline?: string };
    expect(Date.parse(input.deadline ?? "")).toBeLessThanOrEqual(Date.now() + 120_000);
    const events = (await coord.views.getEvents(NAME))?.events ?? [];
    expect(events.find((e) => e.kind === "replace-started")?.message).toMatch(
      /confirmed by EC2: spot request sir-[0-9a-f]+ is marked-for-termination/,
    );
  });
});
