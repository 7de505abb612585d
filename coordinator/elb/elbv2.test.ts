import { describe, expect, it } from "vitest";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { parseConfig } from "../config.js";
import { createElbGateway, elbEndpointFor } from "./elbv2.js";

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

describe("the ELBv2 gateway's mutation check", () => {
  it("refuses a mutation before anything is sent when beforeMutation throws", async () => {
    let requests = 0;
    const server = createServer((req, res) => {
      requests++;
      req.resume();
      res.writeHead(500).end();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    try {
      const seen: string[] = [];
      const elb = createElbGateway({
        region: "us-east-1",
        endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        maxAttempts: 1,
        beforeMutation: (action) => {
          seen.push(action);
          throw new Error(`${action}: refused, this coordinator is not the leader`);
        },
      });
      const arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";
      await expect(elb.registerTargets(arn, ["i-0123456789abcdef0"])).rejects.toThrow(/ELB RegisterTargets: refused/);
      expect(seen).toEqual(["ELB RegisterTargets"]);
      expect(requests).toBe(0);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
