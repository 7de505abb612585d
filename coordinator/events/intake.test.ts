import { beforeEach, describe, expect, it } from "vitest";
import { FakeClock, scaledClock } from "../../shared/clock.js";
import type { Ec2Gateway, InstanceInfo, SpotRequestStatus } from "../cloud/gateway.js";
import { SqliteStore } from "../db/sqlite/index.js";
import { Metrics } from "../metrics.js";
import type { Operations } from "../operations.js";
import { NoticeDecisions } from "./decisions.js";
import { type EventOrigin, QueueIntake } from "./intake.js";
import { type CloudEvent, parseEventMessage } from "./parse.js";

const ID = "i-0123456789abcdef0";
const ORIGIN: EventOrigin = { account: "123456789012", region: "us-east-1" };

let fake: FakeClock;
let store: SqliteStore;
let replaces: Array<{ trigger: string; why: string }>;
let ec2State: string | null;
let spotStatus: string | null;
let origin: EventOrigin | null;
let intake: QueueIntake;

const ec2: Pick<Ec2Gateway, "spotRequestStatus" | "describeInstances"> = {
  spotRequestStatus: async () =>
    spotStatus ? ({ spotInstanceRequestId: "sir-1", statusCode: spotStatus } as unknown as SpotRequestStatus) : null,
  describeInstances: async () => (ec2State ? [{ instanceId: ID, state: ec2State } as unknown as InstanceInfo] : []),
};

beforeEach(async () => {
  fake = new FakeClock();
  store = SqliteStore.open(":memory:", () => fake.now());
  // Only what the intake reads: the instance, and its live generation on ID.
  await store.instances.insert("db", { onRebalance: "ignore" } as never, "running");
  await store.generations.ensure("db", 1, "wf-create");
  await store.generations.recordLaunch("db", 1, {
    ec2InstanceId: ID,
    instanceType: "m5.large",
    availabilityZone: "us-east-1a",
    market: "spot",
    privateIp: "10.0.0.5",
  });
  await store.generations.markLive("db", 1);
  replaces = [];
  ec2State = "running";
  spotStatus = "fulfilled";
  origin = ORIGIN;
  const clock = scaledClock(1, fake);
  const operations = {
    startReplace: async (input: { trigger: string }, why: string) => {
      replaces.push({ trigger: input.trigger, why });
      return `wf-r${replaces.length}`;
    },
    startSnapshot: async () => null,
    run: async () => ({ workflowId: "wf" }),
  } as unknown as Operations;
  const decisions = new NoticeDecisions({ store, operations, clock, log: () => undefined });
  intake = new QueueIntake({
    store,
    operations,
    decisions,
    metrics: new Metrics({ defaultMetrics: false }),
    clock,
    ec2,
    origin: () => origin,
    agentAnswering: () => true,
    log: () => undefined,
    confirmAttempts: 2,
    confirmIntervalMs: 10,
  });
});

/** An event as EventBridge would send it, through the real parser. */
function event(
  kind: "warning" | "terminated",
  o: { id?: string; account?: string; region?: string; time?: number; resources?: string[] } = {},
) {
  const account = o.account ?? "123456789012";
  const region = o.region ?? "us-east-1";
  const body = {
    version: "0",
    id: o.id ?? `e-${kind}`,
    "detail-type": kind === "warning" ? "EC2 Spot Instance Interruption Warning" : "EC2 Instance State-change Notification",
    source: "aws.ec2",
    account,
    time: new Date(o.time ?? fake.now()).toISOString(),
    region,
    resources:
      o.resources ?? (kind === "warning" ? [`arn:aws:ec2:${region}a:instance/${ID}`] : [`arn:aws:ec2:${region}:${account}:instance/${ID}`]),
    detail: kind === "warning" ? { "instance-id": ID, "instance-action": "terminate" } : { "instance-id": ID, state: "terminated" },
  };
  const parsed = parseEventMessage(JSON.stringify(body));
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.events[0] as CloudEvent;
}

/** Handle while the fake clock moves (EC2 is asked again after a model-time pause). */
async function handle(e: CloudEvent) {
  const out = intake.handle(e);
  for (let i = 0; i < 5; i++) await fake.advance(10);
  return out;
}
const timeline = async (kind: string) => (await store.events.list("db", 100)).filter((e) => e.kind === kind).map((e) => e.message);

describe("QueueIntake: events that are not EventBridge's about this coordinator's instances", () => {
  it("refuses a terminated state change from another account and region for a running, healthy instance (regression: it started a lost replacement)", async () => {
    ec2State = "terminated"; // even were EC2 to agree, the event itself is not genuine
    expect(await handle(event("terminated", { account: "999999999999", region: "eu-west-3" }))).toBe("refused");
    expect(replaces).toEqual([]);
    expect(await timeline("queue-event-refused")).toEqual([
      expect.stringMatching(/account "999999999999" is not this coordinator's \(123456789012\)/),
    ]);
    // Not recorded by id: the genuine event with that id is still handled.
    expect(await store.queueEvents.get("e-terminated")).toBeNull();
  });

  it("refuses a spot warning from another region, and one whose resources do not name the instance", async () => {
    expect(await handle(event("warning", { id: "e-1", region: "eu-west-3" }))).toBe("refused");
    expect(await handle(event("warning", { id: "e-2", resources: [] }))).toBe("refused");
    expect(await handle(event("warning", { id: "e-3", resources: ["arn:aws:ec2:us-east-1a:instance/i-0fffffffffffffff0"] }))).toBe(
      "refused",
    );
    expect(await handle(event("warning", { id: "e-4", resources: [`arn:aws:ec2:eu-west-3a:instance/${ID}`] }))).toBe("refused");
    expect(replaces).toEqual([]);
    const refused = await timeline("queue-event-refused");
    expect(refused).toHaveLength(4);
    expect(refused[0]).toMatch(/region "eu-west-3" is not this coordinator's \(us-east-1\)/);
    expect(refused[1]).toMatch(/resources \(none\) do not name i-0123456789abcdef0/);
  });

  it("records and ignores a warning dated 2001 (regression: it replaced a healthy instance with a deadline in the past)", async () => {
    spotStatus = "marked-for-termination";
    expect(await handle(event("warning", { time: Date.parse("2001-01-01T00:00:00Z") }))).toBe("stale");
    expect(replaces).toEqual([]);
    expect((await store.queueEvents.get("e-warning"))?.outcome).toBe("stale");
    expect((await timeline("queue-decision"))[0]).toMatch(
      /stale: it arrived \d+ s after it was sent, later than EC2's 120 s notice window/,
    );
  });

  it("acts on a fresh warning recorded before a crash when it is redelivered later (freshness is judged at its first arrival)", async () => {
    spotStatus = "marked-for-termination";
    const e = event("warning");
    // Recorded, then the coordinator died before deciding; the redelivery comes five minutes later.
    await store.queueEvents.record({ eventId: e.id, kind: e.kind, ec2InstanceId: ID, instance: "db", data: e });
    await fake.advance(300_000);
    expect(await handle(e)).toBe("acted");
    expect(replaces).toHaveLength(1);
  });

  it("does not act on a warning EC2 does not confirm, and says so on the timeline", async () => {
    expect(await handle(event("warning"))).toBe("unconfirmed");
    expect(replaces).toEqual([]);
    expect((await timeline("queue-decision"))[0]).toMatch(
      /unconfirmed: EC2 does not confirm it \(spot request sir-1 is fulfilled, instance running\); nothing is terminated/,
    );
    // A redelivery is a duplicate, not a second chance.
    spotStatus = "marked-for-termination";
    expect(await handle(event("warning"))).toBe("duplicate");
    expect(replaces).toEqual([]);
  });

  it("does not start a lost replacement on a terminated state change while EC2 says the instance runs", async () => {
    expect(await handle(event("terminated"))).toBe("unconfirmed");
    expect(replaces).toEqual([]);
  });

  it("acts on a genuine warning EC2 confirms, and on a terminated state change EC2 confirms", async () => {
    spotStatus = "marked-for-termination";
    expect(await handle(event("warning"))).toBe("acted");
    expect(replaces).toEqual([
      { trigger: "spot-interruption", why: expect.stringMatching(/confirmed by EC2: spot request sir-1 is marked-for-termination/) },
    ]);
    ec2State = null;
    spotStatus = null;
    expect(await handle(event("terminated"))).toBe("acted");
    expect(replaces[1]?.trigger).toBe("lost");
    expect(await timeline("queue-decision")).toEqual([
      expect.stringMatching(
        /e-warning: acted: confirmed by EC2 \(spot request sir-1 is marked-for-termination\); replacement wf-r1 started/,
      ),
      expect.stringMatching(/e-terminated: acted: confirmed by EC2 \(the instance is gone\); recovery wf-r2 started/),
    ]);
  });

  it("leaves an event for redelivery while the coordinator's account is not known", async () => {
    origin = null;
    await expect(intake.handle(event("warning"))).rejects.toThrow(/account is not known yet/);
    expect(await store.queueEvents.get("e-warning")).toBeNull();
  });
});
