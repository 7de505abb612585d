/**
 * `spotkeep delete` and `status --all` through the real built CLI against the real API server over
 * a fake coordinator: keep, TTL and --force reach the coordinator as given, bad ones are refused locally by
 * flag name (nothing sent), and --all asks for deleted instances.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { KeepSet } from "../../shared/deletion.js";
import { createApiServer, type ApiServer } from "../../coordinator/api/server.js";
import { loadOrCreateAdminToken } from "../../coordinator/api/token.js";
import { FakeViews } from "../api/fake-views.js";
import { unusedGroups } from "../../coordinator/api/unused-deps.js";
import { CLI as cli, ensureBuilt } from "./built.js";

class DeletingViews extends FakeViews {
  deletes: Array<{ name: string; keep: KeepSet; ttlHours: number | null; force?: boolean }> = [];
  listed: Array<boolean | undefined> = [];
  override listInstances(o?: { includeDeleted?: boolean }) {
    this.listed.push(o?.includeDeleted);
    return super.listInstances().filter((i) => o?.includeDeleted || i.state !== "deleted");
  }
  override async deleteInstance(name: string, o: { keep: KeepSet; ttlHours: number | null; force?: boolean }) {
    this.deletes.push({ name, ...o });
    return { workflowId: "wf-delete-1", archivedAs: `${name}~2026-01-01T00:00:00.000Z` };
  }
}

let api: ApiServer;
let url: string;
let dir: string;
let views: DeletingViews;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], {
      env: { ...process.env, SPOTKEEP_URL: "", SPOTKEEP_TOKEN: "", SPOTKEEP_DATA_DIR: dir },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-cli-"));
  const token = loadOrCreateAdminToken(dir);
  views = new DeletingViews();
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

describe("spotkeep delete", () => {
  it("sends --keep and --ttl to the coordinator and prints the workflow (--json too)", async () => {
    const t = await run(["delete", "orders-db", "--keep", "volumes,network", "--ttl", "72", "--json", "--url", url]);
    expect(t.stderr).toBe("");
    expect(t.code).toBe(0);
    expect(JSON.parse(t.stdout)).toEqual({
      name: "orders-db",
      workflowId: "wf-delete-1",
      archivedAs: "orders-db~2026-01-01T00:00:00.000Z",
    });
    expect(views.deletes.at(-1)).toEqual({
      name: "orders-db",
      keep: { volumes: true, network: true, snapshots: false, images: false },
      ttlHours: 72,
    });
    const plain = await run(["delete", "orders-db", "--url", url]);
    expect(plain.stdout).toContain("deleting orders-db (workflow wf-delete-1, keep: nothing)");
    expect(views.deletes.at(-1)).toMatchObject({
      keep: { volumes: false, network: false, snapshots: false, images: false },
      ttlHours: null,
    });
  });

  it("sends --force as force: true; without it no force is sent", async () => {
    const forced = await run(["delete", "orders-db", "--force", "--keep", "volumes", "--url", url]);
    expect(forced.stderr).toBe("");
    expect(forced.code).toBe(0);
    expect(views.deletes.at(-1)).toEqual({
      name: "orders-db",
      keep: { volumes: true, network: false, snapshots: false, images: false },
      ttlHours: null,
      force: true,
    });
    await run(["delete", "orders-db", "--url", url]);
    expect(views.deletes.at(-1)).not.toHaveProperty("force");
  });

  it("refuses a bad --keep item, a bad --ttl and --ttl without --keep locally, sending nothing", async () => {
    const before = views.deletes.length;
    const bad = await run(["delete", "orders-db", "--keep", "volumes,disks", "--url", url]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--keep: unknown item "disks" (allowed: volumes, network, snapshots, images)');
    const ttl = await run(["delete", "orders-db", "--keep", "volumes", "--ttl", "soon", "--url", url]);
    expect(ttl.code).not.toBe(0);
    expect(ttl.stderr).toContain('--ttl: "soon" is not a number of hours');
    const lone = await run(["delete", "orders-db", "--ttl", "5", "--url", url]);
    expect(lone.code).toBe(2);
    expect(lone.stderr).toContain("--ttl needs --keep");
    expect(views.deletes.length).toBe(before);
  });

  it("an unknown name is one clear line", async () => {
    const t = await run(["delete", "nope", "--url", url]);
    expect(t.code).toBe(1);
    expect(t.stderr.trim()).toBe('spotkeep delete: no stateful instance named "nope"');
  });
});

describe("spotkeep status --all", () => {
  it("asks for deleted instances too; without --all it does not", async () => {
    await run(["status", "--all", "--url", url]);
    await run(["status", "--url", url]);
    expect(views.listed.slice(-2)).toEqual([true, false]);
  });

  it("shows a deleted instance's state alone and what its delete kept in a section of its own", async () => {
    const live = views.getInstance("orders-db")!;
    const archived = "old-db~2026-01-01T00:00:00.000Z";
    const reason = "deleted; kept vol-0aaaaaaaaaaaaaaa1, eni-0bbbbbbbbbbbbbbb2 (expire at 2026-01-04T00:00:00.000Z)";
    views.instances.set(archived, {
      ...live,
      name: archived,
      state: "deleted",
      stateReason: reason,
      generation: 1,
      instanceId: null,
      lifecycle: null,
      privateIp: null,
      lastDowntimeSeconds: null,
      health: null,
      kept: [
        { resourceId: "eni-0bbbbbbbbbbbbbbb2", kind: "network-interface", expiresAt: "2026-01-04T00:00:00.000Z", gone: false },
        { resourceId: "vol-0aaaaaaaaaaaaaaa1", kind: "volume", expiresAt: null, gone: true },
      ],
    });
    try {
      const t = await run(["status", "--all", "--url", url]);
      expect(t.stderr).toBe("");
      expect(t.code).toBe(0);
      const [table, section] = t.stdout.split("\nKEPT BY DELETE\n");
      const row = table!.split("\n").find((l) => l.startsWith(archived))!;
      // The STATE column holds the state only: the row's cells stay under their headings.
      expect(row).toMatch(/^old-db~2026-01-01T00:00:00\.000Z\s+deleted\s+1\s+-\s+m6i\.large\s+us-east-1a\s+-\s+-\s+-\s+-$/);
      expect(table).not.toContain("vol-0aaaaaaaaaaaaaaa1");
      expect(section!.split("\n").filter(Boolean)).toEqual([
        expect.stringMatching(/^NAME\s+KIND\s+RESOURCE\s+EXPIRES$/),
        expect.stringMatching(/^old-db~2026-01-01T00:00:00\.000Z\s+network-interface\s+eni-0bbbbbbbbbbbbbbb2\s+2026-01-04T00:00:00\.000Z$/),
        expect.stringMatching(/^old-db~2026-01-01T00:00:00\.000Z\s+volume\s+vol-0aaaaaaaaaaaaaaa1\s+deleted$/),
      ]);
      // Without --all neither the deleted instance nor the section appears.
      const plain = await run(["status", "--url", url]);
      expect(plain.stdout).not.toContain("KEPT BY DELETE");
    } finally {
      views.instances.delete(archived);
    }
  });
});
