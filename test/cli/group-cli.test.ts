/**
 * `spotkeep group …` and `status` with groups, as a user runs them: the built CLI against the real
 * API server and group operations over a store (the workflows are recorded, not run).
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApiServer, type ApiServer } from "../../coordinator/api/server.js";
import { loadOrCreateAdminToken } from "../../coordinator/api/token.js";
import { SqliteStore } from "../../coordinator/db/sqlite/index.js";
import { GroupOperations } from "../../coordinator/groups/operations.js";
import { parseGroupSpec } from "../../shared/group-spec.js";
import { parseSpec } from "../../shared/spec.js";
import { FakeViews } from "../api/fake-views.js";
import { CLI as cli, ensureBuilt } from "./built.js";

let api: ApiServer;
let url: string;
let dir: string;
let store: SqliteStore;
let seq = 0;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args, "--url", url], {
      env: { ...process.env, SPOTKEEP_URL: "", SPOTKEEP_TOKEN: "", SPOTKEEP_DATA_DIR: dir },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const template = {
  launch: {
    imageId: "ami-0123456789abcdef0",
    instanceTypes: ["m5.large"],
    subnetIds: ["subnet-0000000000000000a", "subnet-0000000000000000b"],
  },
  persistence: { volumes: [{ device: "/dev/sdf", sizeGiB: 10, mountPoint: "/data" }] },
};
const spec = (name: string, size: number) => ({
  kind: "group",
  name,
  size,
  ipPool: ["172.31.0.10", "172.31.16.10", "172.31.0.11"],
  template,
});

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-cli-groups-"));
  const token = loadOrCreateAdminToken(dir);
  store = SqliteStore.open(":memory:");
  const engine = {
    start: async (kind: string, instance: string, input: unknown, trigger: string | null = null, t = store as never) => {
      const id = `wf-${kind}-${++seq}`;
      await (t as SqliteStore).workflows.insert({ id, kind, instance, input, trigger });
      return id;
    },
  };
  const ec2 = {
    describeSubnets: async () => [
      { subnetId: "subnet-0000000000000000a", availabilityZone: "us-east-1a", cidr: "172.31.0.0/20" },
      { subnetId: "subnet-0000000000000000b", availabilityZone: "us-east-1b", cidr: "172.31.16.0/20" },
    ],
  };
  // A group with two running members (as a finished create leaves it).
  await store.groups.insert("kafka", parseGroupSpec(spec("kafka", 2)), "ready");
  for (const [i, ip, az] of [
    [0, "172.31.0.10", "a"],
    [1, "172.31.16.10", "b"],
  ] as const) {
    await store.instances.insert(`kafka-${i}`, parseSpec({ ...template, name: `kafka-${i}` }), "running");
    await store.groups.addMember({
      group: "kafka",
      ordinal: i,
      instance: `kafka-${i}`,
      privateIp: ip,
      subnetId: `subnet-000000000000000${az}`,
      availabilityZone: `us-east-1${az}`,
    });
  }
  const views = new FakeViews();
  views.seedRunning();
  views.seedRunning("kafka-0");
  views.seedRunning("kafka-1");
  api = createApiServer({
    views,
    groups: new GroupOperations({ store, engine: engine as never, ec2: ec2 as never }),
    adminToken: token,
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
  rmSync(dir, { recursive: true, force: true });
});

describe("spotkeep group", () => {
  it("describe prints the members, their addresses and the spread; --json the detail", async () => {
    const t = await run(["group", "describe", "kafka"]);
    expect(t.stderr).toBe("");
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/^group kafka: ready/);
    expect(t.stdout).toMatch(/size 2, 2 members, 0 unavailable now, maxUnavailable 1/);
    expect(t.stdout).toMatch(/spread: us-east-1a 1, us-east-1b 1/);
    expect(t.stdout).toMatch(/free: 172\.31\.0\.11/);
    expect(t.stdout).toMatch(/kafka-1\s+running\s+0\s+-\s+us-east-1b\s+172\.31\.16\.10/);
    const j = JSON.parse((await run(["group", "describe", "kafka", "--json"])).stdout);
    expect(j.memberList.map((m: { privateIp: string }) => m.privateIp)).toEqual(["172.31.0.10", "172.31.16.10"]);
  });

  it("list and status show the group with its members under it", async () => {
    const l = await run(["group", "list"]);
    expect(l.stdout).toMatch(/kafka\s+ready\s+2\s+2\s+0\s+1\s+running 2/);
    const s = await run(["status"]);
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/group kafka\s+ready\s+-\s+2\/2 members \(2 running\), 0 unavailable \(max 1\)[^\n]*\n\s+kafka-0\s+running/);
    const j = JSON.parse((await run(["status", "--json"])).stdout);
    expect(j.find((i: { name: string }) => i.name === "kafka-0")?.group).toBe("kafka");
    expect(j.find((i: { name: string }) => i.name === "orders-db")?.group).toBeNull();
    // Instances in no group first, then the group's line and its members.
    expect(s.stdout.split("\n").map((l) => l.trim().split(/\s{2,}/)[0])).toEqual([
      "NAME",
      "orders-db",
      "group kafka",
      "kafka-0",
      "kafka-1",
      "",
    ]);
  });

  it("create checks the spec locally first, naming the field", async () => {
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, JSON.stringify({ ...spec("web", 5) }));
    const t = await run(["group", "create", "-f", bad]);
    expect(t.code).not.toBe(0);
    expect(t.stderr).toMatch(/size: 5 members need 5 addresses; ipPool lists 3/);
    const good = join(dir, "good.yaml");
    // A pool address belongs to one group: web shares kafka's subnets, so it needs addresses of its own.
    writeFileSync(good, JSON.stringify({ ...spec("web", 1), ipPool: ["172.31.0.20"] }));
    const sharing = join(dir, "sharing.yaml");
    writeFileSync(sharing, JSON.stringify(spec("web", 1)));
    expect((await run(["group", "create", "-f", sharing])).stderr).toMatch(/ipPool: .* in the ipPool of group kafka/);
    const ok = await run(["group", "create", "-f", good, "--json"]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ name: "web", workflowId: expect.stringMatching(/^wf-group-scale-/) });
    const again = await run(["group", "create", "-f", good]);
    expect(again.stderr).toMatch(/group web already exists/);
  });

  it("scale checks SIZE and the pool, and refuses while the group is busy", async () => {
    expect((await run(["group", "scale", "kafka", "two"])).stderr).toMatch(/SIZE must be a whole number from 0 to 100, got "two"/);
    expect((await run(["group", "scale", "kafka", "4"])).stderr).toMatch(
      /size: 4 members need 4 addresses; the ipPool of group kafka lists 3/,
    );
    expect((await run(["group", "scale", "kafka", "1", "--ttl", "3"])).stderr).toMatch(/--ttl needs --keep/);
    const t = await run(["group", "scale", "kafka", "3"]);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/scaling kafka to 3 \(workflow wf-group-scale-\d+\)/);
    expect((await run(["group", "scale", "kafka", "1"])).stderr).toMatch(/group kafka is busy with group-scale wf-group-scale-\d+/);
    expect((await run(["group", "describe", "nope"])).stderr).toMatch(/no group named "nope"/);
    expect((await run(["group", "frobnicate"])).stderr).toMatch(/unknown group subcommand "frobnicate"/);
  });
});
