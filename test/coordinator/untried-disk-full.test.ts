/**
 * The coordinator's data directory fills up in the middle of each runbook (SQLite store on a small
 * tmpfs, root only). A ballast file fills the filesystem right after a chosen step is recorded:
 * store writes then fail with SQLITE_FULL. While full, the coordinator keeps answering reads and
 * refuses writes with 507; once the ballast is removed the workflow goes on from where it was and
 * finishes. At the end the database passes SQLite's integrity check and a restarted coordinator
 * opens it with every instance and workflow as it was. In process: localcloud with no runtime,
 * in-process agents.
 */
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqlite } from "../../coordinator/db/sqlite/driver.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkflowRecord } from "../../coordinator/db/store.js";
import { type Coordinator, startCoordinator } from "../../coordinator/service.js";
import { watchAgents } from "./fake-agent.js";
import { coordinatorConfig, type Env, ensureAgentBundle, startEnv, until } from "./harness.js";

const root = process.getuid?.() === 0;
const MOUNT_PREFIX = "spotkeep-diskfull-";
if (!root) console.log("test/coordinator/untried-disk-full: skipped (mounting a tmpfs needs root)");

let dir: string;
let mnt: string;
let dataDir: string;
let env: Env;
let coord: Coordinator;
let agents: ReturnType<typeof watchAgents> | undefined;
/** The step after which the disk fills, armed by each case. */
let fillAfter: { kind: string; seq: number; at?: string } | null = null;
const ballast = () => join(mnt, "ballast");

/** Unmount and remove tmpfs mounts a killed earlier run left behind. */
function reapMounts(): void {
  for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n")) {
    const target = line.split(" ")[1] ?? "";
    if (target.startsWith(join(tmpdir(), MOUNT_PREFIX))) {
      execFileSync("umount", ["-l", target]);
      rmSync(target, { recursive: true, force: true });
    }
  }
}

/** Write the ballast until the filesystem is full. */
function fillDisk(): void {
  const fd = openSync(ballast(), "w");
  try {
    const chunk = Buffer.alloc(64 * 1024, 1);
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    closeSync(fd);
  }
}

async function start(): Promise<Coordinator> {
  return startCoordinator(
    {
      config: coordinatorConfig(env, dataDir, 1, { lostCheckIntervalMs: 60_000 }),
      log: process.env.SPOTKEEP_TEST_LOG ? (l) => console.log(l) : undefined,
    },
    {
      afterStep: (wf, seq, name) => {
        if (fillAfter && wf.kind === fillAfter.kind && seq === fillAfter.seq && !fillAfter.at) {
          fillAfter.at = `${wf.kind} step ${seq} (${name})`;
          fillDisk();
        }
      },
    },
  );
}

beforeAll(async () => {
  if (!root) return;
  reapMounts();
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-diskfull-env-"));
  mnt = mkdtempSync(join(tmpdir(), MOUNT_PREFIX));
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt]);
  dataDir = join(mnt, "coord");
  env = await startEnv(dir, 1, { runtime: "none", profile: "instant" });
  coord = await start();
  agents = watchAgents(env, coord);
}, 120_000);

afterAll(async () => {
  await agents?.stop();
  await coord?.stop().catch(() => undefined);
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (root) reapMounts();
});

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${coord.url}/api/v1/${path}`, {
    method,
    headers: { authorization: `Bearer ${coord.adminToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

const NAME = "full-db";

/**
 * Arms the ballast for step `seq` of `kind`, starts the operation, and checks the coordinator while
 * the disk is full: reads answered, a write refused with 507 naming the disk, the workflow not
 * finished. Then frees the space: the workflow must succeed.
 */
async function throughFullDisk(kind: string, seq: number, startIt: () => Promise<{ status: number; body: any }>): Promise<WorkflowRecord> {
  fillAfter = { kind, seq };
  let id = "";
  try {
    const r = await startIt();
    expect({ accepted: r.status === 201 || r.status === 202, error: r.body.error?.message }).toEqual({ accepted: true, error: undefined });
    id = r.body.workflowId;
    await until(`${kind} step ${seq} to be recorded and the disk filled`, () => fillAfter?.at, 60_000);
    // Reads keep being served.
    const read = await api("GET", `instances/${NAME}`);
    expect({ status: read.status, error: read.body.error }).toEqual({ status: 200, error: undefined });
    expect((await api("GET", "instances")).status).toBe(200);
    // A write is refused, clearly, and leaves nothing behind.
    const refused = await api("POST", "instances", env.spec("never-created", { volumes: 1, root: false, workload: false }));
    expect({ status: refused.status, code: refused.body.error?.code }).toEqual({ status: 507, code: "insufficient-storage" });
    expect(refused.body.error.message).toMatch(/out of disk space/);
    // Give the workflow time to run into the full disk.
    await new Promise((res) => setTimeout(res, 1500));
    expect((await coord.store.workflows.get(id))?.status).toBe("running");
  } finally {
    fillAfter = null;
    rmSync(ballast(), { force: true });
  }
  const wf = await Promise.race([
    coord.engine.wait(id),
    new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`${kind} ${id} did not finish after space returned`)), 90_000)),
  ]);
  expect({ kind: wf.kind, status: wf.status, error: wf.error }).toEqual({ kind, status: "succeeded", error: null });
  expect((await api("GET", "instances/never-created")).status).toBe(404);
  return wf;
}

describe.skipIf(!root)("a full disk under the coordinator's data directory during each runbook (24 MiB tmpfs)", () => {
  it("create: the disk fills after step 3; reads served, writes refused with 507; the create finishes once space returns", async () => {
    await throughFullDisk("create", 3, () => api("POST", "instances", env.spec(NAME, { volumes: 1, root: false, workload: false })));
    expect((await coord.views.getInstance(NAME))?.state).toBe("running");
  }, 180_000);

  it("snapshot: the disk fills after step 1; it finishes once space returns", async () => {
    await throughFullDisk("snapshot", 1, () => api("POST", `instances/${NAME}/snapshot`));
  }, 180_000);

  it("recycle (the replace runbook): the disk fills after step 4; the new generation serves once space returns", async () => {
    const before = (await coord.views.getInstance(NAME))!;
    await throughFullDisk("recycle", 4, () => api("POST", `instances/${NAME}/recycle`));
    const after = (await coord.views.getInstance(NAME))!;
    expect(after.state).toBe("running");
    expect(after.generation).toBe(before.generation + 1);
    expect(after.resources.volumes[0]!.volumeId).toBe(before.resources.volumes[0]!.volumeId);
  }, 180_000);

  it("pause and resume: the disk fills after step 2 of each; both finish once space returns", async () => {
    await throughFullDisk("pause", 2, () => api("POST", `instances/${NAME}/pause`));
    expect((await coord.views.getInstance(NAME))?.state).toBe("paused");
    await throughFullDisk("resume", 2, () => api("POST", `instances/${NAME}/resume`));
    expect((await coord.views.getInstance(NAME))?.state).toBe("running");
  }, 240_000);

  it("delete: the disk fills after step 2; it finishes once space returns", async () => {
    await throughFullDisk("delete", 2, () => api("DELETE", `instances/${NAME}`));
    expect((await api("GET", `instances/${NAME}`)).status).toBe(404);
  }, 180_000);

  it("afterwards the database is intact and a restarted coordinator opens it with every workflow as recorded", async () => {
    await coord.stop();
    const db = openSqlite(join(dataDir, "coordinator.sqlite"), { readonly: true });
    try {
      expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
      const rows = db.prepare("SELECT kind, status FROM workflows ORDER BY rowid").all();
      expect(rows).toEqual(["create", "snapshot", "recycle", "pause", "resume", "delete"].map((kind) => ({ kind, status: "succeeded" })));
    } finally {
      db.close();
    }
    coord = await start();
    expect((await api("GET", "instances?all=true")).status).toBe(200);
  }, 120_000);
});
