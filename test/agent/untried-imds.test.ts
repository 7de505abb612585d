/**
 * Malformed, huge and slow IMDS answers to the agent's notice monitors, through the real IMDS
 * client and the monitor loop: every pass ends (bounded in bytes and time), nothing throws out of
 * the loop, no answer that is not a well-formed notice becomes one, and once IMDS answers properly
 * again the real notice is reported exactly once.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ImdsClient } from "../../agent/imds/client.js";
import { MonitorLoop } from "../../agent/monitors/loop.js";
import { RebalanceMonitor } from "../../agent/monitors/rebalance.js";
import { ScheduledEventsMonitor } from "../../agent/monitors/scheduled-events.js";
import { SpotInterruptionMonitor } from "../../agent/monitors/spot-interruption.js";
import type { Logger } from "../../agent/log.js";
import type { NoticeObservation } from "../../agent/monitors/types.js";
import { FakeClock } from "../../shared/clock.js";
import { instancePaths, startFakeImds, type FakeImds } from "./fake-imds.js";

const ACTION = "/latest/meta-data/spot/instance-action";
const REBALANCE = "/latest/meta-data/events/recommendations/rebalance";
const SCHEDULED = "/latest/meta-data/events/maintenance/scheduled";

let imds: FakeImds;
beforeEach(async () => {
  imds = await startFakeImds(instancePaths());
});
afterEach(async () => {
  await imds.close();
});

function setup() {
  // Retries sleep on a fake clock that runs at once; IMDS exchanges are bounded at 200 ms each.
  const clock = new FakeClock(Date.parse("2030-01-01T00:00:00Z"));
  (clock as unknown as { sleep: (ms: number) => Promise<void> }).sleep = async () => undefined;
  const client = new ImdsClient({ endpoint: imds.endpoint, clock, timeoutMs: 200, retry: { initialMs: 1, maxMs: 2, attempts: 2 } });
  const warnings: string[] = [];
  const log: Logger = {
    debug: () => undefined,
    info: () => undefined,
    warn: (msg: string, f?: Record<string, unknown>) => void warnings.push(`${msg} ${JSON.stringify(f ?? {})}`),
    error: (msg: string, f?: Record<string, unknown>) => void warnings.push(`${msg} ${JSON.stringify(f ?? {})}`),
    child: () => log,
  } as unknown as Logger;
  const notices: NoticeObservation[] = [];
  const loop = new MonitorLoop({
    monitors: [new SpotInterruptionMonitor(client, clock), new RebalanceMonitor(client, clock), new ScheduledEventsMonitor(client, clock)],
    intervalMs: 1000,
    clock,
    log,
    seen: new Set<string>(),
    onNotice: (o) => void notices.push(o),
  });
  return { client, loop, notices, warnings };
}

const deep = (n: number) => `${"[".repeat(n)}${"]".repeat(n)}`;

const MALFORMED: Array<[string, string, string]> = [
  ["spot: null", ACTION, "null"],
  ["spot: an array", ACTION, "[]"],
  ["spot: not JSON", ACTION, "\u0000\u00ff<html>busy</html>"],
  ["spot: an unknown action", ACTION, JSON.stringify({ action: "reboot", time: "2030-01-01T00:02:00Z" })],
  ["spot: no time", ACTION, JSON.stringify({ action: "terminate" })],
  ["spot: a time that is not one", ACTION, JSON.stringify({ action: "terminate", time: "soon" })],
  ["spot: 30,000-deep nesting", ACTION, deep(30_000)],
  ["rebalance: null", REBALANCE, "null"],
  ["rebalance: a number", REBALANCE, "42"],
  ["rebalance: no noticeTime", REBALANCE, JSON.stringify({ at: "2030-01-01T00:00:00Z" })],
  ["scheduled: an object", SCHEDULED, JSON.stringify({ State: "active" })],
  ["scheduled: active without NotBefore", SCHEDULED, JSON.stringify([{ Code: "system-reboot", State: "active" }])],
];

/** Arrays with no active event in them: nothing to report, and nothing wrong to say. */
const NO_ACTIVE_EVENT: Array<[string, string, string]> = [
  ["scheduled: nulls and numbers", SCHEDULED, JSON.stringify([null, 1, "x", []])],
  ["scheduled: 30,000-deep nesting", SCHEDULED, deep(30_000)],
];

describe("malformed, huge and slow IMDS answers to the notice monitors", () => {
  it.each(MALFORMED)("%s: no notice, the loop carries on, and the monitor says why", async (_what, path, body) => {
    const { loop, notices, warnings } = setup();
    imds.set(path, body);
    expect(await loop.pollOnce()).toEqual([]);
    expect(notices).toEqual([]);
    expect(warnings.join("\n")).toMatch(/monitor check failed/);
    // The reason names the IMDS path, not a JavaScript TypeError.
    expect(warnings.join("\n")).not.toMatch(/Cannot read properties|is not a function/);
  });

  it.each(NO_ACTIVE_EVENT)("%s: no notice", async (_what, path, body) => {
    const { loop, notices } = setup();
    imds.set(path, body);
    expect(await loop.pollOnce()).toEqual([]);
    expect(notices).toEqual([]);
  });

  it("a body over the limit, a body that never ends and an answer that never comes: no notice, every pass ends", async () => {
    const { loop, notices, warnings } = setup();
    imds.setLarge(ACTION, 50 * 1024 * 1024);
    imds.setLarge(REBALANCE, 1024, { dripMs: 100 });
    imds.failNext("scheduled", "hang", 10);
    for (let i = 0; i < 3; i++) expect(await loop.pollOnce()).toEqual([]);
    expect(notices).toEqual([]);
    const text = warnings.join("\n");
    expect(text).toMatch(/body-too-large|exceeds the 65536-byte limit/);
    expect(text).toMatch(/no complete answer within 200 ms/);
  });

  it("after bad answers, a real notice is reported once", async () => {
    const { loop, notices } = setup();
    imds.set(ACTION, "null");
    await loop.pollOnce();
    imds.failNext("instance-action", 500, 5);
    await loop.pollOnce();
    imds.set(ACTION, JSON.stringify({ action: "terminate", time: "2030-01-01T00:02:00Z" }));
    await loop.pollOnce();
    await loop.pollOnce();
    expect(notices.map((n) => [n.kind, n.action, n.deadline])).toEqual([["spot-interruption", "terminate", "2030-01-01T00:02:00.000Z"]]);
  });

  it("a scheduled-event answer with more active events than a notice carries is one notice whose raw payload the agent bounds", async () => {
    const { loop, notices } = setup();
    const events = Array.from({ length: 400 }, (_, i) => ({
      Code: "system-reboot",
      State: "active",
      EventId: `instance-event-${String(i).padStart(17, "0")}`,
      NotBefore: "21 Jan 2030 09:00:43 GMT",
    }));
    imds.set(SCHEDULED, JSON.stringify(events));
    const found = await loop.pollOnce();
    expect(found).toHaveLength(1);
    expect(notices[0]!.action).toBe("system-reboot");
    expect(notices[0]!.raw.length).toBeGreaterThan(16_384); // the agent cuts raw to 16 KiB before sending (run.ts)
  });
});
