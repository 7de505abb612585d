import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseGroupSpec } from "../../../shared/group-spec.js";
import { SqliteStore } from "./index.js";

let store: SqliteStore;
let now = 1_000;
const spec = parseGroupSpec({
  kind: "group",
  name: "kafka",
  size: 2,
  ipPool: ["10.0.0.5", "10.0.0.6"],
  template: { launch: { imageId: "ami-0123456789abcdef0", instanceTypes: ["m5.large"], subnetIds: ["subnet-0000000000000000a"] } },
});
const member = (ordinal: number, privateIp: string) => ({
  group: "kafka",
  ordinal,
  instance: `kafka-${ordinal}`,
  privateIp,
  subnetId: "subnet-0000000000000000a",
  availabilityZone: "us-east-1a",
});

beforeEach(() => {
  store = SqliteStore.open(":memory:", () => now);
});
afterEach(async () => {
  await store.close();
});

describe("group queries", () => {
  it("stores a group with its spec and state", async () => {
    await store.groups.insert("kafka", spec, "creating");
    expect(await store.groups.get("kafka")).toEqual({
      name: "kafka",
      spec,
      state: "creating",
      stateReason: null,
      createdAt: 1000,
      updatedAt: 1000,
    });
    now = 2_000;
    await store.groups.setState("kafka", "stopped", "group-update stopped at kafka-1");
    await store.groups.setSpec("kafka", { ...spec, size: 1 });
    const g = await store.groups.get("kafka");
    expect(g).toMatchObject({ state: "stopped", stateReason: "group-update stopped at kafka-1", updatedAt: 2000, spec: { size: 1 } });
    expect((await store.groups.list()).map((x) => x.name)).toEqual(["kafka"]);
    await store.groups.remove("kafka");
    expect(await store.groups.get("kafka")).toBeNull();
  });

  it("keeps the first claim of an ordinal, one member per address and per instance, until the member is removed", async () => {
    await store.groups.insert("kafka", spec, "ready");
    await store.groups.addMember(member(0, "10.0.0.5"));
    await store.groups.addMember(member(0, "10.0.0.6")); // a replay: the first claim stays
    expect((await store.groups.members("kafka")).map((m) => [m.ordinal, m.privateIp, m.status])).toEqual([[0, "10.0.0.5", "active"]]);
    await expect(store.groups.addMember({ ...member(1, "10.0.0.5") })).rejects.toThrow(/UNIQUE/);
    await expect(store.groups.addMember({ ...member(1, "10.0.0.6"), instance: "kafka-0" })).rejects.toThrow(/UNIQUE/);
    await store.groups.addMember(member(1, "10.0.0.6"));
    expect((await store.groups.memberOf("kafka-1"))?.ordinal).toBe(1);
    expect(await store.groups.memberOf("other")).toBeNull();
    await store.groups.setMemberStatus("kafka", 1, "removing");
    expect((await store.groups.memberOf("kafka-1"))?.status).toBe("removing");
    await store.groups.removeMember("kafka", 1);
    expect((await store.groups.members("kafka")).map((m) => m.instance)).toEqual(["kafka-0"]);
    // Its address can be claimed again.
    await store.groups.addMember(member(2, "10.0.0.6"));
    expect((await store.counts()).stateful_group_members).toBe(2);
  });
});
