/**
 * Stateful groups in process (test/support/in-process.ts: localcloud without a runtime, the
 * coordinator in this process, a fake agent per member that relays IMDS spot notices, at the
 * original's time scale so the races it stages keep their real margins): a 3-member group over
 * two AZs with addresses from the group's pool; two members interrupted at once, each recovered
 * with its own address, ENI and volume; a rolling template update that waits for an interruption
 * being recovered and never has more than maxUnavailable members down for planned work; scale
 * 3 → 5 → 2 with an address taken by something else in EC2 skipped and addresses returned.
 * Its members run no workload: every assertion is a decision (states, addresses, ENIs, volumes,
 * workflows, events), so nothing moved elsewhere; a group roll-out across a coordinator killed at
 * each step, with real agents, is test/coordinator/crash-group.test.ts's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KEEP_NOTHING } from "../../shared/deletion.js";
import { GroupDetail } from "../../shared/group-api.js";
import { parseGroupSpec } from "../../shared/group-spec.js";
import type { WorkflowRecord } from "../../coordinator/db/store.js";
import { enforcerFor } from "../../localcloud/iam/enforcer.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { liveInstances, until } from "./harness.js";

let h: InProcess;
let pool: { a: string[]; b: string[] };

beforeAll(async () => {
  h = await startInProcess({ prefix: "spotkeep-inproc-groups-", timeScale: 0.03 });
  pool = { a: ["172.31.0.200", "172.31.0.201", "172.31.0.202"], b: ["172.31.16.200", "172.31.16.201", "172.31.16.202"] };
});
afterAll(async () => {
  await h?.stop();
});

function groupSpec(size: number, tags: Record<string, string> = {}) {
  const { name: _n, ...template } = h.spec("x", { volumes: 1, root: false });
  template.launch.subnetIds = h.env.subnets.slice(0, 2).map((s) => s.id);
  template.launch.tags = tags;
  return parseGroupSpec({ kind: "group", name: "kafka", size, ipPool: [...pool.a, ...pool.b], template });
}

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${h.coord.url}/api/v1/${path}`, {
    method,
    headers: { authorization: `Bearer ${h.coord.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

async function describeGroup(): Promise<GroupDetail> {
  const r = await api("GET", "groups/kafka");
  expect(r.status).toBe(200);
  return GroupDetail.parse(r.body);
}

async function finished(id: string): Promise<WorkflowRecord> {
  const wf = await h.coord.engine.wait(id);
  if (wf.status !== "succeeded") throw new Error(`${wf.kind} ${wf.id} ${wf.status}: ${wf.error}`);
  return wf;
}

async function memberFacts(name: string) {
  const d = (await h.coord.views.getInstance(name))!;
  return {
    ip: d.privateIp,
    eni: d.resources.network.eniId,
    volume: d.resources.volumes[0]?.volumeId,
    instanceId: d.instanceId,
    gen: d.generation,
  };
}

describe("stateful groups (in process)", () => {
  it("refuses a bad group spec by field and changes nothing", async () => {
    const before = await h.coord.store.counts();
    const r = await api("POST", "groups", { kind: "group", name: "bad", size: 2, ipPool: ["10.0.0.1"], template: {} });
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/size: 2 members need 2 addresses; ipPool lists 1/);
    expect(r.body.error.message).toMatch(/template.launch: is required/);
    expect(await h.coord.store.counts()).toEqual(before);
  });

  it("creates 3 members with distinct pool addresses spread over two AZs", async () => {
    const r = await api("POST", "groups", groupSpec(3));
    expect(r.status).toBe(201);
    await finished(r.body.workflowId);
    const d = await describeGroup();
    expect(d.state).toBe("ready");
    expect(d.memberList.map((m) => m.name)).toEqual(["kafka-0", "kafka-1", "kafka-2"]);
    expect(d.memberList.every((m) => m.state === "running")).toBe(true);
    const ips = d.memberList.map((m) => m.privateIp);
    expect(new Set(ips).size).toBe(3);
    for (const ip of ips) expect([...pool.a, ...pool.b]).toContain(ip);
    const [azA, azB] = h.env.subnets.slice(0, 2).map((s) => s.az) as [string, string];
    expect(d.spread).toEqual({ [azA]: 2, [azB]: 1 });
    for (const m of d.memberList) {
      const f = await memberFacts(m.name);
      expect(f.ip).toBe(m.privateIp);
      const [inst] = await h.env.ec2.describeInstances([f.instanceId!]);
      expect(inst!.privateIp).toBe(m.privateIp);
      expect(inst!.availabilityZone).toBe(m.availabilityZone);
    }
    expect(d.byState).toEqual({ running: 3 });
    expect(d.unavailable).toBe(0);
    const metrics = await (await fetch(`${h.coord.url}/metrics`)).text();
    expect(metrics).toContain('spotkeep_group_members{group="kafka",state="running"} 3');
    expect(metrics).toContain('spotkeep_group_unavailable{group="kafka"} 0');
    // A member is not deleted or updated on its own.
    expect((await api("DELETE", "instances/kafka-1")).status).toBe(409);
  });

  it("recovers two members interrupted at the same moment, each with its own address, ENI and volume", async () => {
    const before = { a: await memberFacts("kafka-0"), b: await memberFacts("kafka-1") };
    await Promise.all([
      h.env.control("POST", `instances/${before.a.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 }),
      h.env.control("POST", `instances/${before.b.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 }),
    ]);
    for (const [name, was] of [
      ["kafka-0", before.a],
      ["kafka-1", before.b],
    ] as const) {
      const wf = await until(`${name}'s replace`, async () =>
        (await h.coord.store.workflows.listFor(name)).find((w) => w.kind === "replace"),
      );
      await finished(wf.id);
      const after = await memberFacts(name);
      expect(after.gen).toBe(2);
      expect(after.instanceId).not.toBe(was.instanceId);
      expect({ ip: after.ip, eni: after.eni, volume: after.volume }).toEqual({ ip: was.ip, eni: was.eni, volume: was.volume });
      expect((await liveInstances(h.env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
    }
    const d = await describeGroup();
    expect(d.memberList.every((m) => m.state === "running")).toBe(true);
  });

  it("rolls a new template one member at a time, waiting while an interruption is being recovered", async () => {
    const k2 = await memberFacts("kafka-2");
    await h.env.control("POST", `instances/${k2.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const replace = await until("kafka-2's replace", async () =>
      (await h.coord.store.workflows.listFor("kafka-2")).find((w) => w.kind === "replace" && w.status === "running"),
    );
    const r = await api("PUT", "groups/kafka", groupSpec(3, { rev: "2" }));
    expect(r.status).toBe(200);
    // Sample while it rolls: planned work never has more than maxUnavailable (1) members down.
    let maxPlannedDown = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        let planned = 0;
        for (const m of ["kafka-0", "kafka-1", "kafka-2"])
          if ((await h.coord.store.workflows.runningFor(m)).some((w) => w.kind === "recycle")) planned++;
        maxPlannedDown = Math.max(maxPlannedDown, planned);
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    await finished(r.body.workflowId);
    sampling = false;
    await sampler;
    expect(maxPlannedDown).toBe(1);
    const replaced = (await h.coord.store.workflows.get(replace.id))!;
    expect(replaced.status).toBe("succeeded");
    const recycles = (
      await Promise.all(
        ["kafka-0", "kafka-1", "kafka-2"].map(async (m) =>
          (await h.coord.store.workflows.listFor(m)).filter((w) => w.trigger === `group-update ${r.body.workflowId}`),
        ),
      )
    ).flat();
    expect(recycles.map((w) => w.instance)).toEqual(["kafka-0", "kafka-1", "kafka-2"]);
    expect(recycles.every((w) => w.status === "succeeded")).toBe(true);
    // The roll-out waited for the interruption to be recovered, then went member by member.
    expect(recycles[0]!.startedAt).toBeGreaterThanOrEqual(replaced.finishedAt!);
    for (let i = 1; i < recycles.length; i++) expect(recycles[i]!.startedAt).toBeGreaterThanOrEqual(recycles[i - 1]!.finishedAt!);
    const events = (await api("GET", "groups/kafka/events")).body.events as Array<{ kind: string; message: string }>;
    expect(
      events.some(
        (e) => e.kind === "roll-waiting" && /kafka-2 (recovers from an interruption|is replacing|is busy with replace)/.test(e.message),
      ),
    ).toBe(true);
    for (const m of ["kafka-0", "kafka-1", "kafka-2"]) {
      const d = (await h.coord.views.getInstance(m))!;
      expect(d.state).toBe("running");
      const [inst] = await h.env.ec2.describeInstances([d.instanceId!]);
      expect(inst!.tags.rev).toBe("2");
    }
    expect((await describeGroup()).state).toBe("ready");
  });

  it("scales 3 → 5 → 2: an address taken in EC2 is skipped; removed members' addresses return to the pool", async () => {
    // Members 0..2 hold a:200, b:200, a:201; the next member goes to AZ b, whose next address something else takes.
    const held = (await describeGroup()).memberList.map((m) => m.privateIp).sort();
    expect(held).toEqual([pool.a[0], pool.a[1], pool.b[0]].sort());
    // Something else (not under spotkeep's policy) takes the next address of AZ b.
    const iam = enforcerFor(h.env.lc.world);
    const policy = iam.policy;
    iam.clear();
    const squatter = await h.env.ec2
      .createNetworkInterface({
        subnetId: h.env.subnets[1]!.id,
        securityGroupIds: [],
        privateIp: pool.b[1],
        description: "not spotkeep's",
        tags: { owner: "someone-else" },
      })
      .finally(() => {
        iam.policy = policy;
      });
    const up = await api("POST", "groups/kafka/scale", { size: 5 });
    expect(up.status).toBe(202);
    await finished(up.body.workflowId);
    let d = await describeGroup();
    expect(d.memberList.map((m) => `${m.name}@${m.privateIp}`)).toEqual([
      `kafka-0@${d.memberList[0]!.privateIp}`,
      `kafka-1@${d.memberList[1]!.privateIp}`,
      `kafka-2@${d.memberList[2]!.privateIp}`,
      `kafka-3@${pool.b[2]}`,
      `kafka-4@${pool.a[2]}`,
    ]);
    expect(d.memberList.every((m) => m.state === "running")).toBe(true);
    expect(d.freeAddresses).toEqual([pool.b[1]]);
    const events = (await api("GET", "groups/kafka/events")).body.events as Array<{ kind: string; message: string }>;
    expect(events.find((e) => e.kind === "address-skipped")?.message).toContain(`${pool.b[1]} (in use by ${squatter.eniId})`);

    // Out of addresses: a clear error naming the pool (size 6 is refused up front: the pool lists 6, one is taken).
    const six = await api("POST", "groups/kafka/scale", { size: 7 });
    expect(six.status).toBe(400);
    expect(six.body.error.message).toMatch(/the ipPool of group kafka lists 6/);

    const removed = ["kafka-2", "kafka-3", "kafka-4"];
    const facts = await Promise.all(removed.map(memberFacts));
    const down = await api("POST", "groups/kafka/scale", { size: 2 });
    expect(down.status).toBe(202);
    await finished(down.body.workflowId);
    d = await describeGroup();
    expect(d.memberList.map((m) => m.name)).toEqual(["kafka-0", "kafka-1"]);
    expect([...d.freeAddresses].sort()).toEqual([pool.a[1], pool.a[2], pool.b[1], pool.b[2]].sort());
    for (const [i, name] of removed.entries()) {
      expect(await h.coord.store.instances.get(name)).toBeNull();
      expect(await liveInstances(h.env, name)).toEqual([]);
      expect(await h.env.ec2.describeNetworkInterface(facts[i]!.eni!)).toBeNull();
    }

    iam.clear();
    await h.env.ec2.deleteNetworkInterface(squatter.eniId).finally(() => {
      iam.policy = policy;
    });
  });

  it("stops a roll-out at the first member that fails, the group's state saying where", async () => {
    const bad = groupSpec(2, { rev: "3" });
    bad.template.launch.imageId = "ami-0000000000000dead";
    const r = await api("PUT", "groups/kafka", bad);
    expect(r.status).toBe(200);
    const wf = await h.coord.engine.wait(r.body.workflowId);
    expect(wf.status).toBe("failed");
    const d = await describeGroup();
    expect(d.state).toBe("stopped");
    expect(d.stateReason).toMatch(
      /^group-update stopped \(rolling 1 of 2: kafka-0 \(workflow wf-recycle-[^)]+\)\): .*recycling kafka-0: recycle wf-recycle-\S+ failed: .*InvalidAMIID\.NotFound/,
    );
    // The member after it was not touched: still running the previous template.
    const k1 = (await h.coord.views.getInstance("kafka-1"))!;
    expect(k1.state).toBe("running");
    const [inst] = await h.env.ec2.describeInstances([k1.instanceId!]);
    expect(inst!.tags.rev).toBe("2");
    expect((await h.coord.store.workflows.listFor("kafka-1")).some((w) => w.trigger === `group-update ${wf.id}`)).toBe(false);

    // A fixed template continues: the failed member comes back from what it kept, then the next one rolls.
    const fixed = await api("PUT", "groups/kafka", groupSpec(2, { rev: "4" }));
    expect(fixed.status).toBe(200);
    await finished(fixed.body.workflowId);
    const after = await describeGroup();
    expect(after.state).toBe("ready");
    for (const m of after.memberList) {
      expect(m.state).toBe("running");
      const [i] = await h.env.ec2.describeInstances([m.instanceId!]);
      expect(i!.tags.rev).toBe("4");
      expect(i!.privateIp).toBe(m.privateIp);
    }
  });

  it("deletes the group: every member, then the group; the name is free again", async () => {
    const r = await api("DELETE", "groups/kafka");
    expect(r.status).toBe(202);
    await h.coord.groups
      .delete("kafka", { keep: KEEP_NOTHING, ttlHours: null })
      .catch((e: Error) => expect(e.message).toMatch(/busy|being deleted/));
    await finished(r.body.workflowId);
    expect((await api("GET", "groups/kafka")).status).toBe(404);
    expect(await liveInstances(h.env, "kafka-0")).toEqual([]);
    expect((await api("GET", "groups")).body.groups).toEqual([]);
  });
});
