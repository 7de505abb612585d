import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeClock, scaledClock } from "../../shared/clock.js";
import { SqliteStore } from "../db/sqlite/index.js";
import { type EngineOptions, type Runbook, type Runbooks, type StepInfo, step, WorkflowEngine } from "./engine.js";
import { Failure, failureKind } from "./failure.js";

let dir: string;
let clock: FakeClock;
const stores: SqliteStore[] = [];
const engines: Array<{ stop(): Promise<void> }> = [];

function open<K extends object>(runbooks: Runbooks<K>, extra: Partial<EngineOptions<K>> = {}) {
  // The fake clock settles with microtasks: commit each group of store calls on one.
  const store = SqliteStore.open(join(dir, "db.sqlite"), () => clock.now(), { commitOn: queueMicrotask });
  stores.push(store);
  const engine = new WorkflowEngine({ store, clock: scaledClock(1, clock), runbooks, random: () => 1, ...extra });
  engines.push(engine);
  return { store, engine };
}

/** A step body that never finishes by itself (a coordinator "crash" stops it). */
const hang = (info: StepInfo) =>
  new Promise<never>((_, reject) => info.signal.addEventListener("abort", () => reject(info.signal.reason), { once: true }));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-engine-"));
  clock = new FakeClock();
});
afterEach(async () => {
  for (const e of engines.splice(0)) await e.stop();
  for (const s of stores.splice(0)) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("workflow engine", () => {
  it("records each step's result and returns it on replay without running the step again", async () => {
    const runs: string[] = [];
    let crash = true;
    const book: Runbook<unknown> = async (ctx) => {
      const a = await ctx.step("create-volume", async () => {
        runs.push("a");
        return { volumeId: "vol-1" };
      });
      const b = await ctx.step("create-eni", async () => {
        runs.push("b");
        return "eni-1";
      });
      const c = await ctx.step("launch", async (info) => {
        runs.push("c");
        if (crash) return hang(info);
        return `${a.volumeId}+${b}`;
      });
      return c;
    };
    const first = open({ demo: book });
    const id = await first.engine.start("demo", "db", { x: 1 });
    await clock.advance(0);
    expect(runs).toEqual(["a", "b", "c"]);
    await first.engine.stop(); // the "crash": the workflow stays running in the store
    expect((await first.store.workflows.get(id))?.status).toBe("running");
    crash = false;
    const second = open({ demo: book });
    expect(await second.engine.resumeAll()).toEqual([id]);
    const wf = await second.engine.wait(id);
    expect(wf.status).toBe("succeeded");
    expect(wf.result).toBe("vol-1+eni-1");
    expect(runs).toEqual(["a", "b", "c", "c"]);
    expect((await second.store.steps.list(id)).map((s) => [s.seq, s.name, s.status])).toEqual([
      [1, "create-volume", "done"],
      [2, "create-eni", "done"],
      [3, "launch", "done"],
    ]);
  });

  it("keeps retry state in the step row and retries with backoff until the step succeeds", async () => {
    let calls = 0;
    const { store, engine } = open({
      flaky: async (ctx) =>
        ctx.step(
          "attach",
          async () => {
            calls++;
            if (calls < 3) throw new Error(`VolumeInUse #${calls}`);
            return "ok";
          },
          { initialMs: 1000, factor: 2, maxMs: 10_000, attempts: 5, jitter: "none" },
        ),
    });
    const id = await engine.start("flaky", "db", null);
    await clock.advance(0);
    let row = await store.steps.get(id, 1);
    expect(row).toMatchObject({
      status: "pending",
      attempts: 1,
      failure: { message: "VolumeInUse #1" },
      nextAttemptAt: clock.now() + 1000,
    });
    await clock.advance(1000);
    row = await store.steps.get(id, 1);
    expect(row).toMatchObject({
      status: "pending",
      attempts: 2,
      failure: { message: "VolumeInUse #2" },
      nextAttemptAt: clock.now() + 2000,
    });
    await clock.advance(2000);
    expect((await engine.wait(id)).status).toBe("succeeded");
    expect(await store.steps.get(id, 1)).toMatchObject({ status: "done", attempts: 3, failure: null });
  });

  it("resumes a backoff after a restart from the stored next attempt time", async () => {
    let calls = 0;
    const book: Runbook<unknown> = async (ctx) =>
      ctx.step(
        "detach",
        async () => {
          calls++;
          if (calls === 1) throw new Error("IncorrectState");
          return calls;
        },
        { initialMs: 5000, attempts: 3, jitter: "none" },
      );
    const first = open({ b: book });
    const id = await first.engine.start("b", "db", null);
    await clock.advance(1000);
    await first.engine.stop();
    const second = open({ b: book });
    await second.engine.resumeAll();
    await clock.advance(3000); // 4 s after the failure: still waiting
    expect(calls).toBe(1);
    await clock.advance(1000);
    expect((await second.engine.wait(id)).status).toBe("succeeded");
    expect(calls).toBe(2);
  });

  it("fails the step and the workflow with the cause when attempts run out or the error is not retryable", async () => {
    const { store, engine } = open({
      b: async (ctx) =>
        ctx.step(
          "launch",
          async () => {
            throw new Error("InvalidAMIID.NotFound");
          },
          { retryable: () => false },
        ),
    });
    const id = await engine.start("b", "db", null);
    const wf = await engine.wait(id);
    expect(wf.status).toBe("failed");
    expect(wf.error).toContain("step launch failed after 1 attempt: InvalidAMIID.NotFound");
    expect(await store.steps.get(id, 1)).toMatchObject({ status: "failed", attempts: 1 });
  });

  it("fails a replay whose step sequence differs from the recorded one", async () => {
    let version = 1;
    const book: Runbook<unknown> = async (ctx) => {
      await ctx.step("quiesce", async () => 1);
      await ctx.step(version === 1 ? "capture" : "terminate", async (info) => (version === 1 ? hang(info) : 2));
    };
    const first = open({ b: book });
    const id = await first.engine.start("b", "db", null);
    await clock.advance(0);
    await first.engine.stop();
    version = 2;
    const second = open({ b: book });
    await second.engine.resumeAll();
    const wf = await second.engine.wait(id);
    expect(wf.status).toBe("failed");
    expect(wf.error).toMatch(/step 2 is recorded as "capture" but the runbook now asks for "terminate"/);
  });

  it("replays a step recorded under a name an earlier version used (renamedSteps), without running it again", async () => {
    let version = 1;
    const runs: string[] = [];
    const book: Runbook<unknown> = async (ctx) => {
      await ctx.step(version === 1 ? "delete-old-roots" : "delete-old-root", async () => {
        runs.push(`delete v${version}`);
        return "deleted";
      });
      return ctx.step("retention", async (info) => (version === 1 ? hang(info) : "kept 3"));
    };
    const first = open({ b: book });
    const id = await first.engine.start("b", "db", null);
    await clock.advance(0);
    await first.engine.stop();
    version = 2;
    const second = open({ b: book }, { renamedSteps: { "delete-old-roots": "delete-old-root" } });
    await second.engine.resumeAll();
    const wf = await second.engine.wait(id);
    expect(wf.error).toBeNull();
    expect(wf.result).toBe("kept 3");
    expect(runs).toEqual(["delete v1"]);
    expect((await second.store.steps.list(id)).map((s) => s.name)).toEqual(["delete-old-roots", "retention"]);
  });

  it("takesPath: a new path runs on a first run and past the last recorded step, never where an earlier version recorded another step", async () => {
    let version = 1;
    let crashing = true;
    // Version 2 added `register` after `finish`; version 1 went straight on to `cleanup`. The input
    // names the step a run of version 1 is stopped in.
    const book: Runbook<{ crashIn: string }> = async (ctx, input) => {
      const body = (name: string) => (info: StepInfo) => (crashing && input.crashIn === name ? hang(info) : Promise.resolve(name));
      const taken: boolean[] = [];
      await ctx.step("finish", body("finish"));
      if (version === 2) {
        const take = ctx.takesPath("register");
        taken.push(take);
        if (take) await ctx.step("register", body("register"));
      }
      await ctx.step("cleanup", body("cleanup"));
      return taken;
    };
    const names = async (s: SqliteStore, id: string) => (await s.steps.list(id)).map((r) => r.name);

    // Recorded by version 1 past `finish` (stopped in `cleanup`), and stopped in `finish`.
    const v1 = open({ b: book });
    const past = await v1.engine.start("b", "past", { crashIn: "cleanup" });
    const inFinish = await v1.engine.start("b", "in-finish", { crashIn: "finish" });
    await clock.advance(0);
    await v1.engine.stop();
    expect(await names(v1.store, past)).toEqual(["finish", "cleanup"]);
    expect(await names(v1.store, inFinish)).toEqual(["finish"]);

    version = 2;
    crashing = false;
    const v2 = open({ b: book });
    await v2.engine.resumeAll();
    const fresh = await v2.engine.start("b", "fresh", { crashIn: "" });
    await clock.advance(0);
    // Version 1 recorded `cleanup` where version 2 would register: it goes on as it began.
    expect((await v2.engine.wait(past)).result).toEqual([false]);
    expect(await names(v2.store, past)).toEqual(["finish", "cleanup"]);
    // Nothing recorded after `finish`: the new path.
    expect((await v2.engine.wait(inFinish)).result).toEqual([true]);
    expect(await names(v2.store, inFinish)).toEqual(["finish", "register", "cleanup"]);
    expect((await v2.engine.wait(fresh)).result).toEqual([true]);
    expect(await names(v2.store, fresh)).toEqual(["finish", "register", "cleanup"]);

    // A replay of a run that took the new path takes it again: it finds `register` recorded next.
    crashing = true;
    const again = await v2.engine.start("b", "again", { crashIn: "cleanup" });
    await clock.advance(0);
    await v2.engine.stop();
    crashing = false;
    const v3 = open({ b: book });
    await v3.engine.resumeAll();
    expect((await v3.engine.wait(again)).result).toEqual([true]);
    expect(await names(v3.store, again)).toEqual(["finish", "register", "cleanup"]);
  });

  it("runs at most maxConcurrent workflows at once and starts queued ones as others finish", async () => {
    const release: Array<() => void> = [];
    let peak = 0;
    let now = 0;
    const { engine } = open(
      {
        w: async (ctx) =>
          ctx.step("work", async () => {
            now++;
            peak = Math.max(peak, now);
            await new Promise<void>((r) => release.push(r));
            now--;
          }),
      },
      { maxConcurrent: 2 },
    );
    const ids = await Promise.all([1, 2, 3, 4, 5].map((i) => engine.start("w", `db-${i}`, null)));
    await clock.advance(0);
    expect(engine.running).toBe(2);
    expect(engine.waiting).toBe(3);
    while (release.length > 0 || engine.running > 0) {
      release.shift()?.();
      await clock.advance(0);
    }
    for (const id of ids) expect((await engine.wait(id)).status).toBe("succeeded");
    expect(peak).toBe(2);
  });

  it("runs parallel steps concurrently with sequence numbers in array order, and replays them", async () => {
    const started: string[] = [];
    let gate!: () => void;
    const opened = new Promise<void>((r) => (gate = r));
    const book: Runbook<unknown> = async (ctx) => {
      await ctx.step("quiesce", async () => "q");
      const [img, term] = await ctx.parallel(
        step("register-image", async () => {
          started.push("img");
          await opened;
          return "ami-1";
        }),
        step("wait-terminated", async () => {
          started.push("term");
          gate();
          return "terminated";
        }),
      );
      return await ctx.step("launch", async () => `${img}/${term}`);
    };
    const { store, engine } = open({ b: book });
    const id = await engine.start("b", "db", null);
    const wf = await engine.wait(id);
    expect(wf.status).toBe("succeeded");
    expect(started.sort()).toEqual(["img", "term"]); // image waited for terminate's gate: both were running together
    expect((await store.steps.list(id)).map((s) => `${s.seq}:${s.name}`)).toEqual([
      "1:quiesce",
      "2:register-image",
      "3:wait-terminated",
      "4:launch",
    ]);
    expect(wf.result).toBe("ami-1/terminated");
  });

  it("applies migrations once even when two stores open the same file", async () => {
    const a = SqliteStore.open(join(dir, "race.sqlite"));
    const b = SqliteStore.open(join(dir, "race.sqlite"));
    stores.push(a, b);
    const versions = (a.db.prepare("SELECT version FROM migrations ORDER BY version").all() as { version: number }[]).map((r) => r.version);
    expect(versions[0]).toBe(1);
    expect(new Set(versions).size).toBe(versions.length);
    expect((await b.counts()).instances).toBe(0);
  });

  it("keeps a failed step's kind across a restart, so the replay takes the same branch", async () => {
    const branches: string[] = [];
    let crash = true;
    const book: Runbook<unknown> = async (ctx) => {
      try {
        await ctx.step(
          "launch",
          async () => {
            throw new Failure("no-capacity", "no capacity anywhere");
          },
          { attempts: 1 },
        );
      } catch (err) {
        branches.push(failureKind(err));
        if (failureKind(err) !== "no-capacity") throw err;
      }
      return ctx.step("launch in another AZ", async (info) => (crash ? hang(info) : "ok"));
    };
    const first = open({ b: book });
    const id = await first.engine.start("b", "db", null);
    await clock.advance(0);
    await first.engine.stop();
    expect(await first.store.steps.get(id, 1)).toMatchObject({ status: "failed", failure: { kind: "no-capacity" } });
    crash = false;
    const second = open({ b: book });
    await second.engine.resumeAll();
    expect((await second.engine.wait(id)).status).toBe("succeeded");
    expect(branches).toEqual(["no-capacity", "no-capacity"]);
  });

  it("runs a dynamic list of steps with ctx.all and replays their results in list order", async () => {
    const book: Runbook<unknown> = async (ctx) => {
      const devices = ["/dev/sdf", "/dev/sdg", "/dev/sdh"];
      const ids = await ctx.all(devices.map((d, i) => step(`snapshot ${d}`, async () => `snap-${i}`)));
      return ids.join(",");
    };
    const { store, engine } = open({ b: book });
    const id = await engine.start("b", "db", null);
    expect((await engine.wait(id)).result).toBe("snap-0,snap-1,snap-2");
    expect((await store.steps.list(id)).map((s) => s.name)).toEqual(["snapshot /dev/sdf", "snapshot /dev/sdg", "snapshot /dev/sdh"]);
  });

  it("does not run a workflow whose start was rolled back with its transaction", async () => {
    let ran = false;
    const { store, engine } = open({ b: async () => (ran = true) });
    await expect(
      store.tx(async (t) => {
        await engine.start("b", "db", null, null, t);
        throw new Error("disk full");
      }),
    ).rejects.toThrow("disk full");
    await clock.advance(0);
    expect(ran).toBe(false);
    expect((await store.counts()).workflows).toBe(0);
  });
});
