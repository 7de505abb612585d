import { describe, expect, it } from "vitest";
import { parseConfig } from "../config.js";
import { leaseTimings } from "./config.js";

const store = { url: "postgres://spotkeep@db.internal:5432/spotkeep" };

describe("ha config", () => {
  it("defaults: a 15 s lease, a margin of a fifth of it, agents given publicUrl", () => {
    const c = parseConfig({ store, ha: {} });
    expect(c.ha).toEqual({ leaseSeconds: 15 });
    expect(leaseTimings(c.ha!)).toEqual({ ttlMs: 15_000, marginMs: 3_000 });
    expect(leaseTimings(parseConfig({ store, ha: { leaseSeconds: 4, marginSeconds: 1 } }).ha!)).toEqual({ ttlMs: 4000, marginMs: 1000 });
  });

  it("refuses ha without a PostgreSQL store, and bad values, naming the field", () => {
    expect(() => parseConfig({ ha: {} })).toThrow(/ha: needs store\.url/);
    expect(() => parseConfig({ store, ha: { leaseSeconds: 0.5 } })).toThrow(/ha\.leaseSeconds/);
    expect(() => parseConfig({ store, ha: { leaseSeconds: 5, marginSeconds: 5 } })).toThrow(
      /ha\.marginSeconds: must be less than leaseSeconds \(5\)/,
    );
    expect(() => parseConfig({ store, ha: { agentUrls: ["ws://a:7400"] } })).toThrow(/ha\.agentUrls\[0\]: must be an http/);
    expect(() => parseConfig({ store, ha: { agentUrls: [] } })).toThrow(/ha\.agentUrls/);
    expect(() => parseConfig({ store, ha: { leader: true } })).toThrow(/leader/);
  });
});
