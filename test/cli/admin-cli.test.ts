import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type AddressInfo } from "node:net";
import { createApiServer, type ApiServer } from "../../coordinator/api/server.js";
import { loadOrCreateAdminToken } from "../../coordinator/api/token.js";
import { FakeViews } from "../api/fake-views.js";
import { unusedGroups } from "../../coordinator/api/unused-deps.js";
import { CLI as cli, ensureBuilt } from "./built.js";
let api: ApiServer;
let url: string;
let dir: string;
let views: FakeViews;

/** Run the real CLI as a user would; async so the in-process API server keeps answering. */
function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], {
      env: { ...process.env, SPOTKEEP_URL: "", SPOTKEEP_TOKEN: "", SPOTKEEP_DATA_DIR: dir, ...env },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A port nothing listens on: bind an ephemeral one, then close it. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-cli-"));
  const token = loadOrCreateAdminToken(dir);
  views = new FakeViews();
  views.seedRunning();
  api = createApiServer({
    views,
    // `status` lists the groups beside the instances: there are none.
    groups: unusedGroups({ list: async () => [] }),
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
  rmSync(dir, { recursive: true, force: true });
});

describe("spotkeep status / describe / events", () => {
  it("status prints a table and --json prints the instances", async () => {
    const t = await run(["status", "--url", url]);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/^NAME\s+STATE\s+GEN\s+INSTANCE/);
    expect(t.stdout).toMatch(
      /orders-db\s+running\s+2\s+i-0bbbbbbbbbbbbbbb2\s+m6i\.large\s+us-east-1a\s+spot\s+172\.31\.0\.10\s+41\.5s\s+failing since 2026-11-25T10:05:00Z/,
    );
    const j = await run(["status", "--url", url, "--json"]);
    expect(JSON.parse(j.stdout)[0].name).toBe("orders-db");
  });
  it("describe shows resources and generations", async () => {
    const t = await run(["describe", "orders-db", "--url", url]);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/network interface\s+eni-0fffffffffffffff6/);
    expect(t.stdout).toMatch(/\/dev\/sdf\s+\/data\s+vol-0ccccccccccccccc3/);
    expect(t.stdout).toMatch(/GENERATIONS[\s\S]*1\s+i-0aaaaaaaaaaaaaaa1[\s\S]*spot-interruption/);
    expect(t.stdout).toMatch(/health\s+failing since 2026-11-25T10:05:00Z \(http:\/\/127\.0\.0\.1:8080\/healthz failed \(HTTP 503\)\)/);
    expect(t.stdout).toMatch(
      /SCHEDULED MAINTENANCE[\s\S]*instance-event-0123456789abcdef0\s+instance-retirement\s+2026-11-30T09:00:00\.000Z\s+2026-11-30T08:45:00\.000Z/,
    );
    expect(t.stdout).toMatch(
      /SCHEDULE \(UTC\)\nACTION\s+CRON\s+NEXT RUN\s+LAST DUE\s+LAST OUTCOME\npause\s+0 20 \* \* 1-5\s+2026-11-25T20:00:00\.000Z\s+2026-11-24T20:00:00\.000Z\s+skipped: orders-db is replacing/,
    );
    expect(JSON.parse((await run(["describe", "orders-db", "--url", url, "--json"])).stdout).generation).toBe(2);
  });
  it("describe names how a replacement treats the private IP: stable ENI, pool, none, make-before-break", async () => {
    const base = views.getInstance("orders-db")!;
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{}, /replacement\s+break-before-make \(stable ENI as the primary\)\n/],
      [{ privateIp: "none" }, /replacement\s+break-before-make \(a new primary ENI each generation; the private IP changes\)\n/],
      [
        { privateIp: "pool", ipPool: ["172.31.0.10"] },
        /replacement\s+break-before-make \(a new primary ENI each generation, its address from the IP pool\)\n/,
      ],
      [{ privateIp: "same-eni", attach: "secondary" }, /replacement\s+make-before-break \(stable ENI at device index 1\)\n/],
    ];
    try {
      for (const [network, want] of cases) {
        views.instances.set("net-db", { ...base, name: "net-db", spec: { name: "net-db", persistence: { network } } });
        const t = await run(["describe", "net-db", "--url", url]);
        expect(t.code).toBe(0);
        expect(t.stdout).toMatch(want);
        if (network.privateIp === "none") expect(t.stdout).not.toContain("stable ENI");
      }
    } finally {
      views.instances.delete("net-db");
    }
  });
  it("events shows per-step durations and the critical path", async () => {
    const t = await run(["events", "orders-db", "--url", url]);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/replace wf-r1 \(trigger: spot-interruption\): succeeded; downtime 41\.5s, recovery 47\.3s/);
    expect(t.stdout).toMatch(/\*\s+terminate-old\s+\+2\.5s\s+30\.5s\s+done\s+1/);
    expect(t.stdout).toMatch(/critical path: quiesce -> terminate-old -> launch/);
    expect(JSON.parse((await run(["events", "orders-db", "--url", url, "--json"])).stdout).timelines).toHaveLength(1);
  });
});

describe("spotkeep create", () => {
  it("creates from a YAML file", async () => {
    const f = join(dir, "spec.yaml");
    writeFileSync(
      f,
      "name: cli-db\nlaunch:\n  imageId: ami-0abc0123456789def\n  instanceTypes: [t3.small]\n  subnetIds: [subnet-0a0000000000000a1]\n",
    );
    const t = await run(["create", "-f", f, "--url", url]);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/creating cli-db \(workflow wf-\d+\)/);
    expect(views.getInstance("cli-db")).not.toBeNull();
  });
  it("rejects a bad spec locally with the path, sending nothing", async () => {
    const f = join(dir, "bad.yaml");
    writeFileSync(
      f,
      "name: bad-db\nlaunch:\n  imageId: ami-0abc0123456789def\n  instanceTypes: []\n  subnetIds: [subnet-0a0000000000000a1]\n",
    );
    const t = await run(["create", "-f", f, "--url", url]);
    expect(t.code).toBe(1);
    expect(t.stderr.trim()).toBe("spotkeep create: launch.instanceTypes: needs at least one instance type");
    expect(views.getInstance("bad-db")).toBeNull();
  });
  it("a missing -f is a usage error (exit 2)", async () => {
    const t = await run(["create", "--url", url]);
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/missing -f SPEC/);
  });
});

describe("failures are one clear line and a non-zero exit", () => {
  it("unreachable coordinator", async () => {
    const port = await closedPort();
    const t = await run(["status", "--url", `http://127.0.0.1:${port}`]);
    expect(t.code).toBe(1);
    expect(t.stderr.trim()).toBe(`spotkeep status: cannot reach the coordinator at http://127.0.0.1:${port} (ECONNREFUSED)`);
  });
  it("bad token", async () => {
    const t = await run(["status", "--url", url, "--token", "wrong-token"]);
    expect(t.code).toBe(1);
    expect(t.stderr.trim()).toBe("spotkeep status: the coordinator refused the admin token: the bearer token is not valid");
  });
  it("unknown name", async () => {
    const t = await run(["describe", "nope", "--url", url]);
    expect(t.code).toBe(1);
    expect(t.stderr.trim()).toBe('spotkeep describe: no stateful instance named "nope"');
  });
  it("no token anywhere", async () => {
    const t = await run(["status", "--url", url], { SPOTKEEP_DATA_DIR: join(dir, "empty") });
    expect(t.code).toBe(1);
    expect(t.stderr).toMatch(/no admin token/);
  });
});
