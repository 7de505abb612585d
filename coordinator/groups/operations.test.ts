import { afterEach, describe, expect, it } from "vitest";
import { parseGroupSpec } from "../../shared/group-spec.js";
import { SqliteStore } from "../db/sqlite/index.js";
import { GroupOperations } from "./operations.js";
import { groupKey } from "./runbooks.js";

const spec = parseGroupSpec({
  kind: "group",
  name: "kafka",
  size: 1,
  ipPool: ["10.0.0.5"],
  template: { launch: { imageId: "ami-0123456789abcdef0", instanceTypes: ["m5.large"], subnetIds: ["subnet-0000000000000000a"] } },
});

let store: SqliteStore | undefined;
afterEach(async () => {
  await store?.close();
});

describe("group timeline", () => {
  it("starts afresh for a new group that takes a deleted group's name", async () => {
    let now = 1_000;
    store = SqliteStore.open(":memory:", () => now);
    const ops = new GroupOperations({ store, engine: { start: async () => "wf" } });
    await store.groups.insert("kafka", spec, "ready");
    await store.events.add(groupKey("kafka"), "group-created", "first group");
    await store.groups.remove("kafka");
    await store.events.add(groupKey("kafka"), "group-deleted", "first group deleted");
    // Without a group of that name, the old timeline is what there is.
    expect((await ops.events("kafka")).map((e) => e.message)).toEqual(["first group", "first group deleted"]);
    now = 2_000;
    await store.groups.insert("kafka", spec, "ready");
    await store.events.add(groupKey("kafka"), "group-created", "second group");
    expect((await ops.events("kafka")).map((e) => e.message)).toEqual(["second group"]);
  });
});
