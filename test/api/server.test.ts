import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApiServer, MAX_BODY_BYTES, type ApiServer } from "../../coordinator/api/server.js";
import { loadOrCreateAdminToken } from "../../coordinator/api/token.js";
import { Metrics } from "../../coordinator/metrics.js";
import { EventsResponse, InstanceDetail, InstanceSummary, Workflow } from "../../shared/api.js";
import { FakeViews } from "./fake-views.js";
import { unusedGroups } from "../../coordinator/api/unused-deps.js";
import { NotLeaderError } from "../../coordinator/ha/lease.js";
import { Refusal } from "../../coordinator/refusal.js";

const spec = {
  name: "web-db",
  launch: { imageId: "ami-0abc0123456789def", instanceTypes: ["m6i.large"], subnetIds: ["subnet-0a0000000000000a1"] },
  persistence: { volumes: [{ device: "/dev/sdf", sizeGiB: 10, mountPoint: "/data" }] },
};

const JSON_TYPE = { "content-type": "application/json" };

let api: ApiServer;
let base: string;
let views: FakeViews;
let dir: string;
let token: string;
const metrics = new Metrics({ defaultMetrics: false });
/** What the server's `standby` hook answers (null: this coordinator leads). */
let standby: { leader: string | null } | null = null;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-api-"));
  token = loadOrCreateAdminToken(dir);
  writeFileSync(join(dir, "agent.js"), "console.log('agent')\n");
  views = new FakeViews();
  views.seedRunning();
  metrics.setInstanceStateSource(async () => ({ running: (await views.listInstances()).filter((i) => i.state === "running").length }));
  api = createApiServer({
    views,
    groups: unusedGroups(),
    adminToken: token,
    agentBundlePath: join(dir, "agent.js"),
    onAgentUpgrade: (_req, socket) => socket.end("HTTP/1.1 101 Switching Protocols\r\n\r\n"),
    metricsText: () => metrics.text(),
    health: () => ({ ok: true, detail: { agents: 0 } }),
    standby: () => standby,
    specRegion: "eu-west-1",
  });
  base = await api.listen(0);
});
afterAll(async () => {
  await api?.close();
  rmSync(dir, { recursive: true, force: true });
});

function call(path: string, init: RequestInit & { auth?: string | null } = {}) {
  const headers = new Headers(init.headers);
  if (init.auth !== null) headers.set("authorization", `Bearer ${init.auth ?? token}`);
  return fetch(base + path, { ...init, headers });
}
async function expectError(res: Response, status: number, message: RegExp) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: { message: string; code: unknown } };
  expect(body.error.message).toMatch(message);
  expect(typeof body.error.code).toBe("string");
}

describe("admin token", () => {
  it("is generated once into the data dir with mode 0600", () => {
    expect(token.length).toBeGreaterThanOrEqual(16);
    expect(statSync(join(dir, "admin-token")).mode & 0o777).toBe(0o600);
    expect(loadOrCreateAdminToken(dir)).toBe(token);
  });
  it("401 without a token and with a wrong one", async () => {
    await expectError(await call("/api/v1/instances", { auth: null }), 401, /missing bearer token/);
    const res = await call("/api/v1/instances", { auth: "nope" });
    expect(res.headers.get("www-authenticate")).toMatch(/Bearer/);
    await expectError(res, 401, /not valid/);
  });
  it("a rejected create with a wrong token changes nothing", async () => {
    const before = views.listInstances().length;
    await expectError(await call("/api/v1/instances", { method: "POST", auth: "wrong", body: JSON.stringify(spec) }), 401, /not valid/);
    expect(views.listInstances()).toHaveLength(before);
  });
});

describe("instances", () => {
  it("lists instances in the shared shape", async () => {
    const res = await call("/api/v1/instances");
    expect(res.status).toBe(200);
    const body = (await res.json()) as any;
    expect(body.instances.map((i: unknown) => InstanceSummary.parse(i).name)).toEqual(["orders-db"]);
  });
  it("describes one and 404s an unknown one", async () => {
    const res = await call("/api/v1/instances/orders-db");
    expect(InstanceDetail.parse(await res.json()).resources.network.privateIp).toBe("172.31.0.10");
    await expectError(await call("/api/v1/instances/nope"), 404, /no stateful instance named "nope"/);
  });
  it("serves the timeline", async () => {
    const body = EventsResponse.parse(await (await call("/api/v1/instances/orders-db/events")).json());
    expect(body.timelines[0]!.downtimeSeconds).toBe(41.5);
    await expectError(await call("/api/v1/instances/nope/events"), 404, /nope/);
  });
  it("creates from a JSON spec and from YAML", async () => {
    const res = await call("/api/v1/instances", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(spec),
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ name: "web-db", workflowId: expect.stringMatching(/^wf-/) });
    const yaml =
      "name: web-db-2\nlaunch:\n  imageId: ami-0abc0123456789def\n  instanceTypes: [t3.small]\n  subnetIds: [subnet-0a0000000000000a1]\n";
    expect((await call("/api/v1/instances", { method: "POST", headers: { "content-type": "application/yaml" }, body: yaml })).status).toBe(
      201,
    );
  });
  it("409 on a duplicate name, nothing changes", async () => {
    const before = views.created.length;
    await expectError(
      await call("/api/v1/instances", { method: "POST", headers: JSON_TYPE, body: JSON.stringify(spec) }),
      409,
      /already exists/,
    );
    expect(views.created).toHaveLength(before);
  });
  it("400 with the path for an invalid spec, nothing changes", async () => {
    const before = views.created.length;
    const bad = { ...spec, name: "x2", persistence: { volumes: [{ device: "/dev/foo!", sizeGiB: 1, mountPoint: "/d" }] } };
    await expectError(
      await call("/api/v1/instances", { method: "POST", headers: JSON_TYPE, body: JSON.stringify(bad) }),
      400,
      /persistence\.volumes\[0\]\.device: "\/dev\/foo!" is not a valid device name/,
    );
    const badHealth = { ...spec, name: "x3", health: { type: "http", http: { port: 0 } }, maintenance: { leadSeconds: 5 } };
    await expectError(
      await call("/api/v1/instances", { method: "POST", headers: JSON_TYPE, body: JSON.stringify(badHealth) }),
      400,
      /health\.http\.port: must be a port between 1 and 65535.*maintenance\.leadSeconds: must be at least 60/,
    );
    await expectError(await call("/api/v1/instances", { method: "POST", headers: JSON_TYPE, body: "{nope" }), 400, /not valid JSON/);
    await expectError(await call("/api/v1/instances", { method: "POST", headers: JSON_TYPE, body: "" }), 400, /body is empty/);
    await expectError(
      await call("/api/v1/instances", { method: "POST", headers: { "content-type": "image/png" }, body: "x" }),
      415,
      /application\/json/,
    );
    await expectError(
      await call("/api/v1/instances", { method: "POST", headers: JSON_TYPE, body: "x".repeat(MAX_BODY_BYTES + 10) }),
      413,
      /limit/,
    );
    // A body is JSON or YAML only when its content type says so.
    await expectError(await call("/api/v1/instances", { method: "POST", body: JSON.stringify(bad) }), 415, /application\/json/);
    expect(views.created).toHaveLength(before);
  });
  it("operations: 202, 409 when busy, 404 unknown", async () => {
    const res = await call("/api/v1/instances/orders-db/snapshot", { method: "POST" });
    expect(res.status).toBe(202);
    await expectError(await call("/api/v1/instances/orders-db/pause", { method: "POST" }), 409, /busy/);
    await expectError(await call("/api/v1/instances/nope/pause", { method: "POST" }), 404, /nope/);
  });
  it("405 for a wrong method, 404 for unknown routes", async () => {
    await expectError(await call("/api/v1/instances", { method: "PUT" }), 405, /PUT is not allowed/);
    await expectError(await call("/api/v1/frobs"), 404, /no route/);
  });
});

describe("a standby coordinator", () => {
  it("answers reads, and refuses every write with 503 naming the leader, changing nothing", async () => {
    standby = { leader: "http://10.0.1.5:7400" };
    try {
      const before = views.listInstances().length;
      expect((await call("/api/v1/instances")).status).toBe(200);
      const res = await call("/api/v1/instances", {
        method: "POST",
        headers: JSON_TYPE,
        body: JSON.stringify({ ...spec, name: "new-db" }),
      });
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("5");
      const body = (await res.json()) as { error: { code: string; message: string }; leader: string };
      expect(body).toMatchObject({ error: { code: "not-leader" }, leader: "http://10.0.1.5:7400" });
      expect(body.error.message).toMatch(/standby: send POST requests to the leader at http:\/\/10\.0\.1\.5:7400/);
      expect((await call("/api/v1/instances/web-db/pause", { method: "POST" })).status).toBe(503);
      expect((await call("/api/v1/instances/web-db", { method: "DELETE" })).status).toBe(503);
      expect(views.listInstances()).toHaveLength(before);
      standby = { leader: null };
      await expectError(await call("/api/v1/instances/web-db/pause", { method: "POST" }), 503, /no coordinator leads just now/);
      // A write without the token is still 401: the standby answer gives nothing away unauthenticated.
      expect((await call("/api/v1/instances", { method: "POST", auth: null })).status).toBe(401);
    } finally {
      standby = null;
    }
  });

  it("answers each kind of domain refusal with its status and the kind as the error code", async () => {
    const original = views.createInstance;
    try {
      for (const [kind, status] of [
        ["not-found", 404],
        ["conflict", 409],
        ["invalid", 400],
        ["unavailable", 503],
      ] as const) {
        views.createInstance = async () => {
          throw new Refusal(kind, `refused as ${kind}`);
        };
        const res = await call("/api/v1/instances", {
          method: "POST",
          headers: JSON_TYPE,
          body: JSON.stringify({ ...spec, name: "new-db" }),
        });
        expect(res.status, kind).toBe(status);
        expect(res.headers.get("retry-after"), kind).toBe(kind === "unavailable" ? "5" : null);
        expect(await res.json()).toEqual({ error: { code: kind, message: `refused as ${kind}` } });
      }
    } finally {
      views.createInstance = original;
    }
  });

  it("a write refused because this coordinator stopped leading mid-request is 503 not-leader, not 500", async () => {
    const original = views.createInstance;
    views.createInstance = async () => {
      throw new Error("creating new-db", {
        cause: new NotLeaderError("writing to the store: refused, this coordinator is not the leader"),
      });
    };
    try {
      const res = await call("/api/v1/instances", {
        method: "POST",
        headers: JSON_TYPE,
        body: JSON.stringify({ ...spec, name: "new-db" }),
      });
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ error: { code: "not-leader", message: expect.stringMatching(/not the leader/) } });
    } finally {
      views.createInstance = original;
    }
  });

  it("/healthz?role=leader is 503 on a standby and 200 on the leader; another role is 400", async () => {
    standby = { leader: "http://10.0.1.5:7400" };
    try {
      expect((await call("/healthz", { auth: null })).status).toBe(200);
      expect((await call("/healthz?role=leader", { auth: null })).status).toBe(503);
    } finally {
      standby = null;
    }
    expect((await call("/healthz?role=leader", { auth: null })).status).toBe(200);
    expect((await call("/healthz?role=boss", { auth: null })).status).toBe(400);
  });
});

describe("workflows", () => {
  it("returns a workflow or 404", async () => {
    const wf = Workflow.parse(await (await call("/api/v1/workflows/wf-r1")).json());
    expect(wf.steps.map((s) => s.name)).toEqual(["quiesce", "terminate-old", "launch"]);
    await expectError(await call("/api/v1/workflows/wf-zzz"), 404, /no workflow/);
  });
});

describe("public endpoints", () => {
  it("/healthz needs no token", async () => {
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      ok: true,
      agents: 0,
      openFiles: { open: expect.any(Number), soft: expect.anything(), hard: expect.anything(), nearLimit: false },
    });
  });
  it("/healthz degrades to 503 when open descriptors near the limit, and recovers below it", async () => {
    let open = 950;
    const near = createApiServer({
      views,
      groups: unusedGroups(),
      adminToken: token,
      agentBundlePath: join(dir, "agent.js"),
      onAgentUpgrade: (_req, socket) => socket.destroy(),
      metricsText: () => metrics.text(),
      health: () => ({ ok: true, detail: { agents: 940 } }),
      openFiles: () => ({ open, soft: 1024, hard: 1024 }),
    });
    const url = await near.listen(0);
    try {
      const res = await fetch(`${url}/healthz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({
        ok: false,
        agents: 940,
        openFiles: { open: 950, soft: 1024, hard: 1024, nearLimit: true },
        degraded: expect.stringMatching(/^950 of 1024 open descriptors in use \(93%, hard limit 1024\): .*LimitNOFILE=/),
      });
      open = 500;
      const again = await fetch(`${url}/healthz`);
      expect(again.status).toBe(200);
      expect(await again.json()).toMatchObject({ ok: true, openFiles: { open: 500, nearLimit: false } });
    } finally {
      await near.close();
    }
  });
  it("/metrics is Prometheus text", async () => {
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get("content-type")).toMatch(/text\/plain; version=0\.0\.4/);
    expect(await res.text()).toMatch(/spotkeep_instances\{state="running"\} 1/);
  });
  it("serves the agent bundle with its SHA-256 (hex header and RFC 9530 Repr-Digest)", async () => {
    const res = await fetch(`${base}/agent/v1/agent.js`);
    expect(res.status).toBe(200);
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.toString("utf8")).toContain("agent");
    const sha256 = createHash("sha256").update(body).digest("hex");
    expect(res.headers.get("x-spotkeep-agent-sha256")).toBe(sha256);
    expect(res.headers.get("repr-digest")).toBe(`sha-256=:${createHash("sha256").update(body).digest("base64")}:`);
    const head = await fetch(`${base}/agent/v1/agent.js`, { method: "HEAD" });
    expect(head.headers.get("x-spotkeep-agent-sha256")).toBe(sha256);
  });
});

describe("a spec without a region", () => {
  it("is in the coordinator's region; a spec naming its region keeps it", async () => {
    const post = (body: object) => call("/api/v1/instances", { method: "POST", headers: JSON_TYPE, body: JSON.stringify(body) });
    expect((await post({ ...spec, name: "no-region" })).status).toBe(201);
    expect(views.created.find((c) => c.name === "no-region")?.region).toBe("eu-west-1");
    expect((await post({ ...spec, name: "named-region", region: "us-east-1" })).status).toBe(201);
    expect(views.created.find((c) => c.name === "named-region")?.region).toBe("us-east-1");
  });
});
