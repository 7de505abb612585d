/** Read-only actions over the seed world: AZs, subnets, security groups, types, prices, key pairs, spot requests. */
import type {
  CancelSpotInstanceRequestsRequest,
  DescribeAvailabilityZonesRequest,
  DescribeRegionsRequest,
  DescribeInstanceTypesRequest,
  DescribeKeyPairsRequest,
  DescribeSecurityGroupsRequest,
  DescribeSpotInstanceRequestsRequest,
  DescribeSpotPriceHistoryRequest,
  DescribeSubnetsRequest,
  InstanceTypeInfo as SdkTypeInfo,
} from "@aws-sdk/client-ec2";
import type { Ctx } from "../common.js";
import { applyFilters, checkId, dryRun, noIdsWithMaxResults, paginate, tagList } from "../common.js";
import { Ec2Error } from "../errors.js";
import {
  ACCOUNT_ID,
  INSTANCE_TYPES,
  coreCount,
  spotPrice,
  threadsPerCore,
  type InstanceTypeInfo,
  type KeyPairInfo,
} from "../../world/catalog.js";
import type { SecurityGroup, SpotRequest, Subnet } from "../../world/types.js";

export function describeAvailabilityZones(ctx: Ctx, input: DescribeAvailabilityZonesRequest) {
  const { region, azs, azIds } = ctx.world.catalog;
  const zones = azs.map((name) => ({ name, id: azIds[name]! }));
  for (const n of input.ZoneNames ?? [])
    if (!zones.some((z) => z.name === n)) throw new Ec2Error("InvalidParameterValue", `Invalid availability zone: [${n}]`);
  for (const n of input.ZoneIds ?? [])
    if (!zones.some((z) => z.id === n)) throw new Ec2Error("InvalidParameterValue", `Invalid availability zone ID: [${n}]`);
  let out = zones.filter(
    (z) => (!input.ZoneNames?.length || input.ZoneNames.includes(z.name)) && (!input.ZoneIds?.length || input.ZoneIds.includes(z.id)),
  );
  out = applyFilters(out, input.Filters, {
    "zone-name": (z) => z.name,
    "zone-id": (z) => z.id,
    "region-name": () => region,
    state: () => "available",
    "zone-type": () => "availability-zone",
    "opt-in-status": () => "opt-in-not-required",
    "group-name": () => region,
  });
  dryRun(ctx, input);
  return {
    AvailabilityZones: out.map((z) => ({
      ZoneName: z.name,
      ZoneId: z.id,
      State: "available" as const,
      RegionName: region,
      GroupName: region,
      NetworkBorderGroup: region,
      OptInStatus: "opt-in-not-required" as const,
      ZoneType: "availability-zone",
      Messages: [],
    })),
  };
}

/**
 * The account's enabled regions: the regions this localcloud serves (with AllRegions too: localcloud
 * knows no other region), each with its regional EC2 endpoint name.
 */
export function describeRegions(ctx: Ctx, input: DescribeRegionsRequest) {
  const served = [...ctx.world.regions.keys()];
  for (const n of input.RegionNames ?? [])
    if (!served.includes(n))
      throw new Ec2Error("InvalidParameterValue", `Invalid region: ${n.slice(0, 64)} (this localcloud serves ${served.join(", ")})`);
  let out = served.filter((r) => !input.RegionNames?.length || input.RegionNames.includes(r));
  out = applyFilters(out, input.Filters, {
    "region-name": (r) => r,
    endpoint: (r) => `ec2.${r}.amazonaws.com`,
    "opt-in-status": () => "opt-in-not-required",
  });
  dryRun(ctx, input);
  return { Regions: out.map((r) => ({ RegionName: r, Endpoint: `ec2.${r}.amazonaws.com`, OptInStatus: "opt-in-not-required" })) };
}

export function describeSubnets(ctx: Ctx, input: DescribeSubnetsRequest) {
  const w = ctx.world;
  noIdsWithMaxResults(input.SubnetIds, input, "SubnetIds");
  let subnets = [...w.subnets.values()];
  if (input.SubnetIds?.length) {
    for (const id of input.SubnetIds) {
      checkId(id, "subnet", "InvalidSubnetID.Malformed");
      if (!w.subnets.has(id)) throw new Ec2Error("InvalidSubnetID.NotFound", `The subnet ID '${id}' does not exist`);
    }
    subnets = subnets.filter((s) => input.SubnetIds!.includes(s.id));
  }
  subnets = applyFilters(
    subnets,
    input.Filters,
    {
      "subnet-id": (s: Subnet) => s.id,
      "vpc-id": (s: Subnet) => s.vpcId,
      "availability-zone": (s: Subnet) => s.az,
      "availability-zone-id": (s: Subnet) => w.catalog.azIds[s.az],
      "cidr-block": (s: Subnet) => s.cidr,
      "default-for-az": (s: Subnet) => String(s.defaultForAz),
      state: () => "available",
      "owner-id": () => ACCOUNT_ID,
    },
    (s) => s.tags,
  );
  const { page, nextToken } = paginate(subnets, input, "DescribeSubnets", [5, 1000]);
  dryRun(ctx, input);
  return {
    Subnets: page.map((s) => ({
      SubnetId: s.id,
      VpcId: s.vpcId,
      State: "available" as const,
      CidrBlock: s.cidr,
      AvailableIpAddressCount: w.availableIpCount(s),
      AvailabilityZone: s.az,
      AvailabilityZoneId: w.catalog.azIds[s.az],
      DefaultForAz: s.defaultForAz,
      MapPublicIpOnLaunch: false,
      OwnerId: ACCOUNT_ID,
      SubnetArn: `arn:aws:ec2:${w.region}:${ACCOUNT_ID}:subnet/${s.id}`,
      Tags: s.tags.size ? tagList(s.tags) : undefined,
    })),
    NextToken: nextToken,
  };
}

export function describeSecurityGroups(ctx: Ctx, input: DescribeSecurityGroupsRequest) {
  const w = ctx.world;
  noIdsWithMaxResults(input.GroupIds, input, "GroupIds");
  let groups = [...w.securityGroups.values()];
  if (input.GroupIds?.length) {
    for (const id of input.GroupIds) {
      checkId(id, "sg", "InvalidGroupId.Malformed");
      if (!w.securityGroups.has(id)) throw new Ec2Error("InvalidGroup.NotFound", `The security group '${id}' does not exist`);
    }
    groups = groups.filter((g) => input.GroupIds!.includes(g.id));
  }
  if (input.GroupNames?.length) {
    for (const n of input.GroupNames)
      if (!groups.some((g) => g.name === n))
        throw new Ec2Error("InvalidGroup.NotFound", `The security group '${n}' does not exist in default VPC '${w.defaultVpc().id}'`);
    groups = groups.filter((g) => input.GroupNames!.includes(g.name));
  }
  groups = applyFilters(
    groups,
    input.Filters,
    {
      "group-id": (g: SecurityGroup) => g.id,
      "group-name": (g: SecurityGroup) => g.name,
      "vpc-id": (g: SecurityGroup) => g.vpcId,
      description: (g: SecurityGroup) => g.description,
      "owner-id": () => ACCOUNT_ID,
    },
    (g) => g.tags,
  );
  const { page, nextToken } = paginate(groups, input, "DescribeSecurityGroups", [5, 1000]);
  dryRun(ctx, input);
  return {
    SecurityGroups: page.map((g) => ({
      GroupId: g.id,
      GroupName: g.name,
      Description: g.description,
      VpcId: g.vpcId,
      OwnerId: ACCOUNT_ID,
      IpPermissions: [
        { IpProtocol: "-1", UserIdGroupPairs: [{ GroupId: g.id, UserId: ACCOUNT_ID }], IpRanges: [], Ipv6Ranges: [], PrefixListIds: [] },
      ],
      IpPermissionsEgress: [
        { IpProtocol: "-1", IpRanges: [{ CidrIp: "0.0.0.0/0" }], Ipv6Ranges: [], PrefixListIds: [], UserIdGroupPairs: [] },
      ],
      Tags: g.tags.size ? tagList(g.tags) : undefined,
    })),
    NextToken: nextToken,
  };
}

function typeInfo(t: InstanceTypeInfo): SdkTypeInfo {
  return {
    InstanceType: t.name as SdkTypeInfo["InstanceType"],
    CurrentGeneration: true,
    SupportedUsageClasses: ["on-demand", "spot"],
    SupportedRootDeviceTypes: ["ebs"],
    SupportedVirtualizationTypes: ["hvm"],
    Hypervisor: "nitro",
    ProcessorInfo: { SupportedArchitectures: [t.architecture], SustainedClockSpeedInGhz: t.architecture === "arm64" ? 2.6 : 3.1 },
    VCpuInfo: { DefaultVCpus: t.vcpus, DefaultCores: coreCount(t), DefaultThreadsPerCore: threadsPerCore(t) },
    MemoryInfo: { SizeInMiB: t.memoryMiB },
    InstanceStorageSupported: false,
    EbsInfo: { EbsOptimizedSupport: "default", EncryptionSupport: "supported", NvmeSupport: "required" },
    NetworkInfo: {
      NetworkPerformance: "Up to 12.5 Gigabit",
      MaximumNetworkInterfaces: t.maxEnis,
      Ipv4AddressesPerInterface: t.ipsPerEni,
      Ipv6AddressesPerInterface: t.ipsPerEni,
      Ipv6Supported: true,
      EnaSupport: "required",
      MaximumNetworkCards: 1,
      DefaultNetworkCardIndex: 0,
    },
    HibernationSupported: true,
    BurstablePerformanceSupported: t.name.startsWith("t"),
    BareMetal: false,
    FreeTierEligible: t.name === "t3.micro",
  };
}

export function describeInstanceTypes(ctx: Ctx, input: DescribeInstanceTypesRequest) {
  let types = [...INSTANCE_TYPES];
  if (input.InstanceTypes?.length) {
    const unknown = input.InstanceTypes.filter((n) => !types.some((t) => t.name === n));
    if (unknown.length)
      throw new Ec2Error("InvalidInstanceType", `The following supplied instance types do not exist: [${unknown.join(", ")}]`);
    types = types.filter((t) => input.InstanceTypes!.includes(t.name as never));
  }
  types = applyFilters(types, input.Filters, {
    "instance-type": (t) => t.name,
    "vcpu-info.default-vcpus": (t) => t.vcpus,
    "memory-info.size-in-mib": (t) => t.memoryMiB,
    "processor-info.supported-architecture": (t) => t.architecture,
    "supported-usage-class": () => ["on-demand", "spot"],
    "current-generation": () => "true",
    hypervisor: () => "nitro",
  });
  const { page, nextToken } = paginate(types, input, "DescribeInstanceTypes", [5, 100]);
  dryRun(ctx, input);
  return { InstanceTypes: page.map(typeInfo), NextToken: nextToken };
}

export function describeSpotPriceHistory(ctx: Ctx, input: DescribeSpotPriceHistoryRequest) {
  const products = ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"];
  for (const p of input.ProductDescriptions ?? [])
    if (!products.includes(p) && !/Windows|SUSE|Red Hat/.test(p))
      throw new Ec2Error("InvalidParameterValue", `Invalid value '${p}' for ProductDescription`);
  for (const t of input.InstanceTypes ?? [])
    if (!ctx.world.instanceType(t)) throw new Ec2Error("InvalidParameterValue", `Invalid value '${t}' for InstanceType.`);
  if (input.AvailabilityZone !== undefined && !ctx.world.catalog.azs.includes(input.AvailabilityZone))
    throw new Ec2Error("InvalidParameterValue", `Invalid availability zone: [${input.AvailabilityZone}]`);
  if (input.StartTime && input.EndTime && input.StartTime > input.EndTime)
    throw new Ec2Error("InvalidParameterValue", "StartTime must be before EndTime");
  const wantProducts = (input.ProductDescriptions?.length ? input.ProductDescriptions : products).filter((p) => products.includes(p));
  const ts = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000);
  let rows: Array<{ az: string; type: InstanceTypeInfo; product: string }> = [];
  for (const type of INSTANCE_TYPES) {
    if (input.InstanceTypes?.length && !input.InstanceTypes.includes(type.name as never)) continue;
    for (const az of ctx.world.catalog.azs) {
      if (input.AvailabilityZone && input.AvailabilityZone !== az) continue;
      for (const product of wantProducts) rows.push({ az, type, product });
    }
  }
  rows = applyFilters(rows, input.Filters, {
    "availability-zone": (r) => r.az,
    "instance-type": (r) => r.type.name,
    "product-description": (r) => r.product,
    "spot-price": (r) => spotPrice(r.type, r.az).toFixed(6),
    timestamp: () => ts.toISOString(),
  });
  const { page, nextToken } = paginate(rows, input, "DescribeSpotPriceHistory", [1, 1000]);
  dryRun(ctx, input);
  return {
    SpotPriceHistory: page.map((r) => ({
      AvailabilityZone: r.az,
      InstanceType: r.type.name as never,
      ProductDescription: r.product as never,
      SpotPrice: spotPrice(r.type, r.az).toFixed(6),
      Timestamp: ts,
    })),
    NextToken: nextToken ?? (input.MaxResults !== undefined ? "" : undefined),
  };
}

export function describeSpotInstanceRequests(ctx: Ctx, input: DescribeSpotInstanceRequestsRequest) {
  const w = ctx.world;
  noIdsWithMaxResults(input.SpotInstanceRequestIds, input, "SpotInstanceRequestIds");
  let reqs = [...w.spotRequests.values()];
  if (input.SpotInstanceRequestIds?.length) {
    for (const id of input.SpotInstanceRequestIds) {
      checkId(id, "sir", "InvalidSpotInstanceRequestID.Malformed");
      if (!w.spotRequests.has(id))
        throw new Ec2Error("InvalidSpotInstanceRequestID.NotFound", `The spot instance request ID '${id}' does not exist`);
    }
    reqs = reqs.filter((r) => input.SpotInstanceRequestIds!.includes(r.id));
  }
  reqs = applyFilters(
    reqs,
    input.Filters,
    {
      "spot-instance-request-id": (r: SpotRequest) => r.id,
      "instance-id": (r: SpotRequest) => r.instanceId,
      state: (r: SpotRequest) => r.state,
      "status-code": (r: SpotRequest) => r.statusCode,
      type: (r: SpotRequest) => r.type,
      "launched-availability-zone": (r: SpotRequest) => r.az,
      "launch.instance-type": (r: SpotRequest) => r.instanceType,
      "launch.image-id": (r: SpotRequest) => r.imageId,
    },
    (r) => r.tags,
  );
  const { page, nextToken } = paginate(reqs, input, "DescribeSpotInstanceRequests", [5, 1000]);
  dryRun(ctx, input);
  return {
    SpotInstanceRequests: page.map((r) => ({
      SpotInstanceRequestId: r.id,
      InstanceId: r.instanceId,
      State: r.state,
      Status: { Code: r.statusCode, Message: r.statusMessage, UpdateTime: r.statusTime },
      Type: r.type,
      InstanceInterruptionBehavior: r.interruptionBehavior,
      SpotPrice: r.maxPrice,
      CreateTime: r.createTime,
      ValidUntil: r.validUntil,
      LaunchedAvailabilityZone: r.az,
      ProductDescription: r.productDescription,
      LaunchSpecification: {
        ImageId: r.imageId,
        InstanceType: r.instanceType as never,
        SubnetId: r.subnetId,
        Placement: { AvailabilityZone: r.az },
      },
      Tags: r.tags.size ? tagList(r.tags) : undefined,
    })),
    NextToken: nextToken,
  };
}

/** Cancelling a request does not terminate its instance (as on EC2); the request goes cancelled. */
export function cancelSpotInstanceRequests(ctx: Ctx, input: CancelSpotInstanceRequestsRequest) {
  const w = ctx.world;
  const ids = input.SpotInstanceRequestIds ?? [];
  if (ids.length === 0) throw new Ec2Error("MissingParameter", "The request must contain the parameter SpotInstanceRequestId");
  for (const id of ids) {
    checkId(id, "sir", "InvalidSpotInstanceRequestID.Malformed");
    if (!w.spotRequests.has(id))
      throw new Ec2Error("InvalidSpotInstanceRequestID.NotFound", `The spot instance request ID '${id}' does not exist`);
  }
  dryRun(ctx, input);
  return {
    CancelledSpotInstanceRequests: ids.map((id) => {
      const r = w.spotRequests.get(id)!;
      if (r.state !== "closed") {
        r.state = "cancelled";
        r.statusCode = r.instanceId ? "request-canceled-and-instance-running" : "canceled-before-fulfillment";
        r.statusMessage = "Spot Instance request was canceled.";
        r.statusTime = new Date();
      }
      return { SpotInstanceRequestId: id, State: r.state as "cancelled" };
    }),
  };
}

/** The account's key pairs (a fixed set: localcloud has no Create/Import/DeleteKeyPair). Not paginated, as on EC2. */
export function describeKeyPairs(ctx: Ctx, input: DescribeKeyPairsRequest) {
  let keys = [...ctx.world.catalog.keyPairs];
  for (const n of input.KeyNames ?? [])
    if (!keys.some((k) => k.name === n)) throw new Ec2Error("InvalidKeyPair.NotFound", `The key pair '${n}' does not exist`);
  for (const id of input.KeyPairIds ?? [])
    if (!keys.some((k) => k.id === id)) throw new Ec2Error("InvalidKeyPair.NotFound", `The key pair ID '${id}' does not exist`);
  if (input.KeyNames?.length) keys = keys.filter((k) => input.KeyNames!.includes(k.name));
  if (input.KeyPairIds?.length) keys = keys.filter((k) => input.KeyPairIds!.includes(k.id));
  keys = applyFilters(
    keys,
    input.Filters,
    {
      "key-pair-id": (k: KeyPairInfo) => k.id,
      "key-name": (k: KeyPairInfo) => k.name,
      fingerprint: (k: KeyPairInfo) => k.fingerprint,
      "key-type": (k: KeyPairInfo) => k.type,
    },
    () => new Map(),
  );
  dryRun(ctx, input);
  return {
    KeyPairs: keys.map((k) => ({
      KeyPairId: k.id,
      KeyName: k.name,
      KeyType: k.type,
      KeyFingerprint: k.fingerprint,
      PublicKey: input.IncludePublicKey ? k.publicKey : undefined,
      CreateTime: k.createTime,
      Tags: [],
    })),
  };
}
