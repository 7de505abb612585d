/**
 * The workflow engine's durable semantics on a store backend, run by contract.test.ts against each:
 * step records and their replay after a restart (a new engine on a newly opened store), retry state
 * kept in the step row (attempts, failure, next attempt time) and a backoff resumed from it, failure
 * kinds that survive a restart, parallel and dynamic steps in sequence order, and workflows started
 * inside a transaction (run only when it commits). Model time is a fake clock; the store's own I/O
 * is real, so the cases wait for rows to appear instead of counting on a microtask flush.
 */
import { afterEach, expect, it } from "vitest";
import type { Store } from "../../coordinator/db/store.js";
import { FakeClock, scaledClock } from "../../shared/clock.js";
import { type Runbook, type Runbooks, type StepInfo, step, WorkflowEngine } from "../../coordinator/workflow/engine.js";
import { Failure, failureKind } from "../../coordinator/workflow/failure.js";
import type { StoreBackend } from "./contract.suite.js";

/** Poll `read` until `ok` holds (10 s at most). */
async function eventually<T>(what: string, read: () => Promise<T> | T, ok: (v: T) => boolean): Promise<T> {
  const until = Date.now() + 10_000;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A step body that never finishes by itself (a coordinator "crash" stops it). */
const hang = (info: StepInfo) =>
  new Promise<never>((_, reject) => info.signal.addEventListener("abort", () => reject(info.signal.reason), { once: true }));

export function engineContract(backend: StoreBackend): void {
  let clock = new FakeClock();
  const stores: Store[] = [];
  const engines: Array<{ stop(): Promise<void> }> = [];

  async function boot<K extends object>(runbooks: Runbooks<K>) {
    const store = await backend.open(() => clock.now());
    stores.push(store);
    const engine = new WorkflowEngine({ store, clock: scaledClock(1, clock), runbooks, random: () => 1 });
    engines.push(engine);
    return { store, engine };
  }
  /** The "crash": the engine stops at its next wait and the store is closed; the workflow stays running in the store. */
  async function crash(c: { store: Store; engine: { stop(): Promise<void> } }) {
    await c.engine.stop();
    engines.splice(engines.indexOf(c.engine), 1);
    await c.store.close();
    stores.splice(stores.indexOf(c.store), 1);
  }
  afterEach(async () => {
    for (const e of engines.splice(0)) await e.stop();
    for (const s of stores.splice(0)) await s.close();
    clock = new FakeClock();
  });

  it("records each step's result and replays it after a restart without running the step again", async () => {
    const runs: string[] = [];
    let crashing = true;
    const book: Runbook<unknown> = async (ctx) => {
      const a = await ctx.step("create-volume", async () => {
        runs.push("a");
        return { volumeId: "vol-1" };
      });
      const b = await ctx.step("create-eni", async () => {
        runs.push("b");
        return "eni-1";
      });
      return ctx.step("launch", async (info) => {
        runs.push("c");
        return crashing ? hang(info) : `${a.volumeId}+${b}`;
      });
    };
    const first = await boot({ demo: book });
    const id = await first.engine.start("demo", "db", { x: 1 });
    await eventually(
      "the launch step to run",
      () => first.store.steps.get(id, 3),
      (s) => s?.status === "running",
    );
    await crash(first);
    crashing = false;
    const second = await boot({ demo: book });
    expect(await second.engine.resumeAll()).toEqual([id]);
    const wf = await second.engine.wait(id);
    expect(wf).toMatchObject({ status: "succeeded", result: "vol-1+eni-1", input: { x: 1 } });
    expect(runs).toEqual(["a", "b", "c", "c"]);
    expect((await second.store.steps.list(id)).map((s) => [s.seq, s.name, s.status, s.attempts])).toEqual([
      [1, "create-volume", "done", 1],
      [2, "create-eni", "done", 1],
      [3, "launch", "done", 1],
    ]);
  });

  it("keeps retry state in the step row and retries with backoff until the step succeeds", async () => {
    let calls = 0;
    const { store, engine } = await boot({
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
    const t0 = clock.now();
    let row = await eventually(
      "the first retry",
      () => store.steps.get(id, 1),
      (s) => s?.attempts === 1,
    );
    expect(row).toMatchObject({ status: "pending", failure: { kind: "error", message: "VolumeInUse #1" }, nextAttemptAt: t0 + 1000 });
    await eventually(
      "the backoff timer",
      () => clock.pending,
      (n) => n > 0,
    );
    await clock.advance(1000);
    row = await eventually(
      "the second retry",
      () => store.steps.get(id, 1),
      (s) => s?.attempts === 2,
    );
    expect(row).toMatchObject({ status: "pending", failure: { message: "VolumeInUse #2" }, nextAttemptAt: t0 + 1000 + 2000 });
    await eventually(
      "the backoff timer",
      () => clock.pending,
      (n) => n > 0,
    );
    await clock.advance(2000);
    expect((await engine.wait(id)).status).toBe("succeeded");
    expect(await store.steps.get(id, 1)).toMatchObject({ status: "done", attempts: 3, failure: null, nextAttemptAt: null, result: "ok" });
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
    const first = await boot({ b: book });
    const id = await first.engine.start("b", "db", null);
    const t0 = clock.now();
    await eventually(
      "the retry record",
      () => first.store.steps.get(id, 1),
      (s) => s?.nextAttemptAt === t0 + 5000,
    );
    await eventually(
      "the backoff timer",
      () => clock.pending,
      (n) => n > 0,
    );
    await clock.advance(1000);
    await crash(first);
    await eventually(
      "the stopped engine's timer to go",
      () => clock.pending,
      (n) => n === 0,
    );
    const second = await boot({ b: book });
    await second.engine.resumeAll();
    await eventually(
      "the resumed backoff",
      () => clock.pending,
      (n) => n > 0,
    );
    await clock.advance(3000); // 4 s after the failure: still waiting
    expect(calls).toBe(1);
    await clock.advance(1000);
    expect((await second.engine.wait(id)).status).toBe("succeeded");
    expect(calls).toBe(2);
    expect(await second.store.steps.get(id, 1)).toMatchObject({ status: "done", attempts: 2, result: 2 });
  });

  it("keeps a failed step's kind across a restart, so the replay takes the same branch", async () => {
    const branches: string[] = [];
    let crashing = true;
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
      return ctx.step("launch in another AZ", async (info) => (crashing ? hang(info) : "ok"));
    };
    const first = await boot({ b: book });
    const id = await first.engine.start("b", "db", null);
    await eventually(
      "the second launch",
      () => first.store.steps.get(id, 2),
      (s) => s?.status === "running",
    );
    expect(await first.store.steps.get(id, 1)).toMatchObject({ status: "failed", attempts: 1, failure: { kind: "no-capacity" } });
    await crash(first);
    crashing = false;
    const second = await boot({ b: book });
    await second.engine.resumeAll();
    expect((await second.engine.wait(id)).status).toBe("succeeded");
    expect(branches).toEqual(["no-capacity", "no-capacity"]);
  });

  it("records parallel and dynamic steps with sequence numbers in list order, and replays their results", async () => {
    let crashing = true;
    const book: Runbook<unknown> = async (ctx) => {
      const [img, term] = await ctx.parallel(
        step("register-image", async () => "ami-1"),
        step("wait-terminated", async () => "terminated"),
      );
      const snaps = await ctx.all(["/dev/sdf", "/dev/sdg", "/dev/sdh"].map((d, i) => step(`snapshot ${d}`, async () => `snap-${i}`)));
      return ctx.step("launch", async (info) => (crashing ? hang(info) : `${img}/${term}/${snaps.join(",")}`));
    };
    const first = await boot({ b: book });
    const id = await first.engine.start("b", "db", null);
    await eventually(
      "the launch",
      () => first.store.steps.get(id, 6),
      (s) => s?.status === "running",
    );
    await crash(first);
    crashing = false;
    const second = await boot({ b: book });
    await second.engine.resumeAll();
    expect((await second.engine.wait(id)).result).toBe("ami-1/terminated/snap-0,snap-1,snap-2");
    expect((await second.store.steps.list(id)).map((s) => `${s.seq}:${s.name}`)).toEqual([
      "1:register-image",
      "2:wait-terminated",
      "3:snapshot /dev/sdf",
      "4:snapshot /dev/sdg",
      "5:snapshot /dev/sdh",
      "6:launch",
    ]);
  });

  it("runs a workflow started inside a transaction once it commits, and never one whose transaction rolled back", async () => {
    const ran: string[] = [];
    const { store, engine } = await boot({ b: async (_ctx, input: { tag: string }) => ran.push(input.tag) });
    const committed = await store.tx(async (t) => {
      const id = await engine.start("b", "db", { tag: "committed" }, null, t);
      // The transaction goes on after the start: the run must not look for the row before the commit.
      await new Promise((r) => setTimeout(r, 50));
      await t.events.add("db", "started", "after the start", id);
      return id;
    });
    expect((await engine.wait(committed)).status).toBe("succeeded");
    await expect(
      store.tx(async (t) => {
        await engine.start("b", "db", { tag: "rolled back" }, null, t);
        throw new Error("disk full");
      }),
    ).rejects.toThrow("disk full");
    await new Promise((r) => setTimeout(r, 100));
    expect(ran).toEqual(["committed"]);
    expect((await store.counts()).workflows).toBe(1);
  });
}
