import { describe, it, expect, afterEach } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store, type StepRow } from "./queries.js";
import { Views, criticalPath } from "./views.js";

const row = (seq: number, name: string, start: number, end: number): StepRow => ({
  workflow_id: "w",
  seq,
  name,
  status: "done",
  attempts: 1,
  next_attempt_at: null,
  result: null,
  error: null,
  started_at: start,
  ended_at: end,
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

  it("computes downtime from quiesce start and recovery from the notice, in model seconds", () => {
    dir = mkdtempSync(join(tmpdir(), "spotkeep-views-"));
    let now = 1_000_000;
    const store = new Store(join(dir, "db.sqlite"), () => now);
    try {
      store.insertInstance("db", { name: "db" }, "running");
      store.insertWorkflow({
        id: "wf-1",
        kind: "replace",
        instance: "db",
        input: { trigger: "spot-interruption" },
        trigger: "spot-interruption",
      });
      now += 100; // the quiesce command goes out 100 ms after the notice
      store.startStep("wf-1", 1, "quiesce");
      now += 400;
      store.completeStep("wf-1", 1, { clean: true });
      store.startStep("wf-1", 2, "restore");
      now += 1500;
      store.completeStep("wf-1", 2, null);
      const t = new Views(store, 0.1).timeline(store.getWorkflow("wf-1")!); // real = model × 0.1
      expect(t.downtimeSeconds).toBe(19); // (2000 - 100) ms real / 0.1
      expect(t.recoverySeconds).toBe(20);
      expect(t.steps.map((s) => s.durationMs)).toEqual([4000, 15000]);
      expect(t.criticalPath).toEqual(["quiesce", "restore"]);
    } finally {
      store.close();
    }
  });
});
