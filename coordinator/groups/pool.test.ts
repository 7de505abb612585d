import { describe, expect, it } from "vitest";
import type { EniInfo } from "../cloud/gateway.js";
import type { GroupMember } from "../db/store.js";
import { addressCandidates, firstFreeAddress, spread } from "./pool.js";

const subnets = [
  { subnetId: "subnet-a", availabilityZone: "us-east-1a", cidr: "172.31.0.0/20" },
  { subnetId: "subnet-b", availabilityZone: "us-east-1b", cidr: "172.31.16.0/20" },
];
const pool = ["172.31.0.10", "172.31.0.11", "172.31.16.10", "172.31.16.11", "10.9.9.9"];
const member = (ordinal: number, privateIp: string, az: string): GroupMember => ({
  group: "kafka",
  ordinal,
  instance: `kafka-${ordinal}`,
  privateIp,
  subnetId: az.endsWith("a") ? "subnet-a" : "subnet-b",
  availabilityZone: az,
  status: "active",
  createdAt: 0,
});
const fakeEc2 = (taken: Record<string, string>) => {
  const calls: Array<{ subnetId: string; ips: string[] }> = [];
  return {
    calls,
    networkInterfacesAt: async (subnetId: string, ips: string[]): Promise<EniInfo[]> => {
      calls.push({ subnetId, ips });
      return ips
        .filter((ip) => taken[ip])
        .map((ip) => ({
          eniId: taken[ip] as string,
          status: "in-use",
          privateIp: ip,
          subnetId,
          availabilityZone: "x",
          attachedTo: null,
          tags: {},
        }));
    },
  };
};

describe("the group's address pool", () => {
  it("spreads: the AZ with the fewest members first, then template order, skipping claimed addresses and ones in no subnet", () => {
    expect(addressCandidates(pool, subnets, []).map((c) => c.privateIp)).toEqual([
      "172.31.0.10",
      "172.31.0.11",
      "172.31.16.10",
      "172.31.16.11",
    ]);
    const one = [member(0, "172.31.0.10", "us-east-1a")];
    expect(addressCandidates(pool, subnets, one).map((c) => `${c.availabilityZone}@${c.privateIp}`)).toEqual([
      "us-east-1b@172.31.16.10",
      "us-east-1b@172.31.16.11",
      "us-east-1a@172.31.0.11",
    ]);
    const two = [...one, member(1, "172.31.16.10", "us-east-1b")];
    expect(addressCandidates(pool, subnets, two)[0]?.privateIp).toBe("172.31.0.11");
    expect(spread(subnets, two)).toEqual({ "us-east-1a": 1, "us-east-1b": 1 });
    expect(spread(subnets, [])).toEqual({ "us-east-1a": 0, "us-east-1b": 0 });
  });

  it("takes the first address EC2 shows free, asking per subnet, and reports the ones it skipped", async () => {
    const ec2 = fakeEc2({ "172.31.0.10": "eni-other" });
    const cands = addressCandidates(pool, subnets, []);
    const { choice, skipped } = await firstFreeAddress(ec2, "kafka", pool, cands, []);
    expect(choice).toEqual({ privateIp: "172.31.0.11", subnetId: "subnet-a", availabilityZone: "us-east-1a" });
    expect(skipped).toEqual(["172.31.0.10 (in use by eni-other)"]);
    expect(ec2.calls.map((c) => c.subnetId).sort()).toEqual(["subnet-a", "subnet-b"]);
  });

  it("runs out with an error naming the pool and why each address was passed over", async () => {
    const members = [member(0, "172.31.0.10", "us-east-1a"), member(1, "172.31.16.10", "us-east-1b")];
    const ec2 = fakeEc2({ "172.31.0.11": "eni-1", "172.31.16.11": "eni-2" });
    const err = await firstFreeAddress(ec2, "kafka", pool, addressCandidates(pool, subnets, members), members).catch((e) => e);
    expect(err.kind).toBe("pool-exhausted");
    expect(err.message).toBe(
      "the ipPool of group kafka has no free address (owned by members: 172.31.0.10 (kafka-0), 172.31.16.10 (kafka-1); " +
        "in use in EC2: 172.31.0.11 (in use by eni-1), 172.31.16.11 (in use by eni-2); in none of the template's subnets: 10.9.9.9)",
    );
  });
});
