import { describe, it, expect, afterEach } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStore } from "./db/sqlite/index.js";
import type { StatefulInstanceSpec } from "../shared/spec.js";
import type { StepRecord } from "./db/store.js";
import { Views, criticalPath } from "./views.js";

const row = (seq: number, name: string, start: number, end: number): StepRecord => ({
  workflowId: "w",
  seq,
  name,
  status: "done",
  attempts: 1,
  nextAttemptAt: null,
  result: null,
  failure: null,
  startedAt: start,
  endedAt: end,
});
let dir: string | undefined;
afterEach(() => dir && rmSync(dir, { recursive: true, force: true }));

describe("timeline read model", () => {
  it("follows the longest branch of parallel steps on the critical path", () => {
    const steps = [
      row(1, "quiesce", 0, 10),
      row(2, "terminate-old", 10, 11),
      row(3, "wait-old-terminated", 11, 40),
      row(4, "image", 11, 30),
      row(5, "launch", 40, 42),
      row(6, "restore", 42, 60),
    ];
    expect(criticalPath(steps)).toEqual(["quiesce", "terminate-old", "wait-old-terminated", "launch", "restore"]);
  });

  it("computes downtime from quiesce start and recovery from the notice, in model seconds", async () => {
    dir = mkdtempSync(join(tmpdir(), "spotkeep-views-"));
    let now = 1_000_000;
    const store = SqliteStore.open(join(dir, "db.sqlite"), () => now);
    try {
      await store.instances.insert("db", { name: "db" } as StatefulInstanceSpec, "running");
      await store.workflows.insert({
        id: "wf-1",
        kind: "replace",
        instance: "db",
        input: { trigger: "spot-interruption" },
        trigger: "spot-interruption",
      });
      now += 100; // the quiesce command goes out 100 ms after the notice
      await store.steps.start("wf-1", 1, "quiesce");
      now += 400;
      await store.steps.complete("wf-1", 1, { clean: true });
      await store.steps.start("wf-1", 2, "restore");
      now += 1500;
      await store.steps.complete("wf-1", 2, null);
      const wf = await store.workflows.get("wf-1");
      if (!wf) throw new Error("workflow not recorded");
      const t = await new Views(store, 0.1).timeline(wf); // real = model × 0.1
      expect(t.downtimeSeconds).toBe(19); // (2000 - 100) ms real / 0.1
      expect(t.downtimeFrom).toBe(new Date(1_000_100).toISOString());
      expect(t.recoverySeconds).toBe(20);
      expect(t.steps.map((s) => s.durationMs)).toEqual([4000, 15000]);
      expect(t.criticalPath).toEqual(["quiesce", "restore"]);
    } finally {
      await store.close();
    }
  });

  it("a make-before-break's downtime begins at its cutover quiesce, not at the workflow's start", async () => {
    dir = mkdtempSync(join(tmpdir(), "spotkeep-views-"));
    let now = 1_000_000;
    const store = SqliteStore.open(join(dir, "db.sqlite"), () => now);
    try {
      await store.instances.insert("db", { name: "db" } as StatefulInstanceSpec, "running");
      await store.workflows.insert({ id: "wf-2", kind: "replace", instance: "db", input: { trigger: "recycle" }, trigger: "recycle" });
      await store.steps.start("wf-2", 1, "mbb-launch");
      now += 5000; // the replacement boots while the old instance serves
      await store.steps.complete("wf-2", 1, null);
      await store.steps.start("wf-2", 2, "cutover-quiesce");
      now += 300;
      await store.steps.complete("wf-2", 2, null);
      await store.steps.start("wf-2", 3, "restore");
      now += 700;
      await store.steps.complete("wf-2", 3, null);
      const wf = await store.workflows.get("wf-2");
      if (!wf) throw new Error("workflow not recorded");
      const t = await new Views(store, 1).timeline(wf);
      expect(t.downtimeFrom).toBe(new Date(1_005_000).toISOString());
      expect(t.downtimeSeconds).toBe(1);
      expect(t.recoverySeconds).toBe(6);
    } finally {
      await store.close();
    }
  });
});
