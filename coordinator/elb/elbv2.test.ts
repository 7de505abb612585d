import { describe, expect, it } from "vitest";
import { parseConfig } from "../config.js";
import { elbEndpointFor } from "./elbv2.js";

describe("the ELBv2 endpoint", () => {
  it("is the configured one, else a non-AWS EC2 endpoint (localcloud serves both), else AWS's own", () => {
    expect(elbEndpointFor(parseConfig({}))).toBeUndefined();
    expect(elbEndpointFor(parseConfig({ ec2Endpoint: "http://127.0.0.1:4566" }))).toBe("http://127.0.0.1:4566");
    // An EC2 VPC endpoint is EC2's only: ELBv2 goes to its own service endpoint.
    expect(elbEndpointFor(parseConfig({ ec2Endpoint: "https://vpce-0abc-ec2.ec2.us-east-1.vpce.amazonaws.com" }))).toBeUndefined();
    expect(
      elbEndpointFor(
        parseConfig({ ec2Endpoint: "http://127.0.0.1:4566", elbEndpoint: "https://elasticloadbalancing.us-east-1.amazonaws.com" }),
      ),
    ).toBe("https://elasticloadbalancing.us-east-1.amazonaws.com");
    expect(() => parseConfig({ elbEndpoint: "elb" })).toThrow(/elbEndpoint: must be an http/);
  });
});
