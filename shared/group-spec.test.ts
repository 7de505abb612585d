import { describe, expect, it } from "vitest";
import { memberName, memberSpec, parseGroupSpec } from "./group-spec.js";

const template = {
  launch: { imageId: "ami-0123456789abcdef0", instanceTypes: ["m5.large"], subnetIds: ["subnet-0000000000000000a"] },
  persistence: { volumes: [{ device: "/dev/sdf", sizeGiB: 10, mountPoint: "/data/" }] },
};
const group = (extra: Record<string, unknown> = {}) => ({
  kind: "group",
  name: "kafka",
  size: 3,
  ipPool: ["172.31.0.10", "172.31.0.11", "172.31.16.10"],
  template,
  ...extra,
});

describe("group spec", () => {
  it("fills defaults and derives each member's spec from the template", () => {
    const g = parseGroupSpec(group());
    expect(g.maxUnavailable).toBe(1);
    expect(g.template.persistence.network.privateIp).toBe("same-eni");
    const m = memberSpec(g, 2);
    expect(m.name).toBe("kafka-2");
    expect(m.persistence.volumes[0]?.mountPoint).toBe("/data");
    expect(memberName("kafka", 0)).toBe("kafka-0");
    // Each member's spec is its own copy.
    m.persistence.volumes.pop();
    expect(memberSpec(g, 2).persistence.volumes).toHaveLength(1);
  });

  it("parses YAML", () => {
    const g = parseGroupSpec(
      "kind: group\nname: db\nsize: 1\nipPool: [10.0.0.5]\ntemplate:\n  launch: {imageId: ami-0123456789abcdef0, instanceTypes: [m5.large], subnetIds: [subnet-0000000000000000a]}\n",
    );
    expect(g.name).toBe("db");
  });

  it("names every bad field, template fields under template.", () => {
    const bad = () =>
      parseGroupSpec(
        group({
          size: 4,
          maxUnavailable: 0,
          ipPool: ["172.31.0.10", "172.31.0.10", "300.1.1.1"],
          template: { ...template, name: "x", launch: { ...template.launch, instanceTypes: [] } },
        }),
      );
    expect(bad).toThrow(/maxUnavailable: must be at least 1/);
    expect(bad).toThrow(/ipPool\[2\]: is not an IPv4 address/);
    expect(() => parseGroupSpec(group({ size: 4 }))).toThrow("size: 4 members need 4 addresses; ipPool lists 3");
    expect(() => parseGroupSpec(group({ ipPool: ["172.31.0.10", "172.31.0.10"], size: 1 }))).toThrow("ipPool[1]: repeats ipPool[0]");
    expect(() => parseGroupSpec(group({ template: { ...template, name: "x" } }))).toThrow(/template.name: members are named by the group/);
    expect(() => parseGroupSpec(group({ template: { ...template, launch: { ...template.launch, instanceTypes: [] } } }))).toThrow(
      /template.launch.instanceTypes: needs at least one instance type/,
    );
  });

  it("refuses what a group cannot honour: another privateIp mode, adopted volumes, a long name, a bad kind", () => {
    expect(() => parseGroupSpec(group({ template: { ...template, persistence: { network: { privateIp: "none" } } } }))).toThrow(
      /template.persistence.network.privateIp: must be same-eni in a group/,
    );
    expect(() =>
      parseGroupSpec(
        group({
          template: {
            ...template,
            persistence: { volumes: [{ device: "/dev/sdf", sizeGiB: 10, mountPoint: "/d", volumeId: "vol-0123456789abcdef0" }] },
          },
        }),
      ),
    ).toThrow(/template.persistence.volumes\[0\].volumeId: cannot be adopted by a group/);
    expect(() => parseGroupSpec(group({ name: "a".repeat(59) }))).toThrow(/name: .* must be 1-58/);
    expect(() => parseGroupSpec(group({ kind: "instance" }))).toThrow(/kind: must be "group"/);
    expect(() => parseGroupSpec(group({ extra: 1 }))).toThrow(/unknown field "extra"/);
    expect(() => parseGroupSpec("a: [")).toThrow(/spec: is not valid JSON or YAML/);
    expect(() => parseGroupSpec(group({ size: 101, ipPool: Array.from({ length: 101 }, (_, i) => `10.0.1.${i}`) }))).toThrow(
      /size: must be at most 100/,
    );
  });
});
