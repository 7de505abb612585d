/**
 * The first hello of a generation on a persisted root, with the real agent on localcloud's process
 * runtime: generation 2 boots from an image of generation 1's root, which carries generation 1's
 * session secret in the agent's root-only file. A process on the new instance that says hello
 * first (it reads the identity document from IMDS, as anything there can) with a secret of its own
 * is refused and registers nothing; the real agent proves the carried secret, registers its own
 * and restores the instance.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashSessionSecret } from "../../coordinator/agents/session-secret.js";
import type { Coordinator } from "../../coordinator/service.js";
import type { ProcessRuntime } from "../../localcloud/runtime/process.js";
import { parseSpec } from "../../shared/spec.js";
import { FakeAgent } from "./fake-agent.js";
import { ensureAgentBundle, inProcessCoordinator, startEnv, until, type Env } from "./harness.js";

const SCALE = 0.03;
const NAME = "rooted-secret";
let dir: string;
let env: Env;
let coord: Coordinator;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-root-secret-"));
  env = await startEnv(dir, SCALE);
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE, { lostCheckIntervalMs: 3000 });
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const secretFile = (instanceId: string) => join(env.rootDir(instanceId), "var/lib/spotkeep-agent/session/secret.json");

describe("a persisted root's session secret", () => {
  it("refuses a squatting first hello on the replacement and lets the real agent in (regression: the first hello of a generation won)", async () => {
    const { workflowId } = await coord.views.createInstance(parseSpec(env.spec(NAME, { workload: false })));
    expect((await coord.engine.wait(workflowId)).error).toBeNull();
    const g1 = (await coord.store.generations.get(NAME, 1))!;
    const g1File = JSON.parse(readFileSync(secretFile(g1.ec2InstanceId!), "utf8")) as { instanceId: string; secret: string };
    expect(g1.sessionSecretHash).toBe(hashSessionSecret(g1File.secret));
    expect(g1.carriedSecret).toBeNull(); // generation 1: the spec's image, a fresh root

    await env.control("POST", `instances/${g1.ec2InstanceId}/lose`, {});
    const g2Id = await until("generation 2 to launch", async () => (await coord.store.generations.get(NAME, 2))?.ec2InstanceId, 120_000);
    expect((await coord.store.generations.get(NAME, 2))?.carriedSecret).toEqual({ hash: g1.sessionSecretHash, generation: 1 });
    // Hold the bootstrap (cloud-init runs user-data late in boot) the moment the instance boots.
    const runtime = env.lc.runtime as ProcessRuntime;
    const hold = async (held: boolean) => (held ? runtime.pauseInstance?.(g2Id) : runtime.resumeInstance?.(g2Id));
    await until("generation 2 to boot", async () => ((await hold(true)) ? true : null), 120_000);

    const squatter = new FakeAgent(g2Id, env, coord, { sessionSecret: "a-service-from-the-old-root-0123456789abcdefgh" });
    await squatter.start();
    const code = await Promise.race([squatter.closed, new Promise<string>((r) => setTimeout(() => r("still open"), 10_000))]);
    expect(code).toBe(1008);
    expect(squatter.received.some((m) => m.type === "welcome")).toBe(false);
    expect((await coord.store.generations.get(NAME, 2))?.sessionSecretHash).toBeNull();
    const refused = await until("the refusal on the timeline", async () =>
      (await coord.views.getEvents(NAME))?.events.find((e) => e.kind === "agent-impostor" && /carried-secret-mismatch/.test(e.message)),
    );
    expect(refused.message).toMatch(/made from generation 1's root/);

    expect(await hold(false)).toBe(true);
    const replace = (await coord.store.workflows.listFor(NAME)).find((w) => w.kind === "replace")!;
    expect((await coord.engine.wait(replace.id)).error).toBeNull();
    const g2 = (await coord.store.generations.get(NAME, 2))!;
    expect(g2.ec2InstanceId).toBe(g2Id);
    const g2File = JSON.parse(readFileSync(secretFile(g2Id), "utf8")) as {
      instanceId: string;
      secret: string;
      carried: { instanceId: string; secret: string };
    };
    // The real agent rotated to a secret of its own after proving the one the root carried.
    expect(g2File.instanceId).toBe(g2Id);
    expect(g2File.carried).toEqual({ instanceId: g1.ec2InstanceId, secret: g1File.secret });
    expect(g2File.secret).not.toBe(g1File.secret);
    expect(g2.sessionSecretHash).toBe(hashSessionSecret(g2File.secret));
    expect(coord.hub.isConnected(g2Id)).toBe(true);
    expect(await coord.metrics.text()).toMatch(/spotkeep_agent_rejections_total\{reason="carried-secret-mismatch"\} 1\b/);
  }, 300_000);
});
