import { describe, expect, it } from "vitest";
import { SqliteStore } from "../db/sqlite/index.js";
import type { Operations } from "../operations.js";
import { FakeClock, scaledClock } from "../../shared/clock.js";
import { NoticeDecisions } from "./decisions.js";

function setup() {
  const fake = new FakeClock();
  const store = SqliteStore.open(":memory:", () => fake.now());
  const calls: string[] = [];
  const operations = {
    startSnapshot: async (name: string, why: string) => {
      calls.push(`snapshot ${name} (${why})`);
      return "wf-s";
    },
    startReplace: async () => null,
    run: async () => ({ workflowId: "wf-r" }),
  } as unknown as Operations;
  const decisions = new NoticeDecisions({ store, operations, clock: scaledClock(0.5, fake), log: () => undefined });
  return { fake, store, calls, decisions };
}

describe("NoticeDecisions", () => {
  it("records each source's first arrival, and the timeline says which came first and by how much (model seconds)", async () => {
    const { fake, store, decisions } = setup();
    expect(await decisions.arrival("queue", "db", "i-1", "spot-interruption")).toBe(true);
    await fake.advance(400);
    expect(await decisions.arrival("agent", "db", "i-1", "spot-interruption")).toBe(false);
    expect(await decisions.arrival("agent", "db", "i-1", "spot-interruption")).toBe(false);
    expect((await store.events.list("db")).map((e) => e.message)).toEqual([
      "spot-interruption notice for i-1 arrived first from the EventBridge queue",
      "spot-interruption notice for i-1 arrived from the agent 0.80 s after the EventBridge queue",
    ]);
    await store.close();
  });

  it("acts on a rebalance recommendation once, whichever source reports it first", async () => {
    const { store, calls, decisions } = setup();
    // Only onRebalance matters to the decision.
    await store.instances.insert("db", { onRebalance: "snapshot" } as never, "running");
    for (const source of ["agent", "queue", "agent"] as const)
      if (await decisions.arrival(source, "db", "i-2", "rebalance")) await decisions.rebalance("db");
    expect(calls).toEqual(["snapshot db (rebalance recommendation)"]);
    await store.close();
  });

  it("clamps a deadline to two minutes of model time, and to a later bound given", () => {
    const { fake, decisions } = setup();
    const now = fake.now();
    expect(Date.parse(decisions.clampDeadline(new Date(now + 3_600_000).toISOString()))).toBe(now + 60_000);
    expect(Date.parse(decisions.clampDeadline(undefined, now + 10_000))).toBe(now + 10_000);
    expect(Date.parse(decisions.clampDeadline("garbage"))).toBe(now + 60_000);
  });
});
