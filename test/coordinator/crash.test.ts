/**
 * Crash test: the coordinator process is SIGKILLed right after step n of the replace runbook is
 * recorded (SPOTKEEP_CRASH_AFTER_STEP=n), for every n in turn, then restarted. Every run must end
 * with exactly one live generation, no duplicate instance, no orphaned or deleted data volume and
 * every acknowledged record intact.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  OWNER_ENV,
  coordinatorConfig,
  ensureAgentBundle,
  liveInstances,
  readAcks,
  readRecords,
  ROOT,
  startEnv,
  until,
  type Env,
} from "./harness.js";

const SCALE = 0.03;
/** begin, quiesce, snapshot-root, terminate-old, wait-old-terminated, image, subnets, launch, wait-running, attach, restore, finish, retention */
const STEPS = (process.env.SPOTKEEP_CRASH_STEPS ?? "1,2,3,4,5,6,7,8,9,10,11,12,13").split(",").map(Number);
const TOKEN = "test-admin-token-0123456789";

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
    s.on("error", reject);
  });
}

interface Slot {
  port: number;
  cfgFile: string;
}

/** Each case gets its own coordinator (port, data dir) so cases can run side by side. */
async function slot(n: number): Promise<Slot> {
  const port = await freePort();
  const cfgFile = join(dir, `coordinator-${n}.json`);
  writeFileSync(
    cfgFile,
    JSON.stringify(coordinatorConfig(env, join(dir, `coord-${n}`), SCALE, { listen: `127.0.0.1:${port}`, lostCheckIntervalMs: 3000 })),
  );
  return { port, cfgFile };
}

async function startCoordinatorProcess(
  { cfgFile }: Slot,
  crashAfter?: number,
): Promise<{ child: ChildProcess; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>; log: string[] }> {
  const log: string[] = [];
  const child = spawn(process.execPath, [join(ROOT, "bin", "spotkeep.js"), "coordinator", "--config", cfgFile], {
    env: {
      ...process.env,
      [OWNER_ENV]: dir,
      ...(crashAfter ? { SPOTKEEP_CRASH_AFTER_STEP: String(crashAfter) } : { SPOTKEEP_CRASH_AFTER_STEP: "" }),
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  children.add(child);
  child.stdout!.on("data", (d) => log.push(String(d)));
  child.stderr!.on("data", (d) => log.push(String(d)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on("exit", (code, signal) => {
      children.delete(child);
      r({ code, signal });
    }),
  );
  await until("the coordinator to listen", () => log.join("").includes("coordinator listening on"), 30_000);
  return { child, exited, log };
}

const api = async ({ port }: Slot, method: string, path: string, body?: unknown) => {
  const res = await fetch(`http://127.0.0.1:${port}/api/v1/${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json as any;
};

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-"));
  env = await startEnv(dir, SCALE);
});
afterAll(async () => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe.concurrent("coordinator crash at every step boundary of the replace runbook", () => {
  it.each(STEPS)(
    "SIGKILL after step %i: resumes to exactly one live generation with the data intact",
    async (n) => {
      const name = `crash-${n}`;
      const acks = join(dir, `${name}.acks`);
      const s = await slot(n);
      const first = await startCoordinatorProcess(s, n);
      try {
        await api(s, "POST", "instances", env.spec(name, { acks }));
        const created = await until("the instance to be running", async () => {
          const d = await api(s, "GET", `instances/${name}`);
          if (d.state === "failed") throw new Error(`create failed: ${d.stateReason}`);
          return d.state === "running" ? d : null;
        });
        await until("records to be acknowledged", () => readAcks(acks).length > 10);
        await env.control("POST", `instances/${created.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
        const how = await Promise.race([
          first.exited,
          first.exited.then(() => null),
          new Promise((r) => setTimeout(() => r("no-crash"), 60_000)),
        ]);
        expect(how, first.log.join("")).toMatchObject({ signal: "SIGKILL" });

        const second = await startCoordinatorProcess(s);
        try {
          const after = await until(
            "the replacement to be running",
            async () => {
              const d = await api(s, "GET", `instances/${name}`);
              if (d.state === "failed") throw new Error(`replace failed: ${d.stateReason}\n${second.log.join("")}`);
              return d.state === "running" && d.generation === 2 ? d : null;
            },
            45_000,
          );
          // One live generation; no duplicate launch for generation 2.
          const live = await liveInstances(env, name);
          expect(live.map((i) => i.instanceId)).toEqual([after.instanceId]);
          const gen2 = await env.ec2.findInstances({ "spotkeep:instance": name, "spotkeep:generation": "2" });
          expect(gen2.map((i) => i.instanceId)).toEqual([after.instanceId]);
          // The data volume is the same one, attached to the replacement; no extra data volume.
          expect(after.resources.volumes[0].volumeId).toBe(created.resources.volumes[0].volumeId);
          const vol = await env.ec2.describeVolume(after.resources.volumes[0].volumeId);
          expect(vol?.attachments.map((a) => a.instanceId)).toEqual([after.instanceId]);
          const dataVols = [...env.lc.world.volumes.values()].filter(
            (v) => v.tags.get("spotkeep:instance") === name && v.tags.has("spotkeep:device") && v.state !== "deleted",
          );
          expect(dataVols.map((v) => v.id)).toEqual([after.resources.volumes[0].volumeId]);
          // Every acknowledged record survived.
          const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
          const records = readRecords(join(env.rootDir(after.instanceId), "data", "records.log"));
          expect(acked.filter((x) => !records.has(x))).toEqual([]);
        } finally {
          second.child.kill("SIGTERM");
          await second.exited;
        }
      } finally {
        if (first.child.exitCode === null && first.child.signalCode === null) {
          first.child.kill("SIGKILL");
          await first.exited;
        }
      }
    },
    120_000,
  );
});
