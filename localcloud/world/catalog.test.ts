import { describe, expect, it } from "vitest";
import { INSTANCE_TYPES, coreCount, instanceType, regionCatalog, spotPrice, threadsPerCore, zoneIdPrefix } from "./catalog.js";

describe("localcloud instance type catalog", () => {
  it("has the Graviton types as arm64 with one thread per core, and every x86_64 type keeps two", () => {
    const arm = INSTANCE_TYPES.filter((t) => t.architecture === "arm64").map((t) => t.name);
    for (const n of ["t4g.micro", "t4g.small", "t4g.medium", "t4g.large", "m7g.large", "m7g.xlarge", "m7g.2xlarge", "c7g.large"])
      expect(arm).toContain(n);
    expect(arm).toEqual(expect.arrayContaining(["c7g.xlarge", "c7g.2xlarge"]));
    const m7g = instanceType("m7g.xlarge")!;
    expect({ threads: threadsPerCore(m7g), cores: coreCount(m7g) }).toEqual({ threads: 1, cores: 4 });
    const m6i = instanceType("m6i.xlarge")!;
    expect({ threads: threadsPerCore(m6i), cores: coreCount(m6i) }).toEqual({ threads: 2, cores: 2 });
    for (const t of INSTANCE_TYPES) if (!t.name.includes("g.")) expect(t.architecture, t.name).toBe("x86_64");
  });

  it("prices an arm64 type below its x86_64 peer, and its spot price below on-demand in every AZ", () => {
    expect(instanceType("m7g.large")!.onDemand).toBeLessThan(instanceType("m6i.large")!.onDemand);
    expect(instanceType("c7g.large")!.onDemand).toBeLessThan(instanceType("c6i.large")!.onDemand);
    for (const az of regionCatalog("us-east-1").azs) {
      const p = spotPrice(instanceType("t4g.micro")!, az);
      expect(p).toBeGreaterThan(0);
      expect(p).toBeLessThan(instanceType("t4g.micro")!.onDemand);
    }
  });

  it("gives each Graviton type EC2's ENI and IPv4-per-ENI limits", () => {
    const limits = Object.fromEntries(
      INSTANCE_TYPES.filter((t) => t.architecture === "arm64").map((t) => [t.name, [t.maxEnis, t.ipsPerEni]]),
    );
    expect(limits).toEqual({
      "t4g.micro": [2, 2],
      "t4g.small": [3, 4],
      "t4g.medium": [3, 6],
      "t4g.large": [3, 12],
      "m7g.large": [3, 10],
      "m7g.xlarge": [4, 15],
      "m7g.2xlarge": [4, 15],
      "c7g.large": [3, 10],
      "c7g.xlarge": [4, 15],
      "c7g.2xlarge": [4, 15],
    });
  });

  it("names each region's AZs and zone ids as AWS does, and gives each region its own key pair ids", () => {
    expect(regionCatalog("us-east-1").azIds).toEqual({ "us-east-1a": "use1-az1", "us-east-1b": "use1-az2", "us-east-1c": "use1-az4" });
    expect(regionCatalog("us-west-2").azs).toEqual(["us-west-2a", "us-west-2b", "us-west-2c"]);
    expect(["ap-southeast-2", "eu-central-1", "us-gov-west-1", "ca-central-1"].map(zoneIdPrefix)).toEqual([
      "apse2",
      "euc1",
      "usgw1",
      "cac1",
    ]);
    const east = regionCatalog("us-east-1").keyPairs;
    const west = regionCatalog("us-west-2").keyPairs;
    expect(west.map((k) => k.name)).toEqual(east.map((k) => k.name));
    expect(west.map((k) => k.fingerprint)).toEqual(east.map((k) => k.fingerprint));
    expect(west.map((k) => k.id)).not.toEqual(east.map((k) => k.id));
    expect(() => regionCatalog("useast1")).toThrow(/not a region name/);
  });
});
