/**
 * A genuine agent (its own identity and session) that names resources which are not its
 * instance's: inventory listing another instance's volume and ENI, a quiesced report claiming to
 * have released another instance's ENI, restored reports naming another instance's volume, and
 * replies to commands that were sent to another instance. The coordinator acts only on the
 * resources its store holds for the agent's own stateful instance: the victim's volume and ENI
 * stay attached to the victim, its records do not change, and a pause of the lying instance moves
 * only that instance's own resources.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Coordinator } from "../../coordinator/service.js";
import { parseSpec } from "../../shared/spec.js";
import { FakeAgent } from "./fake-agent.js";
import { type Env, ensureAgentBundle, inProcessCoordinator, startEnv, until } from "./harness.js";

let dir: string;
let env: Env;
let coord: Coordinator;
const agents: FakeAgent[] = [];

async function createServed(name: string, answerCommands = true): Promise<{ agent: FakeAgent; ec2Id: string }> {
  const { workflowId } = await coord.views.createInstance(parseSpec(env.spec(name, { workload: false, root: false })));
  const ec2Id = await until(`${name} generation 1`, async () => (await coord.store.generations.get(name, 1))?.ec2InstanceId);
  await until(`${name} running`, async () => (await env.ec2.describeInstances([ec2Id]))[0]?.state === "running");
  const agent = new FakeAgent(ec2Id, env, coord);
  agents.push(agent);
  await agent.start();
  expect((await coord.engine.wait(workflowId)).status).toBe("succeeded");
  if (!answerCommands) {
    // From here on this agent answers by hand (the test plays it).
    agent.close();
    const liar = new FakeAgent(ec2Id, env, coord, { answerCommands: false, mode: "run" });
    agents.push(liar);
    await liar.start();
    await until(`${name}'s agent to reconnect`, () => coord.hub.isConnected(ec2Id));
    return { agent: liar, ec2Id };
  }
  return { agent, ec2Id };
}

async function facts(name: string) {
  const d = (await coord.views.getInstance(name))!;
  const volumeId = d.resources.volumes[0]!.volumeId!;
  const eniId = d.resources.network.eniId!;
  const [vol, eni] = await Promise.all([env.ec2.describeVolume(volumeId), env.ec2.describeNetworkInterface(eniId)]);
  return {
    state: d.state,
    instanceId: d.instanceId,
    generation: d.generation,
    volumeId,
    eniId,
    volumeAttachedTo: vol?.attachments.map((a) => `${a.instanceId}:${a.state}`) ?? [],
    eniAttachedTo: eni?.attachment?.instanceId ?? null,
  };
}

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-claims-"));
  env = await startEnv(dir, 1, { runtime: "none", profile: "instant" });
  coord = await inProcessCoordinator(env, join(dir, "coord"), 1);
});

afterAll(async () => {
  for (const a of agents) a.close();
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("an agent naming resources that are not its instance's", () => {
  it("inventory, restored and quiesced reports naming the victim's volume and ENI move nothing; replies to the victim's commands are not the victim's", async () => {
    const victim = await createServed("victim");
    const liar = await createServed("liar", false);
    const before = await facts("victim");
    const victimWorkflows = (await coord.store.workflows.listFor("victim")).length;
    const mac = "0e:00:00:00:00:01";
    liar.agent.send({
      type: "inventory",
      instanceId: liar.ec2Id,
      instanceType: "m5.large",
      availabilityZone: "us-east-1a",
      imageId: env.lc.world.baseImageId,
      enis: [{ mac, interfaceId: before.eniId, deviceNumber: 0, privateIps: ["172.31.0.9"] }],
      devices: [{ device: "/dev/nvme1n1", volumeId: before.volumeId, requestedName: "/dev/sdf", mountPoint: "/data", kind: "block" }],
    });
    // Unsolicited replies, and replies carrying ids of commands the coordinator sent the victim.
    const victimCommands = victim.agent.received.filter((m) => m.type !== "ack").map((m) => m.id);
    expect(victimCommands.length).toBeGreaterThan(0);
    for (const ref of [undefined, ...victimCommands]) {
      liar.agent.send({
        type: "quiesced",
        ...(ref ? { ref } : {}),
        clean: true,
        steps: [],
        filesystems: [],
        network: { eniId: before.eniId, ok: true, link: "eth1" },
      });
      liar.agent.send({
        type: "restored",
        ...(ref ? { ref } : {}),
        ok: false,
        reason: "claims the victim's volume failed",
        volumes: [{ volumeId: before.volumeId, device: "/dev/nvme1n1", mountPoint: "/data", checked: true, ms: 1 }],
        network: { eniId: before.eniId, ok: false, reason: "claims the victim's ENI" },
        steps: [],
      });
    }
    // The hub refuses replies to commands this session was never sent (counted, not recorded).
    await until("the replies to be refused", async () =>
      /spotkeep_agent_rejections_total\{reason="unsolicited-reply"\} ([2-9]|\d\d)/.test(await coord.metrics.text()),
    );
    // Nothing the liar said is on record, under its own id or the victim's (whose restore-plan
    // reply is its own agent's).
    for (const ref of victimCommands)
      for (const kind of ["quiesced", "restored"]) {
        expect(await coord.store.agentReports.get(liar.ec2Id, kind, ref)).toBeNull();
        expect(JSON.stringify((await coord.store.agentReports.get(victim.ec2Id, kind, ref))?.data ?? null)).not.toMatch(/claims/);
      }
    expect(coord.hub.isConnected(liar.ec2Id)).toBe(true);
    expect(coord.hub.isConnected(victim.ec2Id)).toBe(true);
    expect(await facts("victim")).toEqual(before);
    expect((await coord.store.workflows.listFor("victim")).length).toBe(victimWorkflows);
    expect((await coord.views.getEvents("victim"))?.events.map((e) => e.message).join("\n")).not.toMatch(new RegExp(liar.ec2Id));
  }, 60_000);

  it("a pause of the lying instance, answered with the victim's ENI and volume, moves only the liar's own resources", async () => {
    const liar = agents[agents.length - 1]!;
    const liarId = liar.instanceId;
    const victimBefore = await facts("victim");
    const liarBefore = await facts("liar");
    const { workflowId } = await coord.operations.run("liar", "pause");
    // Answer the quiesce command claiming the victim's resources were released.
    const cmd = await until("the quiesce command", () => liar.received.find((m) => m.type === "quiesce"));
    liar.send({
      type: "quiesced",
      ref: cmd.id,
      clean: true,
      steps: [],
      filesystems: [{ mountPoint: "/data", frozen: true, unmounted: true }],
      network: { eniId: victimBefore.eniId, ok: true, link: "eth1" },
    });
    const wf = await coord.engine.wait(workflowId);
    expect(wf.error).toBeNull();
    expect((await coord.views.getInstance("liar"))?.state).toBe("paused");
    // The liar's own volume was detached with its instance gone; the victim's are where they were.
    expect((await env.ec2.describeInstances([liarId]))[0]?.state).toBe("terminated");
    const liarVolume = await env.ec2.describeVolume(liarBefore.volumeId);
    expect(liarVolume?.attachments ?? []).toEqual([]);
    expect(await facts("victim")).toEqual(victimBefore);
  }, 60_000);
});
