/**
 * The coordinator on the PostgreSQL store (store.url), end to end on localcloud with the real agent:
 * a create and a replacement complete, a second coordinator started later on the same database
 * (another data directory) sees everything, and the data directory points backups at pg_dump.
 * Bad store settings are refused at start with the field named, an unreachable server within the
 * connect timeout with host:port and the driver's reason.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupStore, restoreBackup, STORE_FILE } from "../../coordinator/db/backup.js";
import { startCoordinator, type Coordinator } from "../../coordinator/service.js";
import { parseSpec } from "../../shared/spec.js";
import { type PostgresServer, postgresUnavailable, startPostgres } from "../support/pg-server.js";
import { coordinatorConfig, ensureAgentBundle, inProcessCoordinator, liveInstances, startEnv, until, type Env } from "./harness.js";

const SCALE = 0.03;
const why = postgresUnavailable();

describe.skipIf(why !== null)(`coordinator on the PostgreSQL store${why ? ` (skipped: ${why})` : ""}`, () => {
  let dir: string;
  let env: Env;
  let pg: PostgresServer;
  let url: string;
  const coords: Coordinator[] = [];

  beforeAll(async () => {
    ensureAgentBundle();
    dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-pgstore-"));
    pg = await startPostgres();
    url = pg.createDatabase("coordinator");
    env = await startEnv(dir, SCALE);
  });
  afterAll(async () => {
    for (const c of coords.splice(0)) await c.stop().catch(() => undefined);
    await env?.stop();
    pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("creates and replaces an instance; a coordinator started later on the same database sees it all", { timeout: 240_000 }, async () => {
    const first = await inProcessCoordinator(env, join(dir, "coord-a"), SCALE, { store: { url } });
    coords.push(first);
    const { workflowId } = await first.views.createInstance(parseSpec(env.spec("pg-db", { workload: false })));
    expect((await first.engine.wait(workflowId)).status).toBe("succeeded");
    const before = (await first.views.getInstance("pg-db"))!;
    expect(before.state).toBe("running");
    await env.control("POST", `instances/${before.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await until("a replace workflow", async () =>
      (await first.store.workflows.listFor("pg-db")).find((w) => w.kind === "replace"),
    );
    const done = await first.engine.wait(wf.id);
    expect(done.error).toBeNull();
    expect(done.status).toBe("succeeded");
    const after = (await first.views.getInstance("pg-db"))!;
    expect(after.generation).toBe(2);
    expect(after.privateIp).toBe(before.privateIp);
    expect((await liveInstances(env, "pg-db")).map((i) => i.instanceId)).toEqual([after.instanceId]);
    const steps = await first.store.steps.list(wf.id);
    expect(steps.length).toBeGreaterThan(5);
    expect(steps.every((s) => s.status === "done")).toBe(true);
    await first.stop();
    coords.splice(coords.indexOf(first), 1);

    // Another coordinator (another data directory) on the same database: the same state.
    const second = await inProcessCoordinator(env, join(dir, "coord-b"), SCALE, { store: { url } });
    coords.push(second);
    const seen = (await second.views.getInstance("pg-db"))!;
    expect(seen).toMatchObject({ state: "running", generation: 2, instanceId: after.instanceId, privateIp: before.privateIp });
    expect((await second.store.workflows.get(wf.id))?.status).toBe("succeeded");
    expect(await second.store.steps.list(wf.id)).toEqual(steps);

    // Backups of this data directory are PostgreSQL's business.
    await expect(backupStore(join(dir, "coord-b", STORE_FILE), join(dir, "backup.sqlite"))).rejects.toThrow(
      /PostgreSQL \(127\.0\.0\.1:\d+\/coordinator\).*pg_dump/,
    );
    expect(() => restoreBackup(join(dir, "coord-b"), join(dir, "backup.sqlite"))).toThrow(/pg_restore/);
  });

  it("answers 503 while the database is down and serves again when it is back, without a restart", { timeout: 120_000 }, async () => {
    const coord = await inProcessCoordinator(env, join(dir, "coord-c"), SCALE, { store: { url, connectTimeoutSeconds: 2 } });
    coords.push(coord);
    const list = () => fetch(`${coord.url}/api/v1/instances`, { headers: { authorization: `Bearer ${coord.adminToken}` } });
    const before = await list();
    expect(before.status).toBe(200);
    const names = ((await before.json()) as { instances: { name: string }[] }).instances.map((i) => i.name);
    pg.halt();
    try {
      const res = await list();
      expect(res.status).toBe(503);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("storage-unavailable");
      expect(body.error.message).toMatch(/PostgreSQL/);
      // Long enough for several passes of the schedule (lost sweep, health, tasks) to meet the outage.
      await new Promise((r) => setTimeout(r, 2000));
      expect((await list()).status).toBe(503);
    } finally {
      pg.start();
    }
    const back = await until("the API to serve again", async () => {
      const r = await list();
      return r.status === 200 ? ((await r.json()) as { instances: { name: string }[] }) : undefined;
    });
    expect(back.instances.map((i) => i.name)).toEqual(names);
  });

  it("refuses a non-PostgreSQL URL and --accept-restored-store with the store named", async () => {
    const base = coordinatorConfig(env, join(dir, "coord-bad"), SCALE);
    await expect(startCoordinator({ config: { ...base, store: { url: "mysql://db/spotkeep" } } })).rejects.toThrow(
      /store\.url: must be a postgres:\/\/ or postgresql:\/\/ URL/,
    );
    await expect(startCoordinator({ config: { ...base, store: { url, extra: 1 } as never } })).rejects.toThrow(/store/);
    await expect(startCoordinator({ config: { ...base, store: { url } }, acceptRestoredStore: true })).rejects.toThrow(
      /--accept-restored-store applies to the SQLite store.*pg_restore/,
    );
  });

  it("an unreachable server fails the start within the connect timeout, naming host:port and the reason", async () => {
    const base = coordinatorConfig(env, join(dir, "coord-down"), SCALE);
    // A port nothing listens on (the throwaway server's port + 1 is not guaranteed free: use a closed one).
    const closed = `postgres://spotkeep@127.0.0.1:1/spotkeep`;
    const t0 = Date.now();
    await expect(startCoordinator({ config: { ...base, store: { url: closed, connectTimeoutSeconds: 2 } } })).rejects.toThrow(
      /cannot connect to 127\.0\.0\.1:1\/spotkeep: .*ECONNREFUSED/,
    );
    // A server that accepts the connection and never answers: the connect timeout ends the wait.
    const silent = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as AddressInfo).port;
    try {
      await expect(
        startCoordinator({
          config: { ...base, store: { url: `postgres://spotkeep@127.0.0.1:${port}/spotkeep`, connectTimeoutSeconds: 1 } },
        }),
      ).rejects.toThrow(new RegExp(`cannot connect to 127\\.0\\.0\\.1:${port}/spotkeep: .*timeout`, "i"));
    } finally {
      silent.close();
    }
    expect(Date.now() - t0).toBeLessThan(20_000);
  });
});
