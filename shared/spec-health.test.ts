import { describe, expect, it } from "vitest";
import { ValidationError } from "./errors.js";
import { parseSpec } from "./spec.js";

const base = {
  name: "dev-box",
  launch: { imageId: "ami-0abc0123456789def", instanceTypes: ["t3.medium"], subnetIds: ["subnet-0a0000000000000a1"] },
};

function errorOf(extra: Record<string, unknown>): string {
  try {
    parseSpec({ ...base, ...extra });
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as Error).message;
  }
  throw new Error("expected a ValidationError");
}

describe("spec health and maintenance", () => {
  it("has no health checks by default and recycles 15 minutes ahead of maintenance", () => {
    const spec = parseSpec(base);
    expect(spec.health).toBeUndefined();
    expect(spec.maintenance).toEqual({ recycle: true, leadSeconds: 900 });
  });

  it("fills the health defaults", () => {
    expect(parseSpec({ ...base, health: { type: "agent" } }).health).toEqual({
      type: "agent",
      gracePeriodSeconds: 120,
      unhealthyDurationSeconds: 120,
      autoHealing: true,
    });
    expect(parseSpec({ ...base, health: { type: "http", http: { port: 8080 } } }).health?.http).toEqual({ port: 8080, path: "/" });
    expect(parseSpec({ ...base, maintenance: { leadSeconds: 300 } }).maintenance).toEqual({ recycle: true, leadSeconds: 300 });
  });

  it("rejects bad health settings with the field named", () => {
    expect(errorOf({ health: { type: "ping" } })).toMatch(/health\.type: "ping" is not one of agent, ec2, http/);
    expect(errorOf({ health: {} })).toMatch(/health\.type: is required/);
    expect(errorOf({ health: { type: "http" } })).toMatch(/health\.http: is required when type is http/);
    expect(errorOf({ health: { type: "agent", http: { port: 80 } } })).toMatch(/health\.http: is only used when type is http/);
    expect(errorOf({ health: { type: "http", http: { port: 0 } } })).toMatch(/health\.http\.port: must be a port/);
    expect(errorOf({ health: { type: "http", http: { port: 70000 } } })).toMatch(/health\.http\.port/);
    expect(errorOf({ health: { type: "http", http: { port: 80, path: "healthz" } } })).toMatch(/health\.http\.path: must start with/);
    expect(errorOf({ health: { type: "http", http: { port: 80, path: "/a b" } } })).toMatch(/health\.http\.path: must be printable/);
    expect(errorOf({ health: { type: "http", http: { port: 80, host: "x" } } })).toMatch(/health\.http: unknown field "host"/);
    expect(errorOf({ health: { type: "agent", gracePeriodSeconds: -1 } })).toMatch(/health\.gracePeriodSeconds: must be 0 or more/);
    expect(errorOf({ health: { type: "agent", gracePeriodSeconds: 1.5 } })).toMatch(/health\.gracePeriodSeconds: must be a whole/);
    expect(errorOf({ health: { type: "agent", unhealthyDurationSeconds: 5 } })).toMatch(
      /health\.unhealthyDurationSeconds: must be at least 10/,
    );
    expect(errorOf({ health: { type: "ec2", autoHealing: "yes" } })).toMatch(/health\.autoHealing/);
    expect(errorOf({ health: { type: "ec2", interval: 5 } })).toMatch(/health: unknown field "interval"/);
    expect(errorOf({ maintenance: { leadSeconds: 10 } })).toMatch(/maintenance\.leadSeconds: must be at least 60/);
    expect(errorOf({ maintenance: { recycle: "no" } })).toMatch(/maintenance\.recycle/);
  });
});
