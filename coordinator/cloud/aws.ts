/**
 * Ec2Gateway over the AWS SDK v3 (works against AWS and, through `endpoint`, localcloud).
 * The only module in the coordinator that imports @aws-sdk/client-ec2.
 */
import {
  EC2Client,
  AttachVolumeCommand,
  AttachNetworkInterfaceCommand,
  CreateNetworkInterfaceCommand,
  CreateSnapshotCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DeleteNetworkInterfaceCommand,
  DeleteSnapshotCommand,
  DeleteTagsCommand,
  DeleteVolumeCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeInstanceStatusCommand,
  DescribeInstanceTypesCommand,
  DescribeNetworkInterfacesCommand,
  DetachNetworkInterfaceCommand,
  DescribeSnapshotsCommand,
  DescribeSpotInstanceRequestsCommand,
  DescribeSpotPriceHistoryCommand,
  DescribeSubnetsCommand,
  DescribeVolumesCommand,
  DescribeVolumesModificationsCommand,
  DetachVolumeCommand,
  GetEbsDefaultKmsKeyIdCommand,
  GetEbsEncryptionByDefaultCommand,
  ModifyInstanceAttributeCommand,
  ModifyNetworkInterfaceAttributeCommand,
  ModifyVolumeCommand,
  RegisterImageCommand,
  CopySnapshotCommand,
  CopyImageCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type Filter,
  type Instance,
  type InstanceStatus,
  type Tag,
  type Volume,
  type VolumeModification,
  type Snapshot,
  type Image,
  type NetworkInterface,
  type _InstanceType,
  type VolumeType,
  type ArchitectureValues,
  type ServiceInputTypes,
  type ServiceOutputTypes,
} from "@aws-sdk/client-ec2";
import type { Clock } from "../../shared/clock.js";
import { realClock } from "../../shared/clock.js";
import { classify, Ec2Error, errorCode, isNotFound, wrapEc2 } from "./errors.js";
import type { FinalizeRequestMiddleware } from "@smithy/types";
import { Pacer, paceOf } from "./pacing.js";
import { ScaledRetryStrategy } from "./sdk-retry.js";
import { Batcher } from "./batcher.js";
import { NodeHttpHandler } from "@smithy/node-http-handler";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import {
  TAG,
  type CreateVolumeRequest,
  type Ec2Gateway,
  type EniInfo,
  type ImageInfo,
  type InstanceDetails,
  type InstanceInfo,
  type InstanceStatusInfo,
  type LaunchRequest,
  type PermissionCheck,
  type SnapshotInfo,
  type SpotPricePoint,
  type SpotRequestStatus,
  type SubnetInfo,
  type Tags,
  type VolumeInfo,
  type TaggedResources,
  type ModifyVolumeRequest,
  type VolumeModificationInfo,
} from "./gateway.js";

/**
 * Every EC2 action this gateway needs (the documented IAM policy must grant exactly these).
 * CreateTags is authorised for every resource a create call tags (tag-on-create,
 * `ec2:CreateAction`); called on its own it only tags resources that already carry
 * spotkeep:instance (the expiry tag a delete puts on what it keeps).
 */
export const GATEWAY_ACTIONS: readonly string[] = [
  "AttachNetworkInterface",
  "AttachVolume",
  "CopyImage",
  "CopySnapshot",
  "CreateNetworkInterface",
  "CreateSnapshot",
  "CreateTags",
  "CreateVolume",
  "DeleteNetworkInterface",
  "DeleteSnapshot",
  "DeleteTags",
  "DeleteVolume",
  "DeregisterImage",
  "DescribeImages",
  "DescribeInstanceAttribute",
  "DescribeInstanceStatus",
  "DescribeInstanceTypes",
  "DescribeInstances",
  "DescribeNetworkInterfaces",
  "DescribeSnapshots",
  "DescribeSpotInstanceRequests",
  "DescribeSpotPriceHistory",
  "DescribeSubnets",
  "DescribeVolumes",
  "DescribeVolumesModifications",
  "DetachNetworkInterface",
  "DetachVolume",
  "GetEbsDefaultKmsKeyId",
  "GetEbsEncryptionByDefault",
  "ModifyInstanceAttribute",
  "ModifyNetworkInterfaceAttribute",
  "ModifyVolume",
  "RegisterImage",
  "RunInstances",
  "StartInstances",
  "StopInstances",
  "TerminateInstances",
] as const;

export interface AwsGatewayOptions {
  region: string;
  /** e.g. localcloud's http://127.0.0.1:4566; default: AWS. */
  endpoint?: string;
  clock?: Clock;
  /** SDK attempts per call (throttling and 5xx are retried by the SDK with backoff). */
  maxAttempts?: number;
  /** Multiplies the SDK's retry back-off (real time = model time × timeScale). */
  timeScale?: number;
  /** Fraction of AWS's throttling buckets to use; 0 disables client-side pacing. */
  pacingHeadroom?: number;
  observe?: { recordEc2Call(action: string, errorCode?: string): void };
  /**
   * Called immediately before each attempt of every mutating (non-Describe) request is sent;
   * throwing (or rejecting) refuses the request (a coordinator that is no longer the leader must not act).
   */
  beforeMutation?: (action: string) => void | Promise<void>;
  /** Appended to the User-Agent as `spotkeep-coordinator/<id>` so the calls of one coordinator can be told apart. */
  callerId?: string;
}

/** Whether an EC2 action changes anything (everything but Describe*). */
export const isMutatingAction = (action: string): boolean => !action.startsWith("Describe");

export function createAwsGateway(opts: AwsGatewayOptions): Ec2Gateway {
  return new AwsGateway(opts);
}

/** Deletes and terminations are retried after crashes: a resource already gone means the work is done. */
async function alreadyGoneIsDone(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/** The first ids of a batch, for error messages. */
const listed = (ids: string[]): string => `${ids.slice(0, 3).join(", ")}${ids.length > 3 ? "…" : ""}`;
const toTags = (tags: Tags): Tag[] => Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
const fromTags = (tags: Tag[] | undefined): Tags =>
  Object.fromEntries((tags ?? []).filter((t) => t.Key).map((t) => [t.Key!, t.Value ?? ""]));
const tagFilters = (tags: Tags): Filter[] => Object.entries(tags).map(([k, v]) => ({ Name: `tag:${k}`, Values: [v] }));

class AwsGateway implements Ec2Gateway {
  private readonly client: EC2Client;
  private readonly pacer: Pacer | null;
  private readonly terminations = new Batcher<true>((ids) => this.terminateMany(ids), 5, 100);
  /** Subnets do not move between AZs: remember them. */
  private readonly subnetCache = new Map<string, SubnetInfo>();
  /** Subnet lookups under way: a thousand launches at once ask once. */
  private readonly subnetLookups = new Map<string, Promise<void>>();
  /** Instance type -> the architectures it supports; kept for the process's life (a type's architecture never changes). */
  private readonly typeArchitectures = new Map<string, string[]>();
  /** A zone's worth of notices at once: one DescribeSpotInstanceRequests per batch, by filter (an unknown id fails nothing). */
  private readonly spotRequests = new Batcher<SpotRequestStatus>(async (ids) => {
    const out = await this.call("DescribeSpotInstanceRequests", `describing the spot requests of ${listed(ids)}`, () =>
      this.client.send(new DescribeSpotInstanceRequestsCommand({ Filters: [{ Name: "instance-id", Values: ids }] })),
    );
    const found = new Map<string, SpotRequestStatus>();
    for (const r of out.SpotInstanceRequests ?? [])
      if (r.InstanceId && r.SpotInstanceRequestId && !found.has(r.InstanceId))
        found.set(r.InstanceId, {
          spotInstanceRequestId: r.SpotInstanceRequestId,
          state: r.State ?? "unknown",
          statusCode: r.Status?.Code ?? "unknown",
        });
    return found;
  });
  /** Launches' image lookups, batched by filter: a deregistered id is simply not returned. */
  private readonly images = new Batcher<ImageInfo>(async (ids) => {
    const out = await this.call("DescribeImages", `describing images ${listed(ids)}`, () =>
      this.client.send(new DescribeImagesCommand({ Filters: [{ Name: "image-id", Values: ids }] })),
    );
    return new Map((out.Images ?? []).filter((i) => i.ImageId).map((i) => [i.ImageId!, imageInfo(i)]));
  });
  private readonly instances = new Batcher<InstanceInfo>((ids) =>
    this.describeInstancesNow(ids).then((l) => new Map(l.map((i) => [i.instanceId, i]))),
  );
  private readonly volumes = new Batcher<VolumeInfo>(async (ids) => {
    const out = await this.call("DescribeVolumes", `describing volumes ${ids.slice(0, 3).join(", ")}${ids.length > 3 ? "…" : ""}`, () =>
      this.client.send(new DescribeVolumesCommand({ Filters: [{ Name: "volume-id", Values: ids }] })),
    );
    return new Map((out.Volumes ?? []).map((v) => [v.VolumeId!, volumeInfo(v)]));
  });
  private readonly snapshots = new Batcher<SnapshotInfo>(async (ids) => {
    const out = await this.call("DescribeSnapshots", `describing snapshots ${ids.slice(0, 3).join(", ")}${ids.length > 3 ? "…" : ""}`, () =>
      this.client.send(new DescribeSnapshotsCommand({ Filters: [{ Name: "snapshot-id", Values: ids }] })),
    );
    return new Map((out.Snapshots ?? []).map((x) => [x.SnapshotId!, snapshotInfo(x)]));
  });
  private readonly enis = new Batcher<EniInfo>(async (ids) => {
    const out = await this.call(
      "DescribeNetworkInterfaces",
      `describing ENIs ${ids.slice(0, 3).join(", ")}${ids.length > 3 ? "…" : ""}`,
      () => this.client.send(new DescribeNetworkInterfacesCommand({ Filters: [{ Name: "network-interface-id", Values: ids }] })),
    );
    return new Map((out.NetworkInterfaces ?? []).map((n) => [n.NetworkInterfaceId!, eniInfo(n)]));
  });

  constructor(private readonly opts: AwsGatewayOptions) {
    const local = opts.endpoint !== undefined;
    this.client = new EC2Client({
      region: opts.region,
      endpoint: opts.endpoint,
      retryStrategy: new ScaledRetryStrategy(opts.maxAttempts ?? 6, opts.timeScale ?? 1),
      // Hundreds of workflows poll and mutate at once; the default 50 sockets queue them.
      requestHandler: new NodeHttpHandler({
        httpAgent: new HttpAgent({ keepAlive: true, maxSockets: 256 }),
        httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: 256 }),
      }),
      // localcloud accepts any signature; real AWS uses the standard credential chain.
      ...(local && !process.env.AWS_ACCESS_KEY_ID ? { credentials: { accessKeyId: "spotkeep", secretAccessKey: "spotkeep" } } : {}),
      ...(opts.callerId ? { customUserAgent: [["spotkeep-coordinator", opts.callerId]] as [string, string][] } : {}),
    });
    const guard = opts.beforeMutation;
    if (guard)
      // finalizeRequest, low priority: inside the SDK's retry loop, so every attempt is checked as it is sent.
      this.client.middlewareStack.add(
        (next, context) => async (args) => {
          const action = String(context.commandName ?? "").replace(/Command$/, "");
          if (isMutatingAction(action)) await guard(action);
          return next(args);
        },
        { step: "finalizeRequest", priority: "low", name: "spotkeepLeaderFence" },
      );
    // Inside the SDK's retry loop: a create that has no ClientToken and failed in a way that
    // does not say whether it acted (a 5xx, a dropped connection) is not re-sent by the SDK; the
    // gateway looks for what the first attempt may have made before it tries again.
    const ambiguousCreate: FinalizeRequestMiddleware<ServiceInputTypes, ServiceOutputTypes> = (next, context) => async (args) => {
      try {
        return await next(args);
      } catch (err) {
        const action = String(context.commandName ?? "").replace(/Command$/, "");
        // A 4xx names what was wrong with the request (EC2 did nothing); a 5xx or no answer at all does not say.
        const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
        const mayHaveActed = status === undefined || status >= 500;
        if (NO_CLIENT_TOKEN.has(action) && mayHaveActed && classify(err) !== "throttling" && err && typeof err === "object")
          (err as { $spotkeepAmbiguous?: boolean }).$spotkeepAmbiguous = true;
        throw err;
      }
    };
    this.client.middlewareStack.addRelativeTo(ambiguousCreate, {
      relation: "after",
      toMiddleware: "retryMiddleware",
      name: "spotkeepAmbiguousCreate",
      override: true,
    });
    this.pacer = opts.pacingHeadroom === 0 ? null : new Pacer(opts.clock ?? realClock, opts.pacingHeadroom ?? 0.8);
    const pacer = this.pacer;
    // Pacing sits inside the SDK's retry loop: every attempt, retries included, waits for its
    // tokens, and a RequestLimitExceeded empties the bucket, so throttling cannot feed itself.
    if (pacer) {
      const pacing: FinalizeRequestMiddleware<ServiceInputTypes, ServiceOutputTypes> = (next, context) => async (args) => {
        const action = (context.commandName ?? "").replace(/Command$/, "");
        const pace = paceOf(action, (args.input ?? {}) as Record<string, unknown>);
        const answered = await pacer.acquire(action, pace);
        try {
          const out = await next(args);
          answered();
          return out;
        } catch (err) {
          answered();
          if (classify(err) === "throttling") pacer.throttled(action, pace);
          throw err;
        }
      };
      this.client.middlewareStack.addRelativeTo(pacing, {
        relation: "after",
        toMiddleware: "retryMiddleware",
        name: "spotkeepPacing",
        override: true,
      });
    }
  }

  private async call<T>(action: string, what: string, fn: () => Promise<T>): Promise<T> {
    try {
      const out = await fn();
      this.opts.observe?.recordEc2Call(action);
      return out;
    } catch (err) {
      this.opts.observe?.recordEc2Call(action, errorCode(err) ?? "network");
      throw wrapEc2(what, err);
    }
  }

  async checkPermissions(): Promise<PermissionCheck[]> {
    const dryRuns = permissionDryRuns(this.opts.region);
    const out: PermissionCheck[] = [];
    for (const action of GATEWAY_ACTIONS) {
      const send = dryRuns[action];
      if (!send) throw new Error(`no permission DryRun for ${action}`);
      try {
        // Each entry builds its own command type; send() takes the union of them all.
        await this.client.send(send() as never);
        out.push({ action, result: "inconclusive", code: "Success", message: "the DryRun request was carried out as a real one" });
      } catch (err) {
        const code = errorCode(err) ?? "network";
        const message = (err as Error).message ?? String(err);
        out.push({
          action,
          result: code === "DryRunOperation" ? "allowed" : code === "UnauthorizedOperation" ? "denied" : "inconclusive",
          code,
          message,
        });
      }
    }
    return out;
  }

  async ebsDefaultEncryption(): Promise<{ enabled: boolean; kmsKeyId: string | null }> {
    const [on, key] = await Promise.all([
      this.call("GetEbsEncryptionByDefault", "reading the account's EBS encryption by default", () =>
        this.client.send(new GetEbsEncryptionByDefaultCommand({})),
      ),
      this.call("GetEbsDefaultKmsKeyId", "reading the account's default EBS KMS key", () =>
        this.client.send(new GetEbsDefaultKmsKeyIdCommand({})),
      ),
    ]);
    return { enabled: on.EbsEncryptionByDefault ?? false, kmsKeyId: key.KmsKeyId ?? null };
  }

  async describeSubnets(subnetIds: string[]): Promise<SubnetInfo[]> {
    const missing = subnetIds.filter((id) => !this.subnetCache.has(id) && !this.subnetLookups.has(id));
    if (missing.length) {
      const lookup = this.call("DescribeSubnets", `describing subnets ${missing.join(", ")}`, () =>
        this.client.send(new DescribeSubnetsCommand({ SubnetIds: missing })),
      ).then((out) => {
        for (const s of out.Subnets ?? [])
          this.subnetCache.set(s.SubnetId!, { subnetId: s.SubnetId!, availabilityZone: s.AvailabilityZone!, cidr: s.CidrBlock ?? "" });
      });
      for (const id of missing) this.subnetLookups.set(id, lookup);
      const forget = () => {
        for (const id of missing) if (this.subnetLookups.get(id) === lookup) this.subnetLookups.delete(id);
      };
      lookup.then(forget, forget);
    }
    await Promise.all(subnetIds.filter((id) => !this.subnetCache.has(id)).map((id) => this.subnetLookups.get(id)));
    return subnetIds.map((id) => this.subnetCache.get(id)).filter((s): s is SubnetInfo => !!s);
  }

  spotRequestStatus(instanceId: string): Promise<SpotRequestStatus | null> {
    return this.spotRequests.get(instanceId);
  }

  async describeSpotPriceHistory(q: { instanceType: string; availabilityZone: string; start: Date; end: Date }): Promise<SpotPricePoint[]> {
    const out: SpotPricePoint[] = [];
    let token: string | undefined;
    // A busy type changes price a few times a day; 20 pages of 1000 is years of history.
    for (let page = 0; page < 20; page++) {
      const res = await this.call("DescribeSpotPriceHistory", `describing spot prices of ${q.instanceType} in ${q.availabilityZone}`, () =>
        this.client.send(
          new DescribeSpotPriceHistoryCommand({
            InstanceTypes: [q.instanceType as never],
            AvailabilityZone: q.availabilityZone,
            ProductDescriptions: ["Linux/UNIX"],
            StartTime: q.start,
            EndTime: q.end,
            MaxResults: 1000,
            NextToken: token,
          }),
        ),
      );
      for (const r of res.SpotPriceHistory ?? []) {
        const price = Number(r.SpotPrice);
        if (!r.Timestamp || !Number.isFinite(price) || price < 0) continue;
        out.push({ instanceType: q.instanceType, availabilityZone: q.availabilityZone, price, at: new Date(r.Timestamp) });
      }
      token = res.NextToken || undefined;
      if (!token) break;
    }
    return out.sort((a, b) => a.at.getTime() - b.at.getTime());
  }

  describeImage(imageId: string): Promise<ImageInfo | null> {
    return this.images.get(imageId);
  }

  async instanceTypeArchitectures(instanceTypes: string[]): Promise<Map<string, string[]>> {
    const missing = [...new Set(instanceTypes)].filter((t) => !this.typeArchitectures.has(t));
    // A filter (not InstanceTypes) so that a type EC2 does not offer is left out rather than failing the whole call.
    for (let i = 0; i < missing.length; i += 100) {
      const names = missing.slice(i, i + 100);
      let token: string | undefined;
      for (let page = 0; page < 20; page++) {
        const res = await this.call("DescribeInstanceTypes", `describing instance types ${names.join(", ")}`, () =>
          this.client.send(
            new DescribeInstanceTypesCommand({ Filters: [{ Name: "instance-type", Values: names }], MaxResults: 100, NextToken: token }),
          ),
        );
        for (const t of res.InstanceTypes ?? []) {
          const archs = (t.ProcessorInfo?.SupportedArchitectures ?? []).map(String).slice(0, 8);
          if (t.InstanceType && archs.length) this.typeArchitectures.set(t.InstanceType, archs);
        }
        token = res.NextToken || undefined;
        if (!token) break;
      }
    }
    const out = new Map<string, string[]>();
    for (const t of instanceTypes) {
      const archs = this.typeArchitectures.get(t);
      if (archs) out.set(t, archs);
    }
    return out;
  }

  async launchInstance(req: LaunchRequest): Promise<InstanceInfo> {
    const what = `launching ${req.market} ${req.instanceType}${"eniId" in req.network ? ` with ${req.network.eniId}` : ` in ${req.network.subnetId}`}`;
    const net = req.network;
    const out = await this.call("RunInstances", what, () =>
      this.client.send(
        new RunInstancesCommand({
          ClientToken: req.clientToken,
          ImageId: req.imageId,
          InstanceType: req.instanceType as _InstanceType,
          MinCount: 1,
          MaxCount: 1,
          UserData: Buffer.from(req.userData, "utf8").toString("base64"),
          ...("eniId" in net
            ? { NetworkInterfaces: [{ DeviceIndex: 0, NetworkInterfaceId: net.eniId }] }
            : {
                SubnetId: net.subnetId,
                SecurityGroupIds: net.securityGroupIds.length ? net.securityGroupIds : undefined,
                PrivateIpAddress: net.privateIp,
              }),
          BlockDeviceMappings: req.blockDevices.length
            ? req.blockDevices.map((b) => ({
                DeviceName: b.deviceName,
                Ebs: {
                  SnapshotId: b.snapshotId,
                  VolumeSize: b.sizeGiB,
                  VolumeType: b.volumeType as VolumeType | undefined,
                  Iops: b.iops,
                  Throughput: b.throughput,
                  DeleteOnTermination: b.deleteOnTermination,
                  Encrypted: b.encrypted,
                  KmsKeyId: b.kmsKeyId,
                },
              }))
            : undefined,
          InstanceMarketOptions:
            req.market === "spot"
              ? {
                  MarketType: "spot",
                  SpotOptions: { SpotInstanceType: "one-time", InstanceInterruptionBehavior: "terminate", MaxPrice: req.maxPrice },
                }
              : undefined,
          IamInstanceProfile: req.iamInstanceProfile ? { Name: req.iamInstanceProfile } : undefined,
          KeyName: req.keyName,
          MetadataOptions: { HttpTokens: "required", HttpEndpoint: "enabled", HttpPutResponseHopLimit: 2 },
          // Every resource the launch creates carries the tags: an IAM policy that lets the
          // coordinator create only tagged resources checks each of them (ENI and spot request too).
          TagSpecifications: Object.keys(req.tags).length
            ? [
                { ResourceType: "instance" as const, Tags: toTags(req.tags) },
                { ResourceType: "volume" as const, Tags: toTags(req.tags) },
                ...("eniId" in net ? [] : [{ ResourceType: "network-interface" as const, Tags: toTags(req.tags) }]),
                ...(req.market === "spot" ? [{ ResourceType: "spot-instances-request" as const, Tags: toTags(req.tags) }] : []),
              ]
            : undefined,
        }),
      ),
    );
    const inst = out.Instances?.[0];
    if (!inst?.InstanceId) throw new Ec2Error(what, "EmptyResponse", "RunInstances returned no instance");
    return instanceInfo(inst);
  }

  async describeInstances(instanceIds: string[]): Promise<InstanceInfo[]> {
    // Single lookups (the waiters) are coalesced across workflows; lists go straight out.
    if (instanceIds.length === 1) {
      const one = await this.instances.get(instanceIds[0]!);
      return one ? [one] : [];
    }
    return this.describeInstancesNow(instanceIds);
  }

  private async describeInstancesNow(instanceIds: string[]): Promise<InstanceInfo[]> {
    const result: InstanceInfo[] = [];
    // Ask by filter, not InstanceIds: an unknown id must not fail the whole batch.
    for (let i = 0; i < instanceIds.length; i += 200) {
      const chunk = instanceIds.slice(i, i + 200);
      result.push(
        ...(await this.describePaged(`describing instances ${chunk.slice(0, 3).join(", ")}${chunk.length > 3 ? "…" : ""}`, [
          { Name: "instance-id", Values: chunk },
        ])),
      );
    }
    return result;
  }

  async describeInstanceStatus(instanceIds: string[]): Promise<InstanceStatusInfo[]> {
    const wanted = new Set(instanceIds);
    const out: InstanceStatusInfo[] = [];
    // DescribeInstanceStatus has no instance-id filter and fails the whole call on an unknown id:
    // ask by id in chunks, and list every running instance only when a chunk names one EC2 forgot.
    for (let i = 0; i < instanceIds.length; i += 100) {
      const chunk = instanceIds.slice(i, i + 100);
      try {
        const got = await this.call(
          "DescribeInstanceStatus",
          `describing the status of ${chunk.slice(0, 3).join(", ")}${chunk.length > 3 ? "…" : ""}`,
          () => this.client.send(new DescribeInstanceStatusCommand({ InstanceIds: chunk })),
        );
        out.push(...(got.InstanceStatuses ?? []).map(instanceStatusInfo));
      } catch (err) {
        if (!isNotFound(err)) throw err;
        return (await this.describeAllInstanceStatus()).filter((s) => wanted.has(s.instanceId));
      }
    }
    return out;
  }

  private async describeAllInstanceStatus(): Promise<InstanceStatusInfo[]> {
    const out: InstanceStatusInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.call("DescribeInstanceStatus", "describing the status of every running instance", () =>
        this.client.send(new DescribeInstanceStatusCommand({ MaxResults: 1000, NextToken: token })),
      );
      out.push(...(page.InstanceStatuses ?? []).map(instanceStatusInfo));
      token = page.NextToken;
    } while (token);
    return out;
  }

  async findInstances(tags: Tags): Promise<InstanceInfo[]> {
    return this.describePaged(`finding instances tagged ${JSON.stringify(tags)}`, tagFilters(tags));
  }

  private async describePaged(what: string, filters: Filter[]): Promise<InstanceInfo[]> {
    const result: InstanceInfo[] = [];
    let token: string | undefined;
    do {
      const out = await this.call("DescribeInstances", what, () =>
        this.client.send(new DescribeInstancesCommand({ Filters: filters, MaxResults: 1000, NextToken: token })),
      );
      for (const r of out.Reservations ?? []) for (const i of r.Instances ?? []) result.push(instanceInfo(i));
      token = out.NextToken;
    } while (token);
    return result;
  }

  terminateInstance(instanceId: string): Promise<void> {
    return this.terminations.get(instanceId).then(() => undefined);
  }

  /** One TerminateInstances for many ids; an unknown id fails a batch, so then go one by one. */
  private async terminateMany(ids: string[]): Promise<Map<string, true>> {
    const one = (id: string) =>
      alreadyGoneIsDone(
        this.call("TerminateInstances", `terminating ${id}`, () => this.client.send(new TerminateInstancesCommand({ InstanceIds: [id] }))),
      );
    if (ids.length === 1) {
      await one(ids[0]!);
    } else {
      try {
        await this.call("TerminateInstances", `terminating ${ids.length} instances (${ids.slice(0, 3).join(", ")}…)`, () =>
          this.client.send(new TerminateInstancesCommand({ InstanceIds: ids })),
        );
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await Promise.all(ids.map(one));
      }
    }
    return new Map(ids.map((id) => [id, true as const]));
  }

  async createVolume(req: CreateVolumeRequest): Promise<VolumeInfo> {
    const existing = await this.findVolumes(req.tags);
    const live = existing.find((v) => v.state !== "deleting" && v.state !== "deleted" && v.state !== "error");
    if (live) return live;
    const out = await this.call(
      "CreateVolume",
      `creating a ${req.sizeGiB ?? "snapshot-sized"} GiB volume in ${req.availabilityZone}${req.snapshotId ? ` from ${req.snapshotId}` : ""}`,
      () =>
        this.client.send(
          new CreateVolumeCommand({
            AvailabilityZone: req.availabilityZone,
            Size: req.sizeGiB,
            SnapshotId: req.snapshotId,
            VolumeType: (req.volumeType ?? "gp3") as VolumeType,
            Iops: req.iops,
            Throughput: req.throughput,
            Encrypted: req.encrypted,
            KmsKeyId: req.kmsKeyId,
            TagSpecifications: [{ ResourceType: "volume", Tags: toTags(req.tags) }],
          }),
        ),
    );
    return volumeInfo(out as Volume);
  }

  async findTagged(key: string): Promise<TaggedResources> {
    const Filters = [{ Name: "tag-key", Values: [key] }];
    const what = (kind: string) => `finding ${kind} tagged ${key}`;
    const paged = async <T>(page: (token: string | undefined) => Promise<{ items: T[]; next: string | undefined }>): Promise<T[]> => {
      const all: T[] = [];
      let token: string | undefined;
      do {
        const r = await page(token);
        all.push(...r.items);
        token = r.next;
      } while (token);
      return all;
    };
    const [instances, volumes, networkInterfaces, snapshots, images] = await Promise.all([
      this.describePaged(what("instances"), [
        ...Filters,
        { Name: "instance-state-name", Values: ["pending", "running", "shutting-down", "stopping", "stopped"] },
      ]),
      paged(async (NextToken) => {
        const out = await this.call("DescribeVolumes", what("volumes"), () =>
          this.client.send(new DescribeVolumesCommand({ Filters, MaxResults: 500, NextToken })),
        );
        return { items: (out.Volumes ?? []).map(volumeInfo), next: out.NextToken };
      }),
      paged(async (NextToken) => {
        const out = await this.call("DescribeNetworkInterfaces", what("network interfaces"), () =>
          this.client.send(new DescribeNetworkInterfacesCommand({ Filters, MaxResults: 1000, NextToken })),
        );
        return { items: (out.NetworkInterfaces ?? []).map(eniInfo), next: out.NextToken };
      }),
      paged(async (NextToken) => {
        const out = await this.call("DescribeSnapshots", what("snapshots"), () =>
          this.client.send(new DescribeSnapshotsCommand({ Filters, OwnerIds: ["self"], MaxResults: 1000, NextToken })),
        );
        return { items: (out.Snapshots ?? []).map(snapshotInfo), next: out.NextToken };
      }),
      paged(async (NextToken) => {
        const out = await this.call("DescribeImages", what("images"), () =>
          this.client.send(new DescribeImagesCommand({ Filters, Owners: ["self"], MaxResults: 1000, NextToken })),
        );
        return { items: (out.Images ?? []).filter((i) => i.ImageId).map(imageInfo), next: out.NextToken };
      }),
    ]);
    return { instances, volumes, networkInterfaces, snapshots, images };
  }

  async findVolumes(tags: Tags): Promise<VolumeInfo[]> {
    const out = await this.call("DescribeVolumes", `finding volumes tagged ${JSON.stringify(tags)}`, () =>
      this.client.send(new DescribeVolumesCommand({ Filters: tagFilters(tags) })),
    );
    return (out.Volumes ?? []).map(volumeInfo);
  }

  describeVolume(volumeId: string): Promise<VolumeInfo | null> {
    return this.volumes.get(volumeId);
  }

  async attachVolume(volumeId: string, instanceId: string, device: string): Promise<void> {
    try {
      await this.call("AttachVolume", `attaching ${volumeId} to ${instanceId} as ${device}`, () =>
        this.client.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceId, Device: device })),
      );
    } catch (err) {
      // A replayed attach whose first attempt went through: the volume is already ours.
      const v = await this.describeVolume(volumeId).catch(() => null);
      if (v?.attachments.some((a) => a.instanceId === instanceId && a.state !== "detaching" && a.state !== "detached")) return;
      throw err;
    }
  }

  async detachVolume(volumeId: string, instanceId?: string, opts: { force?: boolean } = {}): Promise<void> {
    try {
      await this.call(
        "DetachVolume",
        `detaching ${volumeId}${instanceId ? ` from ${instanceId}` : ""}${opts.force ? " (forced)" : ""}`,
        () =>
          this.client.send(new DetachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceId, Force: opts.force ? true : undefined })),
      );
    } catch (err) {
      const v = await this.describeVolume(volumeId).catch(() => undefined);
      if (v === null || (v && v.attachments.length === 0)) return;
      throw err;
    }
  }

  async deleteVolume(volumeId: string): Promise<void> {
    await alreadyGoneIsDone(
      this.call("DeleteVolume", `deleting ${volumeId}`, () => this.client.send(new DeleteVolumeCommand({ VolumeId: volumeId }))),
    );
  }

  /**
   * CreateSnapshot has no ClientToken: the snapshot is found by its tags (unique per workflow
   * step) before each attempt, so a 5xx or a dropped answer after EC2 made it never makes a second.
   */
  async createSnapshot(volumeId: string, description: string, tags: Tags): Promise<SnapshotInfo> {
    const attempts = this.opts.maxAttempts ?? 6;
    for (let attempt = 1; ; attempt++) {
      const found = await this.call("DescribeSnapshots", `finding snapshots tagged ${JSON.stringify(tags)}`, () =>
        this.client.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"], Filters: tagFilters(tags) })),
      );
      const existing = (found.Snapshots ?? []).map(snapshotInfo).find((s) => s.state !== "error");
      if (existing) return existing;
      try {
        const out = await this.call("CreateSnapshot", `snapshotting ${volumeId}`, () =>
          this.client.send(
            new CreateSnapshotCommand({
              VolumeId: volumeId,
              Description: description,
              TagSpecifications: [{ ResourceType: "snapshot", Tags: toTags(tags) }],
            }),
          ),
        );
        return snapshotInfo(out as Snapshot);
      } catch (err) {
        if (!isAmbiguous(err) || attempt >= attempts) throw err;
        await (this.opts.clock ?? realClock).sleep(Math.random() * Math.min(20_000, 100 * 2 ** (attempt - 1)) * (this.opts.timeScale ?? 1));
      }
    }
  }

  describeSnapshot(snapshotId: string): Promise<SnapshotInfo | null> {
    return this.snapshots.get(snapshotId);
  }

  async deleteSnapshot(snapshotId: string): Promise<void> {
    await alreadyGoneIsDone(
      this.call("DeleteSnapshot", `deleting ${snapshotId}`, () => this.client.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId }))),
    );
  }

  async registerImage(req: {
    name: string;
    rootSnapshotId: string;
    rootDeviceName: string;
    architecture: string;
    description?: string;
    tags: Tags;
  }): Promise<string> {
    const what = `registering image ${req.name} from ${req.rootSnapshotId}`;
    const findByName = async () => {
      const out = await this.call("DescribeImages", `finding image named ${req.name}`, () =>
        this.client.send(new DescribeImagesCommand({ Owners: ["self"], Filters: [{ Name: "name", Values: [req.name] }] })),
      );
      return out.Images?.find((i) => i.State !== "deregistered")?.ImageId;
    };
    const existing = await findByName();
    if (existing) return existing;
    try {
      // Tagged on creation: a policy that allows creating only tagged resources (and deregistering
      // only tagged images) sees the tags in the RegisterImage request itself. RegisterImage can tag
      // only the image; the root snapshot already carries the tags CreateSnapshot gave it.
      const out = await this.call("RegisterImage", what, () =>
        this.client.send(
          new RegisterImageCommand({
            Name: req.name,
            Description: req.description,
            RootDeviceName: req.rootDeviceName,
            Architecture: req.architecture as ArchitectureValues,
            VirtualizationType: "hvm",
            EnaSupport: true,
            BlockDeviceMappings: [{ DeviceName: req.rootDeviceName, Ebs: { SnapshotId: req.rootSnapshotId, DeleteOnTermination: true } }],
            TagSpecifications: Object.keys(req.tags).length ? [{ ResourceType: "image", Tags: toTags(req.tags) }] : undefined,
          }),
        ),
      );
      if (!out.ImageId) throw new Ec2Error(what, "EmptyResponse", "RegisterImage returned no image id");
      return out.ImageId;
    } catch (err) {
      if (errorCode(err) === "InvalidAMIName.Duplicate") {
        const again = await findByName();
        if (again) return again;
      }
      throw err;
    }
  }

  async copySnapshot(req: {
    sourceRegion: string;
    sourceSnapshotId: string;
    description: string;
    encrypted: boolean;
    kmsKeyId?: string;
    tags: Tags;
  }): Promise<SnapshotInfo> {
    // CopySnapshot has no ClientToken: the copy's tags (set in the same call) find an earlier attempt's copy.
    const found = await this.call("DescribeSnapshots", `finding snapshots tagged ${JSON.stringify(req.tags)}`, () =>
      this.client.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"], Filters: tagFilters(req.tags) })),
    );
    const existing = (found.Snapshots ?? []).map(snapshotInfo).find((s) => s.state !== "error");
    if (existing) return existing;
    const out = await this.call("CopySnapshot", `copying ${req.sourceSnapshotId} from ${req.sourceRegion}`, () =>
      this.client.send(
        new CopySnapshotCommand({
          SourceRegion: req.sourceRegion,
          SourceSnapshotId: req.sourceSnapshotId,
          Description: req.description,
          ...(req.encrypted ? { Encrypted: true } : {}),
          ...(req.kmsKeyId ? { KmsKeyId: req.kmsKeyId } : {}),
          TagSpecifications: [{ ResourceType: "snapshot", Tags: toTags(req.tags) }],
        }),
      ),
    );
    if (!out.SnapshotId) throw new Ec2Error(`copying ${req.sourceSnapshotId}`, "EmptyResponse", "CopySnapshot returned no snapshot id");
    return { snapshotId: out.SnapshotId, state: "pending", volumeId: null, tags: req.tags };
  }

  async copyImage(req: {
    sourceRegion: string;
    sourceImageId: string;
    name: string;
    description: string;
    encrypted: boolean;
    kmsKeyId?: string;
    clientToken: string;
    tags: Tags;
  }): Promise<string> {
    const what = `copying image ${req.sourceImageId} from ${req.sourceRegion} as ${req.name}`;
    const found = await this.call("DescribeImages", `finding image named ${req.name}`, () =>
      this.client.send(new DescribeImagesCommand({ Owners: ["self"], Filters: [{ Name: "name", Values: [req.name] }] })),
    );
    const existing = found.Images?.find((i) => i.State !== "deregistered" && i.State !== "failed")?.ImageId;
    if (existing) return existing;
    const out = await this.call("CopyImage", what, () =>
      this.client.send(
        new CopyImageCommand({
          SourceRegion: req.sourceRegion,
          SourceImageId: req.sourceImageId,
          Name: req.name,
          Description: req.description,
          ClientToken: req.clientToken,
          ...(req.encrypted ? { Encrypted: true } : {}),
          ...(req.kmsKeyId ? { KmsKeyId: req.kmsKeyId } : {}),
          // Tagged on creation, the image and the snapshots the copy makes alike.
          TagSpecifications: [
            { ResourceType: "image", Tags: toTags(req.tags) },
            { ResourceType: "snapshot", Tags: toTags(req.tags) },
          ],
        }),
      ),
    );
    if (!out.ImageId) throw new Ec2Error(what, "EmptyResponse", "CopyImage returned no image id");
    return out.ImageId;
  }

  async deregisterImage(imageId: string): Promise<void> {
    await alreadyGoneIsDone(
      this.call("DeregisterImage", `deregistering ${imageId}`, () => this.client.send(new DeregisterImageCommand({ ImageId: imageId }))),
    );
  }

  async createNetworkInterface(req: {
    subnetId: string;
    securityGroupIds: string[];
    privateIp?: string;
    description: string;
    tags: Tags;
  }): Promise<EniInfo> {
    const found = await this.call("DescribeNetworkInterfaces", `finding ENIs tagged ${JSON.stringify(req.tags)}`, () =>
      this.client.send(new DescribeNetworkInterfacesCommand({ Filters: tagFilters(req.tags) })),
    );
    const existing = found.NetworkInterfaces?.[0];
    if (existing) return eniInfo(existing);
    const out = await this.call("CreateNetworkInterface", `creating an ENI in ${req.subnetId}`, () =>
      this.client.send(
        new CreateNetworkInterfaceCommand({
          SubnetId: req.subnetId,
          Groups: req.securityGroupIds.length ? req.securityGroupIds : undefined,
          PrivateIpAddress: req.privateIp,
          Description: req.description,
          TagSpecifications: [{ ResourceType: "network-interface", Tags: toTags(req.tags) }],
        }),
      ),
    );
    if (!out.NetworkInterface) throw new Ec2Error(`creating an ENI in ${req.subnetId}`, "EmptyResponse", "no network interface returned");
    return eniInfo(out.NetworkInterface);
  }

  describeNetworkInterface(eniId: string): Promise<EniInfo | null> {
    return this.enis.get(eniId);
  }

  async networkInterfacesAt(subnetId: string, privateIps: string[]): Promise<EniInfo[]> {
    const out: EniInfo[] = [];
    // A filter takes at most 200 values.
    for (let i = 0; i < privateIps.length; i += 100) {
      const chunk = privateIps.slice(i, i + 100);
      const found = await this.call(
        "DescribeNetworkInterfaces",
        `finding ENIs at ${chunk.slice(0, 3).join(", ")}${chunk.length > 3 ? "…" : ""}`,
        () =>
          this.client.send(
            new DescribeNetworkInterfacesCommand({
              Filters: [
                { Name: "subnet-id", Values: [subnetId] },
                { Name: "addresses.private-ip-address", Values: chunk },
              ],
            }),
          ),
      );
      out.push(...(found.NetworkInterfaces ?? []).map(eniInfo));
    }
    return out;
  }

  async deleteNetworkInterface(eniId: string): Promise<void> {
    await alreadyGoneIsDone(
      this.call("DeleteNetworkInterface", `deleting ${eniId}`, () =>
        this.client.send(new DeleteNetworkInterfaceCommand({ NetworkInterfaceId: eniId })),
      ),
    );
  }

  async describeInstanceDetails(instanceId: string): Promise<InstanceDetails | null> {
    const out = await this.call("DescribeInstances", `describing ${instanceId}`, () =>
      this.client.send(new DescribeInstancesCommand({ Filters: [{ Name: "instance-id", Values: [instanceId] }] })),
    );
    const i = out.Reservations?.flatMap((r) => r.Instances ?? []).find((x) => x.InstanceId === instanceId);
    return i ? instanceDetails(i) : null;
  }

  async instanceUserData(instanceId: string): Promise<Buffer> {
    const out = await this.call("DescribeInstanceAttribute", `reading the user-data of ${instanceId}`, () =>
      this.client.send(new DescribeInstanceAttributeCommand({ InstanceId: instanceId, Attribute: "userData" })),
    );
    const v = out.UserData?.Value;
    return v ? Buffer.from(v, "base64") : Buffer.alloc(0);
  }

  async setVolumesDeleteOnTermination(
    instanceId: string,
    devices: Array<{ deviceName: string; deleteOnTermination: boolean }>,
  ): Promise<void> {
    if (devices.length === 0) return;
    const list = devices.map((d) => `${d.deviceName}=${d.deleteOnTermination}`).join(", ");
    await this.call("ModifyInstanceAttribute", `setting DeleteOnTermination on ${instanceId} (${list})`, () =>
      this.client.send(
        new ModifyInstanceAttributeCommand({
          InstanceId: instanceId,
          BlockDeviceMappings: devices.map((d) => ({ DeviceName: d.deviceName, Ebs: { DeleteOnTermination: d.deleteOnTermination } })),
        }),
      ),
    );
  }

  async setEniDeleteOnTermination(eniId: string, attachmentId: string, deleteOnTermination: boolean): Promise<void> {
    await this.call("ModifyNetworkInterfaceAttribute", `setting DeleteOnTermination=${deleteOnTermination} on ${eniId}`, () =>
      this.client.send(
        new ModifyNetworkInterfaceAttributeCommand({
          NetworkInterfaceId: eniId,
          Attachment: { AttachmentId: attachmentId, DeleteOnTermination: deleteOnTermination },
        }),
      ),
    );
  }

  async stopInstance(instanceId: string): Promise<void> {
    try {
      await this.call("StopInstances", `stopping ${instanceId}`, () =>
        this.client.send(new StopInstancesCommand({ InstanceIds: [instanceId] })),
      );
    } catch (err) {
      // A replayed stop whose first attempt went through.
      const [i] = await this.describeInstancesNow([instanceId]).catch(() => []);
      if (i && (i.state === "stopping" || i.state === "stopped")) return;
      throw err;
    }
  }

  async attachNetworkInterface(eniId: string, instanceId: string, deviceIndex: number): Promise<void> {
    try {
      await this.call("AttachNetworkInterface", `attaching ${eniId} to ${instanceId} at device index ${deviceIndex}`, () =>
        this.client.send(
          new AttachNetworkInterfaceCommand({ NetworkInterfaceId: eniId, InstanceId: instanceId, DeviceIndex: deviceIndex }),
        ),
      );
    } catch (err) {
      // A replayed attach whose first attempt went through: the ENI is already on that instance.
      const e = await this.enis.get(eniId).catch(() => null);
      if (e?.attachment && e.attachment.instanceId === instanceId && e.attachment.status !== "detaching") return;
      throw err;
    }
  }

  async startInstance(instanceId: string): Promise<void> {
    try {
      await this.call("StartInstances", `starting ${instanceId}`, () =>
        this.client.send(new StartInstancesCommand({ InstanceIds: [instanceId] })),
      );
    } catch (err) {
      const [i] = await this.describeInstancesNow([instanceId]).catch(() => []);
      if (i && (i.state === "pending" || i.state === "running")) return;
      throw err;
    }
  }

  async detachNetworkInterface(eniId: string, instanceId: string, opts: { force?: boolean } = {}): Promise<void> {
    const e = await this.enis.get(eniId);
    const a = e?.attachment;
    if (!a || a.instanceId !== instanceId) return;
    if (a.status === "detaching" && !opts.force) return;
    try {
      await this.call("DetachNetworkInterface", `detaching ${eniId} from ${instanceId}${opts.force ? " (forced)" : ""}`, () =>
        this.client.send(new DetachNetworkInterfaceCommand({ AttachmentId: a.attachmentId, Force: opts.force ? true : undefined })),
      );
    } catch (err) {
      // Gone meanwhile (the instance terminated, an earlier attempt finished): detached.
      if (errorCode(err) === "InvalidAttachmentID.NotFound") return;
      throw err;
    }
  }

  async untagResources(resourceIds: string[], keys: string[]): Promise<void> {
    if (resourceIds.length === 0 || keys.length === 0) return;
    await this.call("DeleteTags", `removing tags ${keys.join(", ")} from ${resourceIds.join(", ")}`, () =>
      this.client.send(new DeleteTagsCommand({ Resources: resourceIds, Tags: keys.map((Key) => ({ Key })) })),
    );
  }

  async tagResources(resourceIds: string[], tags: Tags): Promise<void> {
    if (resourceIds.length === 0) return;
    await this.call("CreateTags", `tagging ${resourceIds.join(", ")}`, () =>
      this.client.send(new CreateTagsCommand({ Resources: resourceIds, Tags: toTags(tags) })),
    );
  }

  async modifyVolume(req: ModifyVolumeRequest): Promise<VolumeModificationInfo> {
    const asked = [
      req.sizeGiB !== undefined ? `${req.sizeGiB} GiB` : "",
      req.volumeType ?? "",
      req.iops !== undefined ? `${req.iops} IOPS` : "",
      req.throughput !== undefined ? `${req.throughput} MiB/s` : "",
    ].filter(Boolean);
    const out = await this.call("ModifyVolume", `modifying ${req.volumeId} to ${asked.join(", ")}`, () =>
      this.client.send(
        new ModifyVolumeCommand({
          VolumeId: req.volumeId,
          Size: req.sizeGiB,
          VolumeType: req.volumeType as VolumeType | undefined,
          Iops: req.iops,
          Throughput: req.throughput,
        }),
      ),
    );
    return volumeModificationInfo(out.VolumeModification ?? { VolumeId: req.volumeId, ModificationState: "modifying" });
  }

  async describeVolumesModifications(volumeIds: string[]): Promise<VolumeModificationInfo[]> {
    if (volumeIds.length === 0) return [];
    // By filter, not by id: an id of a volume never modified would fail the whole call (InvalidVolumeModification.NotFound).
    const all: VolumeModificationInfo[] = [];
    let token: string | undefined;
    do {
      const out = await this.call("DescribeVolumesModifications", `describing the modifications of ${volumeIds.join(", ")}`, () =>
        this.client.send(
          new DescribeVolumesModificationsCommand({
            Filters: [{ Name: "volume-id", Values: volumeIds }],
            NextToken: token,
            MaxResults: 500,
          }),
        ),
      );
      for (const m of out.VolumesModifications ?? []) all.push(volumeModificationInfo(m));
      token = out.NextToken;
    } while (token);
    return all;
  }
}

function volumeModificationInfo(m: VolumeModification): VolumeModificationInfo {
  return {
    volumeId: m.VolumeId ?? "",
    state: m.ModificationState ?? "modifying",
    targetSizeGiB: m.TargetSize ?? null,
    targetVolumeType: m.TargetVolumeType ?? null,
    targetIops: m.TargetIops ?? null,
    targetThroughput: m.TargetThroughput ?? null,
    progress: m.Progress ?? 0,
    statusMessage: m.StatusMessage ?? null,
    startTime: m.StartTime?.getTime() ?? null,
    endTime: m.EndTime?.getTime() ?? null,
  };
}

/**
 * One DryRun per gateway action, over placeholder ids (well-formed, never real) and with the tags
 * spotkeep puts on what it creates, so tag conditions on new resources are met.
 */
function permissionDryRuns(region: string): Record<string, () => object> {
  const zeros = "0".repeat(17);
  const id = { i: `i-${zeros}`, vol: `vol-${zeros}`, snap: `snap-${zeros}`, ami: `ami-${zeros}`, subnet: `subnet-${zeros}` };
  const Tags = toTags({ [TAG.managed]: "true", [TAG.instance]: "spotkeep-permission-check" });
  const tagged = <T extends string>(...types: T[]) => types.map((ResourceType) => ({ ResourceType, Tags }));
  const DryRun = true;
  return {
    AttachNetworkInterface: () =>
      new AttachNetworkInterfaceCommand({ DryRun, NetworkInterfaceId: `eni-${zeros}`, InstanceId: id.i, DeviceIndex: 1 }),
    AttachVolume: () => new AttachVolumeCommand({ DryRun, VolumeId: id.vol, InstanceId: id.i, Device: "/dev/sdf" }),
    CreateNetworkInterface: () =>
      new CreateNetworkInterfaceCommand({ DryRun, SubnetId: id.subnet, TagSpecifications: tagged("network-interface") }),
    CreateSnapshot: () => new CreateSnapshotCommand({ DryRun, VolumeId: id.vol, TagSpecifications: tagged("snapshot") }),
    CopySnapshot: () =>
      new CopySnapshotCommand({ DryRun, SourceRegion: region, SourceSnapshotId: id.snap, TagSpecifications: tagged("snapshot") }),
    CopyImage: () =>
      new CopyImageCommand({
        DryRun,
        SourceRegion: region,
        SourceImageId: id.ami,
        Name: "spotkeep-permission-check",
        ClientToken: "spotkeep-permission-check",
        TagSpecifications: tagged("image", "snapshot"),
      }),
    CreateTags: () => new CreateTagsCommand({ DryRun, Resources: [id.vol], Tags }),
    CreateVolume: () =>
      new CreateVolumeCommand({ DryRun, AvailabilityZone: `${region}a`, Size: 1, VolumeType: "gp3", TagSpecifications: tagged("volume") }),
    DeleteNetworkInterface: () => new DeleteNetworkInterfaceCommand({ DryRun, NetworkInterfaceId: `eni-${zeros}` }),
    DeleteSnapshot: () => new DeleteSnapshotCommand({ DryRun, SnapshotId: id.snap }),
    DeleteTags: () => new DeleteTagsCommand({ DryRun, Resources: [id.vol], Tags: [{ Key: TAG.instance }] }),
    DeleteVolume: () => new DeleteVolumeCommand({ DryRun, VolumeId: id.vol }),
    DeregisterImage: () => new DeregisterImageCommand({ DryRun, ImageId: id.ami }),
    DescribeImages: () => new DescribeImagesCommand({ DryRun, Owners: ["self"], MaxResults: 5 }),
    DescribeInstanceAttribute: () => new DescribeInstanceAttributeCommand({ DryRun, InstanceId: id.i, Attribute: "userData" }),
    DescribeInstances: () => new DescribeInstancesCommand({ DryRun, MaxResults: 5 }),
    DescribeInstanceStatus: () => new DescribeInstanceStatusCommand({ DryRun, MaxResults: 5 }),
    DescribeInstanceTypes: () => new DescribeInstanceTypesCommand({ DryRun, MaxResults: 5 }),
    DescribeNetworkInterfaces: () => new DescribeNetworkInterfacesCommand({ DryRun, MaxResults: 5 }),
    DescribeSnapshots: () => new DescribeSnapshotsCommand({ DryRun, OwnerIds: ["self"], MaxResults: 5 }),
    DescribeSpotInstanceRequests: () => new DescribeSpotInstanceRequestsCommand({ DryRun, MaxResults: 5 }),
    DescribeSpotPriceHistory: () => new DescribeSpotPriceHistoryCommand({ DryRun, MaxResults: 5 }),
    DescribeSubnets: () => new DescribeSubnetsCommand({ DryRun, MaxResults: 5 }),
    DescribeVolumes: () => new DescribeVolumesCommand({ DryRun, MaxResults: 5 }),
    DescribeVolumesModifications: () => new DescribeVolumesModificationsCommand({ DryRun, MaxResults: 5 }),
    DetachNetworkInterface: () => new DetachNetworkInterfaceCommand({ DryRun, AttachmentId: `eni-attach-${zeros}` }),
    DetachVolume: () => new DetachVolumeCommand({ DryRun, VolumeId: id.vol }),
    GetEbsDefaultKmsKeyId: () => new GetEbsDefaultKmsKeyIdCommand({ DryRun }),
    GetEbsEncryptionByDefault: () => new GetEbsEncryptionByDefaultCommand({ DryRun }),
    ModifyInstanceAttribute: () =>
      new ModifyInstanceAttributeCommand({
        DryRun,
        InstanceId: id.i,
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { DeleteOnTermination: false } }],
      }),
    ModifyVolume: () => new ModifyVolumeCommand({ DryRun, VolumeId: id.vol, Size: 2 }),
    ModifyNetworkInterfaceAttribute: () =>
      new ModifyNetworkInterfaceAttributeCommand({
        DryRun,
        NetworkInterfaceId: `eni-${zeros}`,
        Attachment: { AttachmentId: `eni-attach-${zeros}`, DeleteOnTermination: false },
      }),
    RegisterImage: () =>
      new RegisterImageCommand({
        DryRun,
        Name: "spotkeep-permission-check",
        RootDeviceName: "/dev/xvda",
        Architecture: "x86_64",
        VirtualizationType: "hvm",
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: id.snap } }],
        TagSpecifications: tagged("image"),
      }),
    RunInstances: () =>
      new RunInstancesCommand({
        DryRun,
        ImageId: id.ami,
        InstanceType: "t3.micro",
        MinCount: 1,
        MaxCount: 1,
        SubnetId: id.subnet,
        TagSpecifications: tagged("instance", "volume", "network-interface"),
      }),
    StartInstances: () => new StartInstancesCommand({ DryRun, InstanceIds: [id.i] }),
    StopInstances: () => new StopInstancesCommand({ DryRun, InstanceIds: [id.i] }),
    TerminateInstances: () => new TerminateInstancesCommand({ DryRun, InstanceIds: [id.i] }),
  };
}

function instanceInfo(i: Instance): InstanceInfo {
  return {
    instanceId: i.InstanceId!,
    state: (i.State?.Name ?? "pending") as InstanceInfo["state"],
    stateReason: i.StateReason?.Code ?? null,
    instanceType: i.InstanceType ?? "",
    availabilityZone: i.Placement?.AvailabilityZone ?? "",
    subnetId: i.SubnetId ?? null,
    privateIp: i.PrivateIpAddress ?? null,
    lifecycle: i.InstanceLifecycle === "spot" ? "spot" : "on-demand",
    imageId: i.ImageId ?? "",
    rootDeviceName: i.RootDeviceName ?? null,
    volumes: (i.BlockDeviceMappings ?? [])
      .filter((b) => b.Ebs?.VolumeId)
      .map((b) => ({ deviceName: b.DeviceName ?? "", volumeId: b.Ebs!.VolumeId! })),
    enis: (i.NetworkInterfaces ?? []).map((n) => ({ eniId: n.NetworkInterfaceId!, deviceIndex: n.Attachment?.DeviceIndex ?? 0 })),
    tags: fromTags(i.Tags),
  };
}

function instanceDetails(i: Instance): InstanceDetails {
  return {
    ...instanceInfo(i),
    vpcId: i.VpcId ?? null,
    rootDeviceType: i.RootDeviceType ?? "ebs",
    platform: i.Platform ?? null,
    keyName: i.KeyName ?? null,
    iamInstanceProfile: i.IamInstanceProfile?.Arn?.split("/").pop() ?? null,
    securityGroupIds: (i.SecurityGroups ?? []).flatMap((g) => (g.GroupId ? [g.GroupId] : [])),
    architecture: i.Architecture ?? "x86_64",
    spotInstanceRequestId: i.SpotInstanceRequestId ?? null,
    blockDevices: (i.BlockDeviceMappings ?? [])
      .filter((b) => b.Ebs?.VolumeId)
      .map((b) => ({
        deviceName: b.DeviceName ?? "",
        volumeId: b.Ebs!.VolumeId!,
        deleteOnTermination: b.Ebs!.DeleteOnTermination ?? false,
      })),
    networkInterfaces: (i.NetworkInterfaces ?? []).map((n) => ({
      eniId: n.NetworkInterfaceId ?? "",
      deviceIndex: n.Attachment?.DeviceIndex ?? 0,
      attachmentId: n.Attachment?.AttachmentId ?? "",
      deleteOnTermination: n.Attachment?.DeleteOnTermination ?? false,
      privateIp: n.PrivateIpAddress ?? "",
      subnetId: n.SubnetId ?? "",
      interfaceType: n.InterfaceType ?? "interface",
      secondaryPrivateIps: Math.max(0, (n.PrivateIpAddresses ?? []).length - 1),
    })),
  };
}

function volumeInfo(v: Volume): VolumeInfo {
  return {
    volumeId: v.VolumeId!,
    state: (v.State ?? "creating") as VolumeInfo["state"],
    availabilityZone: v.AvailabilityZone ?? "",
    sizeGiB: v.Size ?? 0,
    volumeType: v.VolumeType ?? "gp2",
    iops: v.Iops ?? null,
    throughput: v.Throughput ?? null,
    multiAttachEnabled: v.MultiAttachEnabled ?? false,
    snapshotId: v.SnapshotId || null,
    attachments: (v.Attachments ?? []).map((a) => ({ instanceId: a.InstanceId ?? "", device: a.Device ?? "", state: a.State ?? "" })),
    tags: fromTags(v.Tags),
    encrypted: v.Encrypted ?? false,
    kmsKeyId: v.KmsKeyId ?? null,
  };
}

function snapshotInfo(s: Snapshot): SnapshotInfo {
  return {
    snapshotId: s.SnapshotId!,
    state: s.State ?? "pending",
    volumeId: s.VolumeId ?? null,
    tags: fromTags(s.Tags),
    encrypted: s.Encrypted ?? false,
    kmsKeyId: s.KmsKeyId ?? null,
  };
}

function imageInfo(i: Image): ImageInfo {
  const root = i.BlockDeviceMappings?.find((b) => b.DeviceName === i.RootDeviceName);
  return {
    imageId: i.ImageId!,
    state: i.State ?? "pending",
    name: i.Name ?? "",
    rootDeviceName: i.RootDeviceName ?? "/dev/xvda",
    architecture: i.Architecture ?? "x86_64",
    rootSnapshotId: root?.Ebs?.SnapshotId ?? null,
    rootSizeGiB: root?.Ebs?.VolumeSize ?? null,
    platform: i.Platform ?? null,
    instanceStoreDevices: (i.BlockDeviceMappings ?? []).flatMap((b) =>
      b.VirtualName?.startsWith("ephemeral") && b.DeviceName ? [b.DeviceName] : [],
    ),
    tags: fromTags(i.Tags),
  };
}

function eniInfo(n: NetworkInterface): EniInfo {
  return {
    eniId: n.NetworkInterfaceId!,
    status: n.Status ?? "available",
    privateIp: n.PrivateIpAddress ?? "",
    subnetId: n.SubnetId ?? "",
    availabilityZone: n.AvailabilityZone ?? "",
    attachedTo: n.Attachment?.InstanceId ?? null,
    ...(n.Attachment?.AttachmentId && n.Attachment.InstanceId
      ? {
          attachment: {
            attachmentId: n.Attachment.AttachmentId,
            instanceId: n.Attachment.InstanceId,
            deviceIndex: n.Attachment.DeviceIndex ?? 0,
            status: n.Attachment.Status ?? "attached",
          },
        }
      : {}),
    tags: fromTags(n.TagSet),
  };
}

export { TAG };

function instanceStatusInfo(s: InstanceStatus): InstanceStatusInfo {
  const since = [...(s.SystemStatus?.Details ?? []), ...(s.InstanceStatus?.Details ?? [])]
    .map((d) => d.ImpairedSince?.getTime())
    .filter((t): t is number => t !== undefined);
  return {
    instanceId: s.InstanceId ?? "",
    system: s.SystemStatus?.Status ?? "insufficient-data",
    instance: s.InstanceStatus?.Status ?? "insufficient-data",
    impairedSince: since.length ? Math.min(...since) : null,
    events: (s.Events ?? []).map((e) => ({
      eventId: e.InstanceEventId ?? "",
      code: e.Code ?? "unknown",
      description: e.Description ?? "",
      notBefore: e.NotBefore?.getTime() ?? null,
      notAfter: e.NotAfter?.getTime() ?? null,
      active: !/^\[(Completed|Canceled)\]/.test(e.Description ?? ""),
    })),
  };
}

/**
 * Creates whose API has no ClientToken (the SDK fills in the others' tokens itself, the same on
 * every retry): a failure that may have acted is retried by the gateway (find first), not by the SDK.
 */
const NO_CLIENT_TOKEN = new Set(["CreateSnapshot"]);

/** Marked by the spotkeepAmbiguousCreate middleware: EC2 may have acted before the call failed. */
function isAmbiguous(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 4; e = (e as { cause?: unknown }).cause, depth++)
    if ((e as { $spotkeepAmbiguous?: boolean }).$spotkeepAmbiguous) return true;
  return false;
}
