/**
 * What spot saved: for every generation of every stateful instance (deleted ones too), the hours
 * it ran and on which market; spot hours are priced with DescribeSpotPriceHistory for the
 * generation's type and AZ over the time it ran (the price in effect at each moment), on-demand
 * hours and the on-demand equivalent with the on-demand price table (DEFAULT_ON_DEMAND_PRICES
 * overlaid with the config's `onDemandPrices`). Hours are model hours (real ÷ timeScale).
 * A generation whose type has no on-demand price, or no spot price history, is listed as
 * unpriced and left out of the money (never guessed).
 */
import { regionOfZone, type Regions } from "./cloud/regions.js";
import type { InstanceDetail, Savings, SavingsLine } from "../shared/api.js";
import type { Ec2Gateway, SpotPricePoint } from "./cloud/gateway.js";

/** Linux on-demand list prices in us-east-1, USD per hour (other regions: set `onDemandPrices`). */
export const DEFAULT_ON_DEMAND_PRICES: Readonly<Record<string, number>> = {
  "t3.micro": 0.0104,
  "t3.small": 0.0208,
  "t3.medium": 0.0416,
  "t3.large": 0.0832,
  "t3.xlarge": 0.1664,
  "t3.2xlarge": 0.3328,
  "m5.large": 0.096,
  "m5.xlarge": 0.192,
  "m5.2xlarge": 0.384,
  "m5.4xlarge": 0.768,
  "m6i.large": 0.096,
  "m6i.xlarge": 0.192,
  "m6i.2xlarge": 0.384,
  "m6i.4xlarge": 0.768,
  "m7i.large": 0.1008,
  "m7i.xlarge": 0.2016,
  "c5.large": 0.085,
  "c5.xlarge": 0.17,
  "c6i.large": 0.085,
  "c6i.xlarge": 0.17,
  "c6i.2xlarge": 0.34,
  "r5.large": 0.126,
  "r5.xlarge": 0.252,
  "r6i.large": 0.126,
  "r6i.xlarge": 0.252,
  "r6i.2xlarge": 0.504,
  // Graviton (arm64).
  "t4g.micro": 0.0084,
  "t4g.small": 0.0168,
  "t4g.medium": 0.0336,
  "t4g.large": 0.0672,
  "m7g.large": 0.0816,
  "m7g.xlarge": 0.1632,
  "m7g.2xlarge": 0.3264,
  "c7g.large": 0.0725,
  "c7g.xlarge": 0.145,
  "c7g.2xlarge": 0.289,
};

/** Spot price series are fetched once per type and AZ per this many real ms. */
const SERIES_TTL_MS = 5 * 60_000;
const HOUR_MS = 3_600_000;

export interface SavingsDeps {
  instances(): Promise<InstanceDetail[]>;
  ec2: Pick<Ec2Gateway, "describeSpotPriceHistory">;
  /** The regions managed: a zone's spot prices come from its region's EC2 (absent: `ec2` for all). */
  regions?: Regions;
  onDemandPrices: Record<string, number>;
  timeScale: number;
  now(): number;
}

/** Cost of [from, to) at a piecewise-constant price series (USD per model hour). */
export function spotCost(series: SpotPricePoint[], from: number, to: number, timeScale: number): number | null {
  if (series.length === 0 || to <= from) return series.length === 0 ? null : 0;
  let cost = 0;
  for (let i = 0; i < series.length; i++) {
    // The first record's price also covers the time before it (EC2 includes the price in effect at the start).
    const start = i === 0 ? from : Math.max(from, series[i]!.at.getTime());
    const end = i + 1 < series.length ? Math.min(to, series[i + 1]!.at.getTime()) : to;
    if (end > start) cost += (series[i]!.price * (end - start)) / timeScale / HOUR_MS;
  }
  return cost;
}

export class SavingsReport {
  private readonly prices: Record<string, number>;
  private readonly cache = new Map<string, { fetchedAt: number; from: number; series: SpotPricePoint[] }>();

  constructor(private readonly deps: SavingsDeps) {
    this.prices = { ...DEFAULT_ON_DEMAND_PRICES, ...deps.onDemandPrices };
  }

  private async series(type: string, az: string, from: number, now: number): Promise<SpotPricePoint[] | null> {
    // Spot prices are regional: each zone's come from the EC2 of its region.
    const region = this.deps.regions ? regionOfZone(az) : null;
    const ec2 = region && this.deps.regions?.allows(region) ? this.deps.regions.ec2(region) : this.deps.ec2;
    const get = ec2.describeSpotPriceHistory;
    if (!get) return null;
    const key = `${type}/${az}`;
    const hit = this.cache.get(key);
    if (hit && hit.from <= from && Date.now() - hit.fetchedAt < SERIES_TTL_MS) return hit.series;
    const series = await get.call(ec2, { instanceType: type, availabilityZone: az, start: new Date(from), end: new Date(now) });
    this.cache.set(key, { fetchedAt: Date.now(), from, series });
    return series;
  }

  async report(): Promise<Savings> {
    const now = this.deps.now();
    const hours = (ms: number) => ms / this.deps.timeScale / HOUR_MS;
    const lines: SavingsLine[] = [];
    for (const inst of await this.deps.instances()) {
      const line: SavingsLine = {
        name: inst.name,
        spotHours: 0,
        onDemandHours: 0,
        spotCost: 0,
        onDemandCost: 0,
        onDemandEquivalent: 0,
        saved: 0,
        unpriced: [],
      };
      for (const g of inst.generations) {
        if (!g.launchedAt || !g.lifecycle || !g.instanceType) continue;
        const from = Date.parse(g.launchedAt);
        const to = g.endedAt ? Date.parse(g.endedAt) : now;
        if (!(to > from)) continue;
        const h = hours(to - from);
        const od = this.prices[g.instanceType];
        if (g.lifecycle === "on-demand") line.onDemandHours += h;
        else line.spotHours += h;
        if (od === undefined) {
          line.unpriced.push(`generation ${g.generation}: no on-demand price for ${g.instanceType} (add it to onDemandPrices)`);
          continue;
        }
        if (g.lifecycle === "on-demand") {
          line.onDemandCost += od * h;
          line.onDemandEquivalent += od * h;
          continue;
        }
        const series = g.availabilityZone ? await this.series(g.instanceType, g.availabilityZone, from, now) : null;
        const cost = series ? spotCost(series, from, to, this.deps.timeScale) : null;
        if (cost === null) {
          line.unpriced.push(
            `generation ${g.generation}: no spot price history for ${g.instanceType} in ${g.availabilityZone ?? "an unknown AZ"}`,
          );
          continue;
        }
        line.spotCost += cost;
        line.onDemandEquivalent += od * h;
      }
      line.saved = line.onDemandEquivalent - line.spotCost - line.onDemandCost;
      lines.push(line);
    }
    const sum = (k: "spotHours" | "onDemandHours" | "spotCost" | "onDemandCost" | "onDemandEquivalent" | "saved") =>
      lines.reduce((n, l) => n + l[k], 0);
    return {
      currency: "USD",
      at: new Date(now).toISOString(),
      instances: lines,
      total: {
        spotHours: sum("spotHours"),
        onDemandHours: sum("onDemandHours"),
        spotCost: sum("spotCost"),
        onDemandCost: sum("onDemandCost"),
        onDemandEquivalent: sum("onDemandEquivalent"),
        saved: sum("saved"),
      },
    };
  }
}
