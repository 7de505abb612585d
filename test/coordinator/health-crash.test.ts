/**
 * Autohealing across a coordinator crash: a hung instance's autohealing recycle, the coordinator
 * process SIGKILLed right after a step of it is recorded, then restarted. The recycle resumes and
 * ends with the next generation running (same volume and ENI, every acknowledged record), and the
 * restarted coordinator, which has forgotten what it observed, starts no second recycle.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminApi, coordinatorSlot, killAll, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import { type Env, ensureAgentBundle, liveInstances, readAcks, readRecords, startEnv, until } from "./harness.js";

const SCALE = 0.03;
// begin (1), quiesce (2, skipped: the agent is hung), terminate-old (4), launch (9).
const STEPS = [1, 2, 4, 9];

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();
const api = (s: Slot, method: string, path: string, body?: unknown) => adminApi(`http://127.0.0.1:${s.port}`).ok(method, path, body);

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-health-"));
  env = await startEnv(dir, SCALE);
});
afterAll(async () => {
  killAll(children);
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.concurrent("coordinator crash during an autohealing recycle", () => {
  it.each(STEPS)(
    "SIGKILL after recycle step %i: resumes to the next generation, one recycle, the data intact",
    async (n) => {
      const name = `crash-heal-${n}`;
      const acks = join(dir, `${name}.acks`);
      const s = await coordinatorSlot(env, dir, `heal-${n}`, SCALE);
      let current = await startCoordinatorCli(s, { ownerDir: dir, children, firstStart: true });
      const log = () => current.log.join("");
      try {
        await api(s, "POST", "instances", {
          ...env.spec(name, { acks }),
          health: { type: "agent", gracePeriodSeconds: 0, unhealthyDurationSeconds: 20 },
        });
        const created = await until(
          `${name} to run`,
          async () => {
            const d = await api(s, "GET", `instances/${name}`);
            return d.state === "running" ? d : null;
          },
          45_000,
        );
        await until("records to be acknowledged", () => readAcks(acks).length > 10);
        // Restart armed for this step of a recycle, then hang the instance.
        current.child.kill("SIGTERM");
        await current.exited;
        current = await startCoordinatorCli(s, { ownerDir: dir, children, crash: { kind: "recycle", n } });
        await env.control("POST", `instances/${created.instanceId}/hang`, {});
        const how = await Promise.race([current.exited, new Promise((r) => setTimeout(() => r("no-crash"), 60_000))]);
        expect(how, log()).toMatchObject({ signal: "SIGKILL" });

        current = await startCoordinatorCli(s, { ownerDir: dir, children });
        const after = await until(
          `${name} to run generation 2`,
          async () => {
            const d = await api(s, "GET", `instances/${name}`);
            if (d.state === "failed") throw new Error(`${name} failed: ${d.stateReason}\n${log()}`);
            return d.state === "running" && d.generation === 2 ? d : null;
          },
          60_000,
        );
        expect(after.resources.volumes[0].volumeId).toBe(created.resources.volumes[0].volumeId);
        expect(after.resources.network.eniId).toBe(created.resources.network.eniId);
        expect(after.privateIp).toBe(created.privateIp);
        expect((await liveInstances(env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
        const records = readRecords(join(env.rootDir(after.instanceId), "data", "records.log"));
        expect(readAcks(acks).filter((x) => !records.has(x))).toEqual([]);
        // A few more passes of the restarted coordinator: the new generation is healthy and nothing else starts.
        await until(
          "the new generation to be healthy",
          async () => (await api(s, "GET", `instances/${name}`)).health?.status === "healthy",
        );
        const events = (await api(s, "GET", `instances/${name}/events`)) as { events: Array<{ kind: string }> };
        expect(events.events.filter((e) => e.kind === "autohealing")).toHaveLength(1);
        expect((await api(s, "GET", `instances/${name}`)).generation).toBe(2);
      } finally {
        if (current.child.exitCode === null && current.child.signalCode === null) {
          current.child.kill("SIGKILL");
          await current.exited;
        }
      }
    },
    180_000,
  );
});
