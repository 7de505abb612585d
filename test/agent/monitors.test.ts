import { describe, expect, it } from "vitest";
import { FakeClock } from "../../shared/clock.js";
import { MonitorLoop } from "../../agent/monitors/loop.js";
import { SpotInterruptionMonitor } from "../../agent/monitors/spot-interruption.js";
import { RebalanceMonitor } from "../../agent/monitors/rebalance.js";
import { ScheduledEventsMonitor } from "../../agent/monitors/scheduled-events.js";
import { silentLogger } from "../../agent/log.js";
import type { NoticeObservation } from "../../agent/monitors/types.js";

function fakeImds() {
  const state = { action: null as string | null, rebalance: null as string | null, scheduled: "[]" as string | null, fail: false };
  return {
    state,
    spotInstanceAction: async () => {
      if (state.fail) throw new Error("GET spot/instance-action: HTTP 500");
      return state.action;
    },
    rebalanceRecommendation: async () => state.rebalance,
    scheduledEvents: async () => state.scheduled,
  };
}

function setup() {
  const clock = new FakeClock(Date.parse("2030-01-01T00:00:00Z"));
  const imds = fakeImds();
  const got: NoticeObservation[] = [];
  const seen = new Set<string>();
  const loop = new MonitorLoop({
    monitors: [new SpotInterruptionMonitor(imds, clock), new RebalanceMonitor(imds, clock), new ScheduledEventsMonitor(imds, clock)],
    intervalMs: 1000,
    clock,
    log: silentLogger,
    seen,
    onNotice: (o) => void got.push(o),
  });
  return { clock, imds, got, loop, seen };
}

describe("notice monitors", () => {
  it("reports a spot notice once however often it is polled, with the deadline from its time", async () => {
    const { clock, imds, got, loop } = setup();
    loop.start();
    await clock.advance(3000);
    expect(got).toEqual([]);
    imds.state.action = '{"action": "terminate", "time": "2030-01-01T00:02:03Z"}';
    await clock.advance(5000);
    await loop.stop();
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ kind: "spot-interruption", action: "terminate", deadline: "2030-01-01T00:02:03.000Z" });
    expect(loop.polls).toBeGreaterThanOrEqual(8);
  });

  it("gives the same id to the same payload with different whitespace, and a new id when the time changes", async () => {
    const { imds, got, loop } = setup();
    imds.state.action = '{"action":"terminate","time":"2030-01-01T00:02:00Z"}';
    await loop.pollOnce();
    imds.state.action = '{ "action" : "terminate", "time" : "2030-01-01T00:02:00Z" }';
    await loop.pollOnce();
    imds.state.action = '{"action":"terminate","time":"2030-01-01T00:03:00Z"}';
    await loop.pollOnce();
    expect(got.map((g) => g.deadline)).toEqual(["2030-01-01T00:02:00.000Z", "2030-01-01T00:03:00.000Z"]);
  });

  it("gives hibernate no lead time", async () => {
    const { imds, got, loop } = setup();
    imds.state.action = '{"action":"hibernate","time":"2030-01-01T00:02:00Z"}';
    await loop.pollOnce();
    expect(got[0]).toMatchObject({ action: "hibernate", deadline: "2030-01-01T00:00:00.000Z" });
  });

  it("reports a rebalance recommendation without a deadline", async () => {
    const { imds, got, loop } = setup();
    imds.state.rebalance = '{"noticeTime":"2030-01-01T00:00:00Z"}';
    await loop.pollOnce();
    await loop.pollOnce();
    expect(got).toHaveLength(1);
    expect(got[0]).toMatchObject({ kind: "rebalance" });
    expect(got[0]!.deadline).toBeUndefined();
  });

  it("reports active scheduled events with the earliest code and NotBefore, and again when they change", async () => {
    const { imds, got, loop } = setup();
    const ev = (id: string, code: string, nb: string, state = "active") => ({
      NotBefore: nb,
      Code: code,
      Description: "x",
      EventId: id,
      NotAfter: nb,
      State: state,
    });
    imds.state.scheduled = JSON.stringify([
      ev("e1", "system-reboot", "21 Jan 2030 09:00:43 GMT"),
      ev("e0", "instance-stop", "20 Jan 2030 09:00:00 GMT", "canceled"),
    ]);
    await loop.pollOnce();
    await loop.pollOnce();
    imds.state.scheduled = JSON.stringify([
      ev("e1", "system-reboot", "21 Jan 2030 09:00:43 GMT"),
      ev("e2", "instance-retirement", "19 Jan 2030 00:00:00 GMT"),
    ]);
    await loop.pollOnce();
    expect(got.map((g) => [g.action, g.deadline])).toEqual([
      ["system-reboot", "2030-01-21T09:00:43.000Z"],
      ["instance-retirement", "2030-01-19T00:00:00.000Z"],
    ]);
  });

  it("keeps polling the other monitors when one fails, and rejects malformed payloads with the field named", async () => {
    const { imds, got, loop } = setup();
    const warnings: string[] = [];
    (loop as unknown as { opts: { log: typeof silentLogger } }).opts.log = {
      ...silentLogger,
      warn: (_m: string, f?: Record<string, unknown>) => void warnings.push(String(f?.error)),
    };
    imds.state.fail = true;
    imds.state.rebalance = '{"noticeTime":"2030-01-01T00:00:00Z"}';
    await loop.pollOnce();
    expect(got.map((g) => g.kind)).toEqual(["rebalance"]);
    imds.state.fail = false;
    imds.state.action = '{"action":"explode","time":"2030-01-01T00:02:00Z"}';
    await loop.pollOnce();
    expect(warnings.at(-1)).toMatch(/spot\/instance-action\.action: must be terminate, stop or hibernate/);
  });
});

describe("monitor loop cadence", () => {
  it("polls a kind given in `every` only on every Nth pass, the others on each pass", async () => {
    const checks: string[] = [];
    const monitor = (kind: "spot-interruption" | "rebalance" | "scheduled-event") => ({
      kind,
      check: async () => {
        checks.push(kind);
        return null;
      },
    });
    const loop = new MonitorLoop({
      monitors: [monitor("spot-interruption"), monitor("rebalance"), monitor("scheduled-event")],
      intervalMs: 1000,
      clock: new FakeClock(),
      log: silentLogger,
      seen: new Set<string>(),
      onNotice: () => {},
      every: { rebalance: 5, "scheduled-event": 5 },
    });
    for (let i = 0; i < 10; i++) await loop.pollOnce();
    expect(checks.filter((k) => k === "spot-interruption")).toHaveLength(10);
    expect(checks.filter((k) => k === "rebalance")).toHaveLength(2);
    expect(checks.filter((k) => k === "scheduled-event")).toHaveLength(2);
  });
});
