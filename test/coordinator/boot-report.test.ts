/**
 * A boot that cannot start the agent (test/support/in-process.ts: localcloud without a runtime,
 * the coordinator in this process, a fake agent per instance, time-scaled). The bootstrap's report
 * (POST /agent/v1/boot-report, the instance's IMDSv2 identity as proof) ends the workflow waiting
 * on that instance at once with the reason, in its events and metrics, instead of the restore's
 * 20-minute budget; a report that does not prove itself is refused and changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSpec } from "../../shared/spec.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { identityOf, postBootReport } from "./fake-agent.js";

let h: InProcess;
/** Stateful instances whose instances' bootstrap fails, with the reason it gives. */
const failing = new Map<string, string>();

beforeAll(async () => {
  h = await startInProcess({
    prefix: "spotkeep-boot-report-",
    bootFailure: (id) => {
      const name = h.env.lc.world.instances.get(id)?.tags.get("spotkeep:instance");
      const reason = name ? failing.get(name) : undefined;
      return reason ? { stage: "runtime", reason } : undefined;
    },
  });
});
afterAll(() => h?.stop());

const kinds = async (name: string) => (await h.coord.store.events.list(name, 1000)).map((e) => e.kind);

describe("boot reports", () => {
  it("a create whose instance cannot start the agent fails at once with the bootstrap's reason, in events and metrics", async () => {
    const reason = "the image has no Node.js 20.19+ (none) and the coordinator serves no runtime for linux-arm64";
    failing.set("nonode-db", reason);
    const { workflowId } = await h.coord.views.createInstance(parseSpec(h.spec("nonode-db")));
    const wf = await h.coord.engine.wait(workflowId);
    expect(wf.status).toBe("failed");
    expect(wf.error).toMatch(/: i-[0-9a-f]+ could not start the agent \(runtime\): the image has no Node\.js 20\.19\+/);
    // Model time from start to the end: far inside the restore's 20-minute budget.
    const modelMinutes = (wf.finishedAt! - wf.startedAt) / h.timeScale / 60_000;
    expect(modelMinutes).toBeLessThan(5);
    const events = await h.coord.store.events.list("nonode-db", 1000);
    const boot = events.find((e) => e.kind === "agent-boot-failed");
    expect(boot?.message).toMatch(/^i-[0-9a-f]+ \(generation 1\) could not start the agent \(runtime\): the image has no Node\.js/);
    expect(await h.coord.metrics.text()).toMatch(/^spotkeep_agent_boot_failures_total\{stage="runtime"\} 1$/m);
    const cli = await h.cli("events", "nonode-db");
    expect(cli.stdout).toContain("could not start the agent (runtime)");
  });

  it("a spec whose user-data, with the bootstrap, is over EC2's 16 KB is refused at create, naming the field", async () => {
    const spec = {
      ...h.spec("big-user-data"),
      launch: { ...h.spec("big-user-data").launch, userData: `#!/bin/sh\n# ${"x".repeat(11_900)}\n` },
    };
    const res = await h.api("POST", "instances", spec);
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/^launch\.userData: with spotkeep's bootstrap the user-data is \d+ bytes, over EC2's 16384$/);
    expect(await h.coord.views.getInstance("big-user-data")).toBeNull();
  });

  it("refuses a report without a valid identity, or once the agent has said hello, or malformed, changing nothing", async () => {
    const { workflowId } = await h.coord.views.createInstance(parseSpec(h.spec("healthy-db")));
    expect((await h.coord.engine.wait(workflowId)).error).toBeNull();
    const live = (await h.coord.views.getInstance("healthy-db"))!.generation;
    const instanceId = (await h.coord.store.generations.get("healthy-db", live))?.ec2InstanceId;
    expect(instanceId).toMatch(/^i-/);
    const id = await identityOf(h.env, instanceId!);
    const before = await kinds("healthy-db");
    const url = h.coord.url;

    const saidHello = await postBootReport(url, id, { stage: "agent", reason: "forged" });
    expect(saidHello.status).toBe(403);
    expect(saidHello.body.error.message).toMatch(/its agent has said hello/);

    const forged = await postBootReport(
      url,
      { document: id.document.replace(instanceId!, "i-0123456789abcdef0"), signature: id.signature },
      {
        stage: "agent",
        reason: "forged",
      },
    );
    expect(forged.status).toBe(403);
    expect(forged.body.error.message).toMatch(/signature does not verify/);

    for (const body of [{}, { stage: "boot", reason: "x", document: "e30=", signature: "x" }, "not json"]) {
      const res = await fetch(`${url}/agent/v1/boot-report`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
      expect(res.status).toBe(400);
    }
    const big = await fetch(`${url}/agent/v1/boot-report`, { method: "POST", body: "x".repeat(64 * 1024) });
    expect(big.status).toBe(413);
    expect((await fetch(`${url}/agent/v1/boot-report`)).status).toBe(405);

    expect(await kinds("healthy-db")).toEqual(before);
    expect(await h.coord.store.agentReports.latest(instanceId!, "boot-failed")).toBeNull();
    expect((await h.coord.views.getInstance("healthy-db"))!.state).toBe("running");
  });
});
