import { describe, expect, it } from "vitest";
import type { InstanceDetail } from "../shared/api.js";
import type { SpotPricePoint } from "./cloud/gateway.js";
import { DEFAULT_ON_DEMAND_PRICES, SavingsReport, spotCost } from "./savings.js";

const H = 3_600_000;
const T0 = Date.parse("2026-01-01T00:00:00Z");
const at = (h: number) => new Date(T0 + h * H);
const point = (h: number, price: number): SpotPricePoint => ({
  instanceType: "m5.large",
  availabilityZone: "us-east-1a",
  price,
  at: at(h),
});

function instance(
  name: string,
  gens: Array<{ lifecycle: "spot" | "on-demand"; type: string; from: number; to: number | null }>,
): InstanceDetail {
  return {
    name,
    generations: gens.map((g, i) => ({
      generation: i + 1,
      instanceId: `i-${i}`,
      instanceType: g.type,
      availabilityZone: "us-east-1a",
      lifecycle: g.lifecycle,
      launchedAt: at(g.from).toISOString(),
      endedAt: g.to === null ? null : at(g.to).toISOString(),
      endReason: null,
    })),
  } as unknown as InstanceDetail;
}

describe("spotCost", () => {
  it("integrates the price in effect at each moment, the first record covering the time before it", () => {
    const series = [point(1, 0.03), point(3, 0.05)];
    // 0-3 h at 0.03 (the first record covers 0-1 too), 3-4 h at 0.05.
    expect(spotCost(series, T0, T0 + 4 * H, 1)).toBeCloseTo(0.09 + 0.05, 10);
    // Time-scaled: 1 real hour at scale 0.5 is 2 model hours.
    expect(spotCost([point(0, 0.03)], T0, T0 + H, 0.5)).toBeCloseTo(0.06, 10);
    expect(spotCost([], T0, T0 + H, 1)).toBeNull();
  });
});

describe("SavingsReport", () => {
  const calls: string[] = [];
  const ec2 = {
    async describeSpotPriceHistory(q: { instanceType: string; availabilityZone: string; start: Date; end: Date }) {
      calls.push(`${q.instanceType}/${q.availabilityZone}`);
      return q.instanceType === "m5.large" ? [point(0, 0.03)] : [];
    },
  };

  it("prices spot hours at the spot price and compares with on-demand; unpriced generations are named, never guessed", async () => {
    const report = new SavingsReport({
      instances: async () => [
        instance("db", [
          { lifecycle: "spot", type: "m5.large", from: 0, to: 10 },
          { lifecycle: "on-demand", type: "m5.large", from: 10, to: 12 },
          { lifecycle: "spot", type: "m5.large", from: 12, to: null },
        ]),
        instance("odd", [
          { lifecycle: "spot", type: "x9.huge", from: 0, to: 1 },
          { lifecycle: "spot", type: "c6i.large", from: 1, to: 2 },
        ]),
      ],
      ec2,
      onDemandPrices: { "x1.tiny": 0.5 },
      timeScale: 1,
      now: () => T0 + 20 * H,
    });
    const r = await report.report();
    const db = r.instances.find((l) => l.name === "db")!;
    const od = DEFAULT_ON_DEMAND_PRICES["m5.large"]!;
    expect(db.spotHours).toBeCloseTo(18, 10);
    expect(db.onDemandHours).toBeCloseTo(2, 10);
    expect(db.spotCost).toBeCloseTo(18 * 0.03, 10);
    expect(db.onDemandCost).toBeCloseTo(2 * od, 10);
    expect(db.onDemandEquivalent).toBeCloseTo(20 * od, 10);
    expect(db.saved).toBeCloseTo(18 * (od - 0.03), 10);
    expect(db.unpriced).toEqual([]);
    const odd = r.instances.find((l) => l.name === "odd")!;
    expect(odd.unpriced).toEqual([
      "generation 1: no on-demand price for x9.huge (add it to onDemandPrices)",
      "generation 2: no spot price history for c6i.large in us-east-1a",
    ]);
    expect(odd.saved).toBe(0);
    expect(r.total.saved).toBeCloseTo(db.saved, 10);
    // The series is fetched once per type and AZ and reused.
    await report.report();
    expect(calls.filter((c) => c === "m5.large/us-east-1a")).toHaveLength(1);
  });

  it("lays the config's prices over the defaults", async () => {
    const r = await new SavingsReport({
      instances: async () => [instance("db", [{ lifecycle: "on-demand", type: "m5.large", from: 0, to: 1 }])],
      ec2,
      onDemandPrices: { "m5.large": 0.2 },
      timeScale: 1,
      now: () => T0 + H,
    }).report();
    expect(r.instances[0]!.onDemandCost).toBeCloseTo(0.2, 10);
  });
});
