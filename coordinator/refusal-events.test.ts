import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FakeClock } from "../shared/clock.js";
import { SqliteStore } from "./db/sqlite/index.js";
import { RefusalEvents } from "./refusal-events.js";

let clock: FakeClock;
let store: SqliteStore;
let refusals: RefusalEvents;
const MINUTE = 60_000;

beforeEach(() => {
  clock = new FakeClock();
  store = SqliteStore.open(":memory:", () => clock.now());
  refusals = new RefusalEvents({ events: store.events, clock, intervalMs: MINUTE });
});
afterEach(async () => {
  await refusals.close();
  await store.close();
});

const timeline = async () => (await store.events.list("db")).map((e) => `${e.kind} ${e.message}`);
const impostor = (n: number, reason = "session-secret-mismatch") => {
  for (let i = 0; i < n; i++) refusals.record("db", "agent-impostor", reason, `hello ${i} from 10.0.0.9`);
};

describe("refusal events", () => {
  // Regression: every refused hello was its own event (4,286 in 20 s), so the timeline's last 500
  // events held nothing but impostors.
  it("writes the first refusal at once and the rest of its interval as one summary with a count", async () => {
    await store.events.add("db", "created", "create requested");
    impostor(4000);
    await clock.advance(0);
    expect(await timeline()).toEqual(["created create requested", "agent-impostor session-secret-mismatch: hello 0 from 10.0.0.9"]);
    await clock.advance(MINUTE);
    const events = await timeline();
    expect(events).toHaveLength(3);
    expect(events[2]).toMatch(
      /^agent-impostor session-secret-mismatch, repeated: 3999 more refused from 2026-01-01T00:00:00.000Z to 2026-01-01T00:00:00.000Z; the latest: hello 3999 from 10.0.0.9$/,
    );
  });

  it("grows the summary in place while the flood goes on and nothing else happens, so a long flood holds two rows", async () => {
    await store.events.add("db", "created", "create requested");
    for (let minute = 0; minute < 30; minute++) {
      impostor(100);
      refusals.record("db", "agent-impostor", "source-address-mismatch", "from 10.9.9.9");
      await clock.advance(MINUTE);
    }
    const events = await timeline();
    expect(events[0]).toBe("created create requested");
    // Per reason: the first refusal and one summary.
    expect(events).toHaveLength(5);
    expect(events.find((e) => /session-secret-mismatch, repeated: /.test(e))).toMatch(/repeated: 2999 more refused/);
    // One refusal a minute, exactly at each interval's end: each interval closes quiet and the next refusal joins the summary.
    expect(events.find((e) => /source-address-mismatch, repeated: /.test(e))).toMatch(/repeated: 29 more refused/);
  });

  it("starts a new summary after a real event, so the timeline keeps its order", async () => {
    impostor(10);
    await clock.advance(MINUTE);
    await store.events.add("db", "workflow-succeeded", "real");
    impostor(5);
    await clock.advance(MINUTE);
    expect((await timeline()).map((e) => e.replace(/ from 2026.*/, ""))).toEqual([
      "agent-impostor session-secret-mismatch: hello 0 from 10.0.0.9",
      "agent-impostor session-secret-mismatch, repeated: 9 more refused",
      "workflow-succeeded real",
      "agent-impostor session-secret-mismatch, repeated: 5 more refused",
    ]);
  });

  it("keeps instances and reasons apart, and after a quiet interval writes the next refusal at once", async () => {
    refusals.record("db", "agent-impostor", "session-secret-mismatch", "a");
    refusals.record("web", "agent-impostor", "session-secret-mismatch", "b");
    refusals.record("db", "notice-unconfirmed", "unconfirmed-notice", "c");
    await clock.advance(3 * MINUTE);
    expect(clock.pending).toBe(0);
    refusals.record("db", "agent-impostor", "session-secret-mismatch", "d");
    await clock.advance(0);
    expect(await timeline()).toEqual([
      "agent-impostor session-secret-mismatch: a",
      "notice-unconfirmed unconfirmed-notice: c",
      expect.stringMatching(/^agent-impostor session-secret-mismatch, repeated: 1 more refused .*; the latest: d$/),
    ]);
    expect((await store.events.list("web")).map((e) => e.message)).toEqual(["session-secret-mismatch: b"]);
    // After a real event, a new run starts with the refusal as it is.
    await store.events.add("db", "workflow-succeeded", "real");
    await clock.advance(2 * MINUTE);
    refusals.record("db", "agent-impostor", "session-secret-mismatch", "e");
    await clock.advance(0);
    expect((await timeline()).slice(-2)).toEqual(["workflow-succeeded real", "agent-impostor session-secret-mismatch: e"]);
  });

  it("bounds a refusal's detail and writes what is counted on close", async () => {
    refusals.record("db", "agent-impostor", "session-secret-mismatch", "x".repeat(10_000));
    refusals.record("db", "agent-impostor", "session-secret-mismatch", "last");
    await refusals.close();
    const events = await timeline();
    expect(events[0]!.length).toBeLessThan(600);
    expect(events[1]).toMatch(/repeated: 1 more refused .*; the latest: last$/);
    refusals.record("db", "agent-impostor", "session-secret-mismatch", "after close");
    await clock.advance(MINUTE);
    expect(await timeline()).toHaveLength(2);
  });

  it("a store that fails a write is logged and does not stop later refusals", async () => {
    const lines: string[] = [];
    let fail = true;
    const events = {
      add: async (instance: string, kind: string, message: string) => {
        if (fail) throw new Error("SQLITE_FULL");
        await store.events.add(instance, kind, message);
      },
      replaceLatest: store.events.replaceLatest.bind(store.events),
    };
    const r = new RefusalEvents({ events, clock, intervalMs: MINUTE, log: (l) => lines.push(l) });
    r.record("db", "agent-impostor", "session-secret-mismatch", "lost");
    await clock.advance(0);
    fail = false;
    r.record("db", "agent-impostor", "session-secret-mismatch", "counted");
    await clock.advance(MINUTE);
    expect(lines).toEqual(["recording a session-secret-mismatch refusal for db: SQLITE_FULL"]);
    expect(await timeline()).toEqual([expect.stringMatching(/repeated: 1 more refused .*; the latest: counted$/)]);
    await r.close();
  });
});
