import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { INSTANCE_STATES, type InstanceState } from "../shared/operations.js";
import { allowedActions, type InstanceFacts, refusalOf, STARTS, type StartName, WORKFLOW_STATES } from "./lifecycle.js";

const facts = (state: InstanceState, o: Partial<InstanceFacts> = {}): InstanceFacts => ({
  name: "db",
  state,
  running: [],
  liveInstanceId: state === "running" ? "i-1" : null,
  dataVolumes: 1,
  group: null,
  ...o,
});

describe("the lifecycle table", () => {
  it("admits each start from exactly the states it lists", () => {
    for (const [start, rule] of Object.entries(STARTS) as Array<[StartName, (typeof STARTS)[StartName]]>)
      for (const state of INSTANCE_STATES) {
        const why = refusalOf(start, facts(state, { liveInstanceId: "i-1" }));
        expect(why === null, `${start} from ${state}: ${why}`).toBe((rule.from as readonly string[]).includes(state));
      }
  });

  it("operators, schedules and the coordinator differ where they should", () => {
    // An operator resumes or recycles a failed instance; a scheduled task does neither.
    expect(refusalOf("resume", facts("failed"))).toBeNull();
    expect(refusalOf("scheduled resume", facts("failed"))).toBe("db is failed; a scheduled resume applies when it is paused");
    expect(refusalOf("recycle", facts("failed"))).toBeNull();
    expect(refusalOf("scheduled recycle", facts("failed"))).toMatch(/applies when it is running/);
    // A replacement and a healing recycle do not wait for a snapshot in flight; an operator's pause does.
    const snapshotting = facts("running", { running: [{ id: "wf-s", kind: "snapshot" }] });
    expect(refusalOf("replace", snapshotting)).toBeNull();
    expect(refusalOf("heal", snapshotting)).toBeNull();
    expect(refusalOf("group roll", snapshotting)).toBeNull();
    expect(refusalOf("pause", snapshotting)).toBe("db is busy with snapshot wf-s");
    expect(refusalOf("revert-to-spot", snapshotting)).toBe("db is busy with snapshot wf-s");
    // A spec update is stored whatever moves the instance.
    expect(refusalOf("update", facts("replacing", { running: [{ id: "wf-r", kind: "replace" }] }))).toBeNull();
    expect(refusalOf("update", facts("deleting"))).toBe(`db is deleting; update is allowed from ${STARTS.update.from.join(", ")}`);
  });

  it("names what a start needs: a live EC2 instance, data volumes, and the group for a member", () => {
    expect(refusalOf("pause", facts("running", { liveInstanceId: null }))).toBe("db has no live EC2 instance to pause");
    expect(refusalOf("snapshot", facts("running", { dataVolumes: 0 }))).toBe("db has no data volumes to snapshot");
    const member = facts("running", { group: { group: "kafka", ordinal: 2 } });
    expect(refusalOf("delete", member)).toBe(
      "db is member 2 of group kafka: scale the group down (spotkeep group scale) or delete the group",
    );
    expect(refusalOf("update", member)).toBe("db is member 2 of group kafka: update the group's template (spotkeep group update)");
    expect(refusalOf("recycle", member)).toBeNull();
  });

  it("allowedActions lists what an operator may start now, and nothing while a workflow moves the instance", () => {
    expect(allowedActions(facts("running"))).toEqual(["pause", "recycle", "snapshot", "delete", "update"]);
    expect(allowedActions(facts("running", { dataVolumes: 0 }))).toEqual(["pause", "recycle", "delete", "update"]);
    expect(allowedActions(facts("paused"))).toEqual(["resume", "delete", "update"]);
    expect(allowedActions(facts("failed"))).toEqual(["resume", "recycle", "delete", "update"]);
    expect(allowedActions(facts("recycling", { running: [{ id: "wf-1", kind: "recycle" }] }))).toEqual(["update"]);
    expect(allowedActions(facts("deleted"))).toEqual([]);
    expect(allowedActions(facts("running", { group: { group: "kafka", ordinal: 0 } }))).toEqual(["pause", "recycle", "snapshot"]);
  });

  it("every state is reachable: each is where some workflow holds or leaves an instance", () => {
    const reached = new Set<string>(["failed"]);
    for (const s of Object.values(WORKFLOW_STATES)) for (const v of [s.during, s.succeeded, s.rolledBack]) if (v) reached.add(v);
    expect([...reached].sort()).toEqual([...INSTANCE_STATES].sort());
  });
});

/** Every .ts file under `dir` except tests. */
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return sources(p);
    return p.endsWith(".ts") && !p.endsWith(".test.ts") ? [p] : [];
  });
}

describe("who writes an instance's state", () => {
  it("only lifecycle.ts (moveState) writes it; the store backends implement it", () => {
    const root = import.meta.dirname;
    const writers = sources(root)
      .filter((p) => /instances\.setState\(/.test(readFileSync(p, "utf8")))
      .map((p) => p.slice(root.length + 1));
    expect(writers).toEqual(["lifecycle.ts"]);
  });
});
