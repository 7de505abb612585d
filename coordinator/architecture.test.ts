import { describe, expect, it } from "vitest";
import type { ImageInfo } from "./cloud/gateway.js";
import { architectureProblems, architectureRefusal, specImage } from "./architecture.js";

const image = (imageId: string, architecture: string): ImageInfo => ({
  imageId,
  state: "available",
  name: imageId,
  rootDeviceName: "/dev/xvda",
  architecture,
  rootSnapshotId: null,
  platform: null,
  instanceStoreDevices: [],
  tags: {},
});

const TYPES = new Map([
  ["m6i.large", ["x86_64"]],
  ["t2.micro", ["i386", "x86_64"]],
  ["m7g.large", ["arm64"]],
]);

function gateway() {
  const asked: string[][] = [];
  return {
    asked,
    describeImage: async (id: string) => (id === "ami-0aaaaaaaaaaaaaaaa" ? image(id, "x86_64") : null),
    instanceTypeArchitectures: async (types: string[]) => {
      asked.push(types);
      return new Map(types.flatMap((t) => (TYPES.has(t) ? [[t, TYPES.get(t)!] as const] : [])));
    },
  };
}

describe("instance types against the image's architecture", () => {
  it("names each type that cannot boot the image, by its index in the field", async () => {
    const ec2 = gateway();
    const img = await specImage(ec2, "ami-0aaaaaaaaaaaaaaaa");
    expect(await architectureProblems(ec2, ["m6i.large", "m7g.large", "t2.micro"], img)).toEqual([
      "launch.instanceTypes[1]: m7g.large is arm64 but image ami-0aaaaaaaaaaaaaaaa is x86_64",
    ]);
    expect(
      await architectureProblems(ec2, ["m6i.large"], { architecture: "arm64", label: "the root of i-1" }, "template.launch.instanceTypes"),
    ).toEqual(["template.launch.instanceTypes[0]: m6i.large is x86_64 but the root of i-1 is arm64"]);
  });

  it("leaves types EC2 does not describe, and an image EC2 does not have, to the launch", async () => {
    const ec2 = gateway();
    expect(await architectureProblems(ec2, ["z9.huge"], { architecture: "x86_64", label: "image ami-1" })).toEqual([]);
    expect(await specImage(ec2, "ami-0bbbbbbbbbbbbbbbb")).toBeNull();
    expect(await architectureProblems(ec2, ["m7g.large"], null)).toEqual([]);
  });

  it("asks nothing of a gateway that cannot describe instance types", async () => {
    let described = 0;
    const ec2 = {
      describeImage: async (id: string) => {
        described++;
        return image(id, "x86_64");
      },
    };
    expect(await specImage(ec2, "ami-0aaaaaaaaaaaaaaaa")).toBeNull();
    expect(described).toBe(0);
  });

  it("skips the check with a log line when EC2 cannot be asked, rather than refusing", async () => {
    const lines: string[] = [];
    const ec2 = {
      ...gateway(),
      instanceTypeArchitectures: async () => {
        throw new Error("describing instance types m7g.large: RequestLimitExceeded");
      },
    };
    const why = await architectureRefusal(
      ec2,
      ["m7g.large"],
      () => specImage(ec2, "ami-0aaaaaaaaaaaaaaaa"),
      "launch.instanceTypes",
      (l) => lines.push(l),
    );
    expect(why).toBeNull();
    expect(lines).toEqual([
      "could not check launch.instanceTypes against the image's architecture (the launch will): describing instance types m7g.large: RequestLimitExceeded",
    ]);
  });
});
