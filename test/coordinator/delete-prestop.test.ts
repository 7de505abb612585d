/**
 * The preStop hook on delete, with the real agent and a real workload (localcloud's process
 * runtime, time-scaled): deleting a running instance runs its preStop hook before the instance is
 * terminated, so what the hook does is on the data volume the delete keeps (the workload stopped
 * by the hook, every acknowledged record there, and a file the hook writes); `force` terminates
 * it without the hook, and the file is not there. The decisions around it (the quiesce step, the
 * budget for an agent that does not answer, the API and CLI flag) are test/coordinator/delete.test.ts's.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KEEP_NOTHING } from "../../shared/deletion.js";
import { parseSpec } from "../../shared/spec.js";
import type { Coordinator } from "../../coordinator/service.js";
import type { ProcessRuntime } from "../../localcloud/runtime/process.js";
import { ensureAgentBundle, inProcessCoordinator, readAcks, readRecords, STOP_WRITER, startEnv, until, type Env } from "./harness.js";

const SCALE = 0.03;
/** Written by the hook after it stopped the workload, on the data volume mounted at /data. */
const MARKER = "prestop-ran";
let dir: string;
let env: Env;
let coord: Coordinator;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-delete-"));
  env = await startEnv(dir, SCALE);
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE);
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Create `name` with the writer workload and a preStop that stops it and then writes MARKER; delete it keeping its volume. */
async function createAndDelete(name: string, force: boolean): Promise<{ volume: string; acks: string; events: string[] }> {
  const acks = join(dir, `${name}.acks`);
  const spec = env.spec(name, { acks });
  spec.hooks = { preStop: `${STOP_WRITER}; echo "preStop ran" > "$R/data/${MARKER}"`, timeoutSeconds: 30 };
  const { workflowId } = await coord.views.createInstance(parseSpec(spec));
  expect((await coord.engine.wait(workflowId)).error).toBeNull();
  const before = (await coord.views.getInstance(name))!;
  const volume = before.resources.volumes[0]!.volumeId!;
  await until("the workload to acknowledge records", () => readAcks(acks).length > 20);

  const started = await coord.operations.deleteInstance(name, { keep: { ...KEEP_NOTHING, volumes: true }, ttlHours: null, force });
  const done = await coord.engine.wait(started.workflowId);
  expect(done.error).toBeNull();
  expect(done.status).toBe("succeeded");
  expect((await coord.views.getInstance(started.archivedAs))?.state).toBe("deleted");
  const events = (await coord.views.getEvents(started.archivedAs))!.events.map((e) => `${e.kind}: ${e.message}`);
  return { volume, acks, events };
}

const volumeDir = (volumeId: string) => (env.lc.runtime as ProcessRuntime).volumeDir(volumeId);

describe("delete runs the preStop hook", () => {
  it("of a running instance before terminating it: the hook's file and every acknowledged record are on the kept volume", async () => {
    const { volume, acks, events } = await createAndDelete("del-hook", false);
    expect(readFileSync(join(volumeDir(volume), MARKER), "utf8")).toBe("preStop ran\n");
    const acked = readAcks(acks);
    const records = readRecords(join(volumeDir(volume), "records.log"));
    expect(acked.length).toBeGreaterThan(20);
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
    expect(events.filter((e) => e.startsWith("quiesce-timeout"))).toEqual([]);
  }, 180_000);

  it("not with force: the instance is terminated without it", async () => {
    const { volume, events } = await createAndDelete("del-force", true);
    expect(existsSync(join(volumeDir(volume), "records.log"))).toBe(true);
    expect(existsSync(join(volumeDir(volume), MARKER))).toBe(false);
    expect(events.find((e) => e.startsWith("delete-started"))).toMatch(/forced: i-\w+ is terminated without its preStop hook/);
  }, 180_000);
});
