import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseGroupSpec } from "../shared/group-spec.js";
import { parseSpec } from "../shared/spec.js";
import { SqliteStore } from "./db/sqlite/index.js";
import type { StatefulInstanceState } from "./db/store.js";
import { admitPlannedWork, PlannedWorkWaits, plannedWorkRefusal } from "./planned-work.js";

let store: SqliteStore;
const template = { launch: { imageId: "ami-0123456789abcdef0", instanceTypes: ["m5.large"], subnetIds: ["subnet-0000000000000000a"] } };

async function setUp(maxUnavailable: number, states: StatefulInstanceState[]) {
  const g = parseGroupSpec({
    kind: "group",
    name: "kafka",
    size: states.length,
    maxUnavailable,
    ipPool: states.map((_, i) => `172.31.0.${10 + i}`),
    template,
  });
  await store.groups.insert("kafka", g, "ready");
  for (const [i, state] of states.entries()) {
    const name = `kafka-${i}`;
    await store.instances.insert(name, parseSpec({ ...template, name }), state);
    await store.groups.addMember({
      group: "kafka",
      ordinal: i,
      instance: name,
      privateIp: `172.31.0.${10 + i}`,
      subnetId: "subnet-0000000000000000a",
      availabilityZone: "us-east-1a",
    });
  }
}

beforeEach(() => {
  store = SqliteStore.open(":memory:");
});
afterEach(async () => {
  await store.close();
});

describe("planned work in a group", () => {
  it("passes while fewer than maxUnavailable other members are down; instances in no group are not asked", async () => {
    await setUp(1, ["running", "running", "running"]);
    expect(await plannedWorkRefusal(store, "kafka-0")).toBeNull();
    expect(await plannedWorkRefusal(store, "not-in-a-group")).toBeNull();
  });

  it("waits while maxUnavailable other members are down (paused, failed, or moved by a workflow other than a snapshot)", async () => {
    await setUp(1, ["running", "paused", "running"]);
    expect(await plannedWorkRefusal(store, "kafka-0")).toBe(
      "group kafka: planned work on kafka-0 waits: 1 other member is down (kafka-1) and maxUnavailable is 1",
    );
    // The down member itself may still get planned work (it takes nothing more away).
    expect(await plannedWorkRefusal(store, "kafka-1")).toBeNull();
    await store.workflows.insert({ id: "wf-snap", kind: "snapshot", instance: "kafka-2", input: {}, trigger: null });
    expect(await plannedWorkRefusal(store, "kafka-1")).toBeNull();
    await store.workflows.insert({ id: "wf-rec", kind: "recycle", instance: "kafka-2", input: {}, trigger: null });
    expect(await plannedWorkRefusal(store, "kafka-1")).toMatch(/1 other member is down \(kafka-2\)/);
  });

  it("lets two members be down with maxUnavailable 2, never a third", async () => {
    await setUp(2, ["running", "failed", "running", "running"]);
    expect(await plannedWorkRefusal(store, "kafka-0")).toBeNull();
    await store.instances.setState("kafka-2", "recycling");
    await expect(admitPlannedWork(store, "kafka-0")).rejects.toBeInstanceOf(PlannedWorkWaits);
  });

  it("waits while another member recovers from an interruption, whatever maxUnavailable allows", async () => {
    await setUp(3, ["running", "replacing", "running"]);
    await store.workflows.insert({ id: "wf-r", kind: "replace", instance: "kafka-1", input: {}, trigger: "spot-interruption" });
    expect(await plannedWorkRefusal(store, "kafka-0")).toBe(
      "group kafka: planned work on kafka-0 waits while kafka-1 recovers from an interruption",
    );
  });

  it("does not count members still being created", async () => {
    await setUp(1, ["running", "creating"]);
    expect(await plannedWorkRefusal(store, "kafka-0")).toBeNull();
  });

  it("admits one of two requests made at the same moment (check and start in one transaction)", async () => {
    await setUp(1, ["running", "running", "running"]);
    const start = (name: string) =>
      store.tx(async (t) => {
        await admitPlannedWork(t, name);
        await t.instances.setState(name, "recycling");
      });
    const results = await Promise.allSettled([start("kafka-0"), start("kafka-1")]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
  });
});
