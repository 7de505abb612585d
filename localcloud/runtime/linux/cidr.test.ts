import { describe, expect, it } from "vitest";
import { cidrsOverlap, gatewayOf, parseCidr, parseIp } from "./cidr.js";
import { vethName } from "./network.js";

describe("linux runtime address arithmetic", () => {
  it("gives each default-VPC subnet its .1 gateway", () => {
    expect(gatewayOf("172.31.0.0/20")).toBe("172.31.0.1");
    expect(gatewayOf("172.31.16.0/20")).toBe("172.31.16.1");
    expect(gatewayOf("172.31.32.0/20")).toBe("172.31.32.1");
  });

  it("detects overlap between a host route and the VPC in both directions", () => {
    const vpc = parseCidr("172.31.0.0/16");
    expect(cidrsOverlap(vpc, parseCidr("172.31.200.0/24"))).toBe(true);
    expect(cidrsOverlap(vpc, parseCidr("172.16.0.0/12"))).toBe(true);
    expect(cidrsOverlap(vpc, parseCidr("172.32.0.0/16"))).toBe(false);
    expect(cidrsOverlap(vpc, parseCidr("192.0.2.0/24"))).toBe(false);
  });

  it("rejects malformed addresses and CIDRs, naming the input", () => {
    expect(() => parseIp("172.31.0.256")).toThrow(/172\.31\.0\.256/);
    expect(() => parseCidr("172.31.0.0/33")).toThrow(/not an IPv4 CIDR/);
    expect(() => parseCidr("172.31.0.0/2x")).toThrow(/not an IPv4 CIDR/);
  });

  it("names host-side veths within the 15-character interface limit", () => {
    const n = vethName("i-0123456789abcdef0");
    expect(n).toMatch(/^skv[0-9a-f]{12}$/);
    expect(n.length).toBeLessThanOrEqual(15);
    expect(vethName("i-0123456789abcdef1")).not.toBe(n);
  });
});
