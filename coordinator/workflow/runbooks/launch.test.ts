import { describe, it, expect } from "vitest";
import { parseSpec } from "../../../shared/spec.js";
import { Ec2Error } from "../../cloud/errors.js";
import type { LaunchRequest } from "../../cloud/gateway.js";
import type { WorkflowContext } from "../engine.js";
import type { RunbookDeps } from "./deps.js";
import type { Artifact, ArtifactKind, CarriedSecret } from "../../db/store.js";
import { candidates, carriedSecret, clientToken, ipInCidr, launchGeneration } from "./launch.js";

const subnets = [
  { subnetId: "subnet-0000000000000000a", availabilityZone: "us-east-1a", cidr: "172.31.0.0/20" },
  { subnetId: "subnet-0000000000000000b", availabilityZone: "us-east-1b", cidr: "172.31.16.0/20" },
];
const spec = (extra: Record<string, unknown> = {}, market: Record<string, unknown> = {}) =>
  parseSpec({
    name: "db",
    launch: {
      imageId: "ami-0123456789abcdef0",
      instanceTypes: ["m6i.large", "m5.large"],
      subnetIds: subnets.map((s) => s.subnetId),
      market,
    },
    persistence: { ...extra },
  });

describe("launch candidates", () => {
  it("orders fallbacks: instance types, then subnets, then on-demand", () => {
    const c = candidates(spec(), subnets, null).map((x) => `${x.market}/${x.instanceType}/${x.availabilityZone}`);
    expect(c).toEqual([
      "spot/m6i.large/us-east-1a",
      "spot/m5.large/us-east-1a",
      "spot/m6i.large/us-east-1b",
      "spot/m5.large/us-east-1b",
      "on-demand/m6i.large/us-east-1a",
      "on-demand/m5.large/us-east-1a",
      "on-demand/m6i.large/us-east-1b",
      "on-demand/m5.large/us-east-1b",
    ]);
  });

  it("keeps to the pinned AZ and leaves out on-demand when the spec forbids it", () => {
    const c = candidates(spec({}, { fallbackToOnDemand: false }), subnets, "us-east-1b");
    expect(c.map((x) => `${x.market}/${x.availabilityZone}`)).toEqual(["spot/us-east-1b", "spot/us-east-1b"]);
  });

  it("lists every pool address that fits each subnet, the one used before first, so an address in use can be skipped", () => {
    const s = spec({ network: { privateIp: "pool", ipPool: ["172.31.16.50", "172.31.0.50", "172.31.0.51"] } });
    const c = candidates(s, subnets, null, "172.31.0.51");
    expect(c.filter((x) => x.market === "spot").map((x) => `${x.availabilityZone}@${x.privateIp}`)).toEqual([
      "us-east-1a@172.31.0.51",
      "us-east-1a@172.31.0.51",
      "us-east-1a@172.31.0.50",
      "us-east-1a@172.31.0.50",
      "us-east-1b@172.31.16.50",
      "us-east-1b@172.31.16.50",
    ]);
  });

  it("skips subnets the pool has no address in", () => {
    const s = spec({ network: { privateIp: "pool", ipPool: ["172.31.16.9"] } });
    expect(new Set(candidates(s, subnets, null).map((x) => x.availabilityZone))).toEqual(new Set(["us-east-1b"]));
  });

  it("derives client tokens of at most 64 characters that differ per attempt", () => {
    const a = clientToken("wf-1", 2, "m5.large", "subnet-a", "spot");
    expect(a).toHaveLength(64);
    expect(clientToken("wf-1", 2, "m5.large", "subnet-a", "spot")).toBe(a);
    expect(clientToken("wf-1", 2, "m5.large", "subnet-a", "on-demand")).not.toBe(a);
  });

  it("matches addresses against CIDRs", () => {
    expect(ipInCidr("10.0.1.10", "10.0.0.0/16")).toBe(true);
    expect(ipInCidr("10.1.1.10", "10.0.0.0/16")).toBe(false);
    expect(ipInCidr("172.31.15.255", "172.31.0.0/20")).toBe(true);
    expect(ipInCidr("172.31.16.0", "172.31.0.0/20")).toBe(false);
  });
});

describe("launching from a per-instance ipPool", () => {
  const poolSpec = spec(
    { network: { privateIp: "pool", ipPool: ["172.31.0.50", "172.31.0.51", "172.31.16.50"] } },
    { fallbackToOnDemand: false },
  );
  function fakes(inUse: Set<string>) {
    const asked: string[] = [];
    const deps = {
      ec2: {
        findInstances: async () => [],
        describeImage: async () => ({ rootDeviceName: "/dev/xvda" }),
        launchInstance: async (req: LaunchRequest) => {
          const ip = "privateIp" in req.network ? (req.network.privateIp ?? "") : "";
          asked.push(`${req.instanceType}@${ip}`);
          if (inUse.has(ip)) throw new Ec2Error("launching", "InvalidIPAddress.InUse", `Address ${ip} is in use.`);
          return {
            instanceId: "i-0123456789abcdef0",
            instanceType: req.instanceType,
            availabilityZone: "us-east-1a",
            lifecycle: "spot",
            privateIp: ip,
          };
        },
      },
      store: { generations: { recordLaunch: async () => undefined, get: async () => null }, artifacts: { list: async () => [] } },
      userData: () => "",
    } as unknown as RunbookDeps;
    const events: string[] = [];
    const ctx = { workflowId: "wf-1", event: async (_k: string, m: string) => void events.push(m) } as unknown as WorkflowContext;
    return { deps, ctx, asked, events };
  }
  const launch = (f: ReturnType<typeof fakes>) =>
    launchGeneration(f.deps, f.ctx, {
      name: "db",
      spec: poolSpec,
      generation: 1,
      imageId: "ami-0123456789abcdef0",
      cands: candidates(poolSpec, subnets, null),
      eniId: null,
      blockDevices: [],
    });

  it("skips an address EC2 says is in use (every instance type with it) and takes the next one", async () => {
    const f = fakes(new Set(["172.31.0.50"]));
    const r = await launch(f);
    expect(r.instanceId).toBe("i-0123456789abcdef0");
    expect(f.asked).toEqual(["m6i.large@172.31.0.50", "m6i.large@172.31.0.51"]);
    expect(f.events[0]).toMatch(/after: spot m6i.large in us-east-1a at 172.31.0.50: InvalidIPAddress.InUse/);
  });

  it("fails naming the pool once every address is in use, asking each address once", async () => {
    const f = fakes(new Set(["172.31.0.50", "172.31.0.51", "172.31.16.50"]));
    const err = await launch(f).catch((e) => e);
    expect(err.kind).toBe("no-capacity");
    expect(err.message).toBe(
      "persistence.network.ipPool: every address that fits the launch subnets is in use (172.31.0.50, 172.31.0.51, 172.31.16.50); " +
        "the pool is 172.31.0.50, 172.31.0.51, 172.31.16.50",
    );
    expect(f.asked).toEqual(["m6i.large@172.31.0.50", "m6i.large@172.31.0.51", "m6i.large@172.31.16.50"]);
  });
});

describe("the session secret a root carries", () => {
  // db's lineage: generation 1 booted from the spec's image; image ami-g1 from generation 1's root
  // (a continuous snapshot), ami-g3 from generation 3's root; ami-imp from an imported root
  // (generation 0); ami-g4 from generation 4's root, whose agent never registered a secret; ami-web
  // is another stateful instance's image.
  const artifact = (id: string, kind: ArtifactKind, sourceId: string | null, generation: number | null, instance = "db"): Artifact => ({
    id,
    instance,
    kind,
    device: null,
    region: null,
    sourceId,
    generation,
    createdAt: 0,
    deletedAt: null,
  });
  const artifacts = [
    artifact("ami-g1", "image", "snap-g1", 2),
    artifact("snap-g1", "root-snapshot", "vol-g1", 1),
    artifact("ami-g3", "image", "snap-g3", 4),
    artifact("snap-g3", "root-snapshot", "vol-g3", 3),
    artifact("ami-imp", "image", "snap-imp", 1),
    artifact("snap-imp", "root-snapshot", "vol-imp", 0),
    artifact("ami-g4", "image", "snap-g4", 5),
    artifact("snap-g4", "root-snapshot", "vol-g4", 4),
    artifact("ami-web", "image", "snap-web", 2, "web"),
    artifact("snap-web", "root-snapshot", "vol-web", 1, "web"),
  ];
  const hashes: Record<string, string | null> = { "db/1": "sha256:g1", "db/3": "sha256:g3", "db/4": null, "web/1": "sha256:web1" };
  const deps = {
    store: {
      artifacts: {
        list: async (instance: string, kind: ArtifactKind) => artifacts.filter((a) => a.instance === instance && a.kind === kind),
      },
      generations: {
        get: async (instance: string, generation: number) =>
          `${instance}/${generation}` in hashes ? { sessionSecretHash: hashes[`${instance}/${generation}`] } : null,
      },
    },
  } as unknown as RunbookDeps;
  const carried = (imageId: string): Promise<CarriedSecret | null> => carriedSecret(deps, "db", imageId);

  it("is the secret the generation whose root made the image registered, an older one too (a root restored from an older image)", async () => {
    expect(await carried("ami-g3")).toEqual({ hash: "sha256:g3", generation: 3 });
    expect(await carried("ami-g1")).toEqual({ hash: "sha256:g1", generation: 1 });
  });

  it("is nothing on a fresh root: the spec's image, an imported root, a source that never registered, another instance's image", async () => {
    expect(await carried("ami-0123456789abcdef0")).toBeNull();
    expect(await carried("ami-imp")).toBeNull();
    expect(await carried("ami-g4")).toBeNull();
    expect(await carried("ami-web")).toBeNull();
  });

  it("is recorded with the launch", async () => {
    const recorded: Array<{ carriedSecret?: CarriedSecret | null }> = [];
    const launchDeps = {
      ...deps,
      ec2: {
        findInstances: async () => [],
        describeImage: async () => ({ rootDeviceName: "/dev/xvda" }),
        launchInstance: async () => ({
          instanceId: "i-0123456789abcdef0",
          instanceType: "m6i.large",
          availabilityZone: "us-east-1a",
          lifecycle: "spot",
          privateIp: "172.31.0.9",
        }),
      },
      store: {
        ...deps.store,
        generations: {
          ...deps.store.generations,
          recordLaunch: async (_n: string, _g: number, r: (typeof recorded)[0]) => void recorded.push(r),
        },
      },
      userData: () => "",
    } as unknown as RunbookDeps;
    const ctx = { workflowId: "wf-2", event: async () => undefined } as unknown as WorkflowContext;
    const s = spec({ root: true });
    const cands = candidates(s, subnets, null);
    await launchGeneration(launchDeps, ctx, {
      name: "db",
      spec: s,
      generation: 4,
      imageId: "ami-g3",
      cands,
      eniId: null,
      blockDevices: [],
    });
    await launchGeneration(launchDeps, ctx, {
      name: "db",
      spec: s,
      generation: 2,
      imageId: "ami-0123456789abcdef0",
      cands,
      eniId: null,
      blockDevices: [],
    });
    expect(recorded.map((r) => r.carriedSecret)).toEqual([{ hash: "sha256:g3", generation: 3 }, null]);
  });
});
