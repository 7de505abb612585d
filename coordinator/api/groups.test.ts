import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseGroupSpec } from "../../shared/group-spec.js";
import { parseSpec } from "../../shared/spec.js";
import { SqliteStore } from "../db/sqlite/index.js";
import { GroupOperations } from "../groups/operations.js";
import { unusedViews } from "./unused-deps.js";
import { type ApiServer, createApiServer } from "./server.js";

const TOKEN = "test-admin-token-0123456789";
let store: SqliteStore;
let api: ApiServer;
let url: string;
let seq = 0;
const template = {
  launch: { imageId: "ami-0123456789abcdef0", instanceTypes: ["m5.large"], subnetIds: ["subnet-0000000000000000a"] },
  persistence: { volumes: [{ device: "/dev/sdf", sizeGiB: 10, mountPoint: "/data" }] },
};
const spec = (o: Record<string, unknown> = {}) => ({
  kind: "group",
  name: "kafka",
  size: 1,
  ipPool: ["172.31.0.10", "172.31.0.11"],
  template,
  ...o,
});

async function call(method: string, path: string, body?: string, contentType = "application/json") {
  const res = await fetch(`${url}/api/v1/${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": contentType },
    body,
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } & Record<string, unknown> };
}

beforeAll(async () => {
  store = SqliteStore.open(":memory:");
  const engine = {
    start: async (kind: string, instance: string, input: unknown, trigger: string | null = null, t?: unknown) => {
      const id = `wf-${kind}-${++seq}`;
      await ((t ?? store) as SqliteStore).workflows.insert({ id, kind, instance, input, trigger });
      return id;
    },
  };
  await store.groups.insert("kafka", parseGroupSpec(spec()), "ready");
  await store.instances.insert("kafka-0", parseSpec({ ...template, name: "kafka-0" }), "running");
  await store.instances.insert("orders-0", parseSpec({ ...template, name: "orders-0" }), "running");
  await store.instances.insert("kafka-1", parseSpec({ ...template, name: "kafka-1" }), "running");
  await store.groups.addMember({
    group: "kafka",
    ordinal: 0,
    instance: "kafka-0",
    privateIp: "172.31.0.10",
    subnetId: "subnet-0000000000000000a",
    availabilityZone: "us-east-1a",
  });
  api = createApiServer({
    views: unusedViews(),
    groups: new GroupOperations({ store, engine }),
    adminToken: TOKEN,
    agentBundlePath: "/nonexistent",
    onAgentUpgrade: (_r, s) => s.destroy(),
    metricsText: async () => "",
    health: () => ({ ok: true }),
  });
  url = await api.listen(0);
});
afterAll(async () => {
  await api?.close();
  await store?.close();
});

describe("/api/v1/groups refuses bad input by name and changes nothing", () => {
  const cases: Array<[string, string, string, string | undefined, number, RegExp]> = [
    ["a body that is not JSON", "POST", "groups", "{kind:", 400, /body/],
    [
      "a spec with a bad field",
      "POST",
      "groups",
      JSON.stringify(spec({ name: "web", maxUnavailable: 0 })),
      400,
      /maxUnavailable: must be at least 1/,
    ],
    ["a group that exists", "POST", "groups", JSON.stringify(spec()), 409, /group kafka already exists/],
    ["a member name in use", "POST", "groups", JSON.stringify(spec({ name: "orders" })), 409, /stateful instance orders-0 already exists/],
    [
      "a pool sharing an address with another group on the same subnet",
      "POST",
      "groups",
      JSON.stringify(spec({ name: "zk", ipPool: ["172.31.0.20", "172.31.0.11"] })),
      409,
      /ipPool: 172.31.0.11 is in the ipPool of group kafka \(same subnets\); a pool address belongs to one group/,
    ],
    ["scale without a size", "POST", "groups/kafka/scale", "{}", 400, /body.size: must be a whole number of members, got null/],
    ["scale to a negative size", "POST", "groups/kafka/scale", '{"size": -1}', 400, /body.size/],
    ["scale with an unknown field", "POST", "groups/kafka/scale", '{"size": 1, "sise": 2}', 400, /body.sise: unknown field/],
    ["scale with a bad keep item", "POST", "groups/kafka/scale", '{"size": 0, "keep": ["disks"]}', 400, /body.keep: unknown item "disks"/],
    ["scale with a TTL and nothing kept", "POST", "groups/kafka/scale", '{"size": 0, "ttlHours": 3}', 400, /ttlHours: nothing is kept/],
    ["scale onto a name in use", "POST", "groups/kafka/scale", '{"size": 2}', 409, /stateful instance kafka-1 already exists/],
    [
      "scale beyond the pool",
      "POST",
      "groups/kafka/scale",
      '{"size": 3}',
      400,
      /size: 3 members need 3 addresses; the ipPool of group kafka lists 2/,
    ],
    ["scale of an unknown group", "POST", "groups/nope/scale", '{"size": 1}', 404, /no group named "nope"/],
    ["an update renaming the group", "PUT", "groups/kafka", JSON.stringify(spec({ name: "other" })), 400, /name: cannot change/],
    [
      "an update changing the size",
      "PUT",
      "groups/kafka",
      JSON.stringify(spec({ size: 2 })),
      400,
      /size: 2 differs from 1; change it with spotkeep group scale/,
    ],
    [
      "an update dropping an owned address",
      "PUT",
      "groups/kafka",
      JSON.stringify(spec({ ipPool: ["172.31.0.11"] })),
      400,
      /ipPool: cannot drop 172.31.0.10 \(owned by kafka-0\)/,
    ],
    [
      "an update changing a volume's size",
      "PUT",
      "groups/kafka",
      JSON.stringify(
        spec({ template: { ...template, persistence: { volumes: [{ device: "/dev/sdf", sizeGiB: 20, mountPoint: "/data" }] } } }),
      ),
      400,
      /template.persistence.volumes\[0\].sizeGiB: cannot change/,
    ],
    ["a delete with an unknown parameter", "DELETE", "groups/kafka?kep=volumes", undefined, 400, /kep: unknown parameter/],
    [
      "a delete with force (an instance's option)",
      "DELETE",
      "groups/kafka?force=true",
      undefined,
      400,
      /force: unknown parameter \(allowed: keep, ttlHours\)/,
    ],
    ["an unknown method", "PATCH", "groups/kafka", undefined, 405, /PATCH is not allowed here/],
    ["an unknown sub-route", "GET", "groups/kafka/frob", undefined, 404, /no route/],
  ];
  it.each(cases)("%s", async (_what, method, path, body, status, message) => {
    const before = await store.counts();
    const r = await call(method, path, body);
    expect(r.status, JSON.stringify(r.body)).toBe(status);
    if (status >= 400) {
      expect(r.body.error?.message).toMatch(message);
      expect(await store.counts()).toEqual(before);
    }
  });

  it("answers describe, list and the group's events; a template-neutral update starts nothing", async () => {
    expect((await call("GET", "groups")).body.groups).toHaveLength(1);
    const d = await call("GET", "groups/kafka");
    expect(d.body).toMatchObject({ name: "kafka", members: 1, freeAddresses: ["172.31.0.11"], unavailable: 0 });
    const u = await call("PUT", "groups/kafka", JSON.stringify(spec({ maxUnavailable: 2 })));
    expect(u).toEqual({ status: 200, body: { name: "kafka", workflowId: null } });
    expect((await store.groups.get("kafka"))?.spec.maxUnavailable).toBe(2);
    expect((await call("GET", "groups/kafka/events")).body.events).toEqual([
      expect.objectContaining({ kind: "group-updated", message: expect.stringMatching(/nothing to roll out/) }),
    ]);
  });
});
