/**
 * What each EC2 action is authorised against: one row per action, listing the resources the
 * Service Authorization Reference names for it (existing ones with their tags, new ones as
 * `type/*` with the tags the request puts on them) and the extra condition keys it sets.
 *
 * Rows run after the handler validated the request (the DryRun point), so referenced resources
 * exist: a request naming an unknown resource gets its NotFound error, as EC2 answers.
 * A new resource that the request tags is also authorised for ec2:CreateTags with
 * `ec2:CreateAction` = the action (tag-on-create); RunInstances with an instance profile also
 * needs iam:PassRole on its role (localcloud has no IAM roles: the profile's role has its name).
 */
import type { TagSpecification } from "@aws-sdk/client-ec2";
import { ACCOUNT_ID } from "../world/catalog.js";
import type { Tags } from "../world/types.js";
import type { World } from "../world/world.js";
import { contextOf, evaluate, type Decision, type Policy } from "../iam/policy.js";
import { authorizationMessage, encodeMessage, PRINCIPAL } from "../iam/message.js";
import { Ec2Error } from "./errors.js";

export interface AuthTarget {
  /** The resource's ARN; `type/*` for one the request creates; `*` for actions without resource-level permissions. */
  arn: string;
  /** An existing resource's tags (aws:ResourceTag/*, ec2:ResourceTag/*). */
  tags?: Tags;
  /** Tags the request puts on this resource (aws:RequestTag/*, aws:TagKeys). */
  requestTags?: Tags;
  /** The request creates this resource: its request tags are tag-on-create. */
  creates?: boolean;
  /** Further condition keys (ec2:InstanceType, iam:PassedToService, ...). */
  keys?: Record<string, string | string[]>;
  /** Another service's action this request also needs (iam:PassRole); default ec2:<Action>. */
  action?: string;
}

// Handlers decode each action's own SDK input type.
// biome-ignore lint/suspicious/noExplicitAny: each row reads its own action's decoded input
type Row = (w: World, input: any) => AuthTarget[];

/** Resource types whose ARNs carry no account (images and snapshots are global to their owner). */
const NO_ACCOUNT = new Set(["image", "snapshot"]);

export function arnOf(type: string, id: string, region: string): string {
  return `arn:aws:ec2:${region}:${NO_ACCOUNT.has(type) ? "" : ACCOUNT_ID}:${type}/${id}`;
}

const PREFIX_TYPE: Record<string, string> = {
  i: "instance",
  vol: "volume",
  snap: "snapshot",
  ami: "image",
  eni: "network-interface",
  sir: "spot-instances-request",
  subnet: "subnet",
  sg: "security-group",
};

type Store = (w: World) => Map<string, { tags: Tags }>;
const STORES: Record<string, Store> = {
  instance: (w) => w.instances,
  volume: (w) => w.volumes,
  snapshot: (w) => w.snapshots,
  image: (w) => w.images,
  "network-interface": (w) => w.enis,
  "spot-instances-request": (w) => w.spotRequests,
  subnet: (w) => w.subnets,
  "security-group": (w) => w.securityGroups,
};

/** An existing resource of a known type. */
function existing(w: World, type: string, id: string | undefined, extra: Partial<AuthTarget> = {}): AuthTarget[] {
  if (!id) return [];
  return [{ arn: arnOf(type, id, w.region), tags: STORES[type]?.(w).get(id)?.tags ?? new Map(), ...extra }];
}

/** A copy's source: an existing resource of the source region, named by its ARN there. */
function inSource(w: World, region: string, type: string, id: string | undefined): AuthTarget[] {
  const from = w.regions.get(region) ?? w;
  if (!id) return [];
  return [{ arn: arnOf(type, id, from.region), tags: STORES[type]?.(from).get(id)?.tags ?? new Map() }];
}

/** An existing resource named only by its id (CreateTags, DeleteTags). */
function byId(w: World, id: string, extra: Partial<AuthTarget> = {}): AuthTarget[] {
  const type = PREFIX_TYPE[id.split("-")[0] ?? ""];
  return type ? existing(w, type, id, extra) : [{ arn: arnOf("unknown", id, w.region), tags: new Map(), ...extra }];
}

function tagSpec(specs: TagSpecification[] | undefined, type: string): Tags {
  const spec = (specs ?? []).find((s) => s.ResourceType === type);
  return new Map((spec?.Tags ?? []).filter((t) => t.Key).map((t) => [t.Key!, t.Value ?? ""]));
}

function created(w: World, type: string, specs: TagSpecification[] | undefined, keys?: AuthTarget["keys"]): AuthTarget {
  return { arn: arnOf(type, "*", w.region), creates: true, requestTags: tagSpec(specs, type), keys };
}

function tagsOfRequest(tags: Array<{ Key?: string; Value?: string }> | undefined): Tags {
  return new Map((tags ?? []).filter((t) => t.Key).map((t) => [t.Key!, t.Value ?? ""]));
}

const many = (w: World, type: string, ids: string[] | undefined) => (ids ?? []).flatMap((id) => existing(w, type, id));
const noResources: Row = () => [{ arn: "*" }];

function runInstancesTargets(w: World, input: import("@aws-sdk/client-ec2").RunInstancesRequest): AuthTarget[] {
  const specs = input.TagSpecifications;
  const out: AuthTarget[] = [];
  const image = input.ImageId ? w.images.get(input.ImageId) : undefined;
  out.push(...existing(w, "image", input.ImageId));
  const snaps = new Set<string>();
  for (const b of image?.blockDeviceMappings ?? []) if (b.snapshotId) snaps.add(b.snapshotId);
  for (const b of input.BlockDeviceMappings ?? []) if (b.Ebs?.SnapshotId) snaps.add(b.Ebs.SnapshotId);
  for (const s of snaps) out.push(...existing(w, "snapshot", s));
  const placementAz = input.Placement?.AvailabilityZone;
  const newEni = (subnetId: string | undefined, groups: string[] | undefined) => {
    const subnet = subnetId ? w.subnets.get(subnetId) : undefined;
    const sgs = groups && groups.length > 0 ? groups : subnet ? [w.defaultSecurityGroup(subnet.vpcId)?.id ?? ""].filter(Boolean) : [];
    out.push(created(w, "network-interface", specs), ...existing(w, "subnet", subnetId), ...many(w, "security-group", sgs));
  };
  const nis = input.NetworkInterfaces ?? [];
  if (nis.length === 0) newEni(input.SubnetId ?? w.defaultSubnet(placementAz ?? w.catalog.azs[0])?.id, input.SecurityGroupIds);
  for (const ni of nis) {
    if (ni.NetworkInterfaceId) out.push(...existing(w, "network-interface", ni.NetworkInterfaceId));
    else newEni(ni.SubnetId ?? (ni.DeviceIndex === 0 ? w.defaultSubnet(placementAz)?.id : undefined), ni.Groups);
  }
  const spot = input.InstanceMarketOptions?.MarketType === "spot";
  out.push(
    created(w, "instance", specs, {
      "ec2:InstanceType": input.InstanceType ?? "t3.micro",
      "ec2:InstanceMarketType": spot ? "spot" : "on-demand",
    }),
    created(w, "volume", specs),
  );
  if (spot) out.push(created(w, "spot-instances-request", specs));
  if (input.KeyName) out.push({ arn: arnOf("key-pair", input.KeyName, w.region), tags: new Map() });
  const profile = input.IamInstanceProfile?.Name ?? input.IamInstanceProfile?.Arn?.split("/").pop();
  if (profile)
    out.push({
      action: "iam:PassRole",
      arn: `arn:aws:iam::${ACCOUNT_ID}:role/${profile}`,
      keys: { "iam:PassedToService": "ec2.amazonaws.com" },
    });
  return out;
}

/** One row per action localcloud implements (a test keeps this equal to ACTIONS). */
export const AUTHORIZATION: Record<string, Row> = {
  RunInstances: runInstancesTargets,
  DescribeInstances: noResources,
  DescribeInstanceStatus: noResources,
  TerminateInstances: (w, i) => many(w, "instance", i.InstanceIds),
  StopInstances: (w, i) => many(w, "instance", i.InstanceIds),
  StartInstances: (w, i) => many(w, "instance", i.InstanceIds),
  ModifyInstanceAttribute: (w, i) => [...existing(w, "instance", i.InstanceId), ...many(w, "security-group", i.Groups)],
  DescribeInstanceAttribute: (w, i) => existing(w, "instance", i.InstanceId),
  CreateVolume: (w, i) => [created(w, "volume", i.TagSpecifications)],
  DescribeVolumes: noResources,
  AttachVolume: (w, i) => [...existing(w, "instance", i.InstanceId), ...existing(w, "volume", i.VolumeId)],
  DetachVolume: (w, i) => [
    ...existing(w, "instance", i.InstanceId ?? w.volumes.get(i.VolumeId)?.attachment?.instanceId),
    ...existing(w, "volume", i.VolumeId),
  ],
  DeleteVolume: (w, i) => existing(w, "volume", i.VolumeId),
  ModifyVolume: (w, i) => existing(w, "volume", i.VolumeId),
  DescribeVolumesModifications: noResources,
  CreateSnapshot: (w, i) => [created(w, "snapshot", i.TagSpecifications), ...existing(w, "volume", i.VolumeId)],
  DescribeSnapshots: noResources,
  DeleteSnapshot: (w, i) => existing(w, "snapshot", i.SnapshotId),
  RegisterImage: (w, i) => [
    created(w, "image", i.TagSpecifications),
    ...many(w, "snapshot", (i.BlockDeviceMappings ?? []).map((b: { Ebs?: { SnapshotId?: string } }) => b.Ebs?.SnapshotId).filter(Boolean)),
  ],
  CreateImage: (w, i) => [
    created(w, "image", i.TagSpecifications),
    ...existing(w, "instance", i.InstanceId),
    created(w, "snapshot", i.TagSpecifications),
  ],
  DescribeImages: noResources,
  DeregisterImage: (w, i) => existing(w, "image", i.ImageId),
  CreateNetworkInterface: (w, i) => {
    const subnet = w.subnets.get(i.SubnetId);
    const groups: string[] = i.Groups?.length ? i.Groups : subnet ? [w.defaultSecurityGroup(subnet.vpcId)?.id ?? ""].filter(Boolean) : [];
    return [
      created(w, "network-interface", i.TagSpecifications),
      ...existing(w, "subnet", i.SubnetId),
      ...many(w, "security-group", groups),
    ];
  },
  DescribeNetworkInterfaces: noResources,
  AttachNetworkInterface: (w, i) => [...existing(w, "instance", i.InstanceId), ...existing(w, "network-interface", i.NetworkInterfaceId)],
  DetachNetworkInterface: (w, i) => {
    const eni = [...w.enis.values()].find((e) => e.attachment?.id === i.AttachmentId);
    return [...existing(w, "instance", eni?.attachment?.instanceId), ...existing(w, "network-interface", eni?.id)];
  },
  DeleteNetworkInterface: (w, i) => existing(w, "network-interface", i.NetworkInterfaceId),
  ModifyNetworkInterfaceAttribute: (w, i) => [
    ...existing(w, "network-interface", i.NetworkInterfaceId),
    ...many(w, "security-group", i.Groups),
  ],
  CreateTags: (w, i) => (i.Resources ?? []).flatMap((id: string) => byId(w, id, { requestTags: tagsOfRequest(i.Tags) })),
  DeleteTags: (w, i) => (i.Resources ?? []).flatMap((id: string) => byId(w, id, { requestTags: tagsOfRequest(i.Tags) })),
  DescribeTags: noResources,
  DescribeAvailabilityZones: noResources,
  DescribeRegions: noResources,
  DescribeSubnets: noResources,
  DescribeSecurityGroups: noResources,
  DescribeInstanceTypes: noResources,
  DescribeSpotPriceHistory: noResources,
  DescribeSpotInstanceRequests: noResources,
  CancelSpotInstanceRequests: (w, i) => many(w, "spot-instances-request", i.SpotInstanceRequestIds),
  CopySnapshot: (w, i) => [created(w, "snapshot", i.TagSpecifications), ...inSource(w, i.SourceRegion, "snapshot", i.SourceSnapshotId)],
  CopyImage: (w, i) => [created(w, "image", i.TagSpecifications), ...inSource(w, i.SourceRegion, "image", i.SourceImageId)],
  GetEbsEncryptionByDefault: noResources,
  EnableEbsEncryptionByDefault: noResources,
  DisableEbsEncryptionByDefault: noResources,
  GetEbsDefaultKmsKeyId: noResources,
  ModifyEbsDefaultKmsKeyId: noResources,
  ResetEbsDefaultKmsKeyId: noResources,
};

/** One authorisation check: an IAM action on one resource with its condition keys. */
export interface Check {
  action: string;
  resource: string;
  context: ReturnType<typeof contextOf>;
}

/** The checks a request needs: every target, plus ec2:CreateTags for each new resource it tags. */
export function checksFor(action: string, targets: AuthTarget[], region: string): Check[] {
  const base = {
    "ec2:Region": region,
    "aws:RequestedRegion": region,
    "aws:PrincipalAccount": ACCOUNT_ID,
    "aws:PrincipalArn": PRINCIPAL.arn,
  };
  const out: Check[] = [];
  for (const t of targets) {
    const keys: Record<string, string | string[]> = { ...base };
    for (const [k, v] of t.tags ?? []) {
      keys[`aws:ResourceTag/${k}`] = v;
      keys[`ec2:ResourceTag/${k}`] = v;
    }
    const req = t.requestTags ?? new Map<string, string>();
    for (const [k, v] of req) keys[`aws:RequestTag/${k}`] = v;
    if (req.size > 0) keys["aws:TagKeys"] = [...req.keys()];
    Object.assign(keys, t.keys ?? {});
    out.push({ action: t.action ?? `ec2:${action}`, resource: t.arn, context: contextOf(keys) });
    if (t.creates && req.size > 0 && action !== "CreateTags") {
      out.push({ action: "ec2:CreateTags", resource: t.arn, context: contextOf({ ...keys, "ec2:CreateAction": action }) });
    }
  }
  return out;
}

export function unauthorized(check: Check, d: Decision): Ec2Error {
  const why = d.explicitDeny
    ? "with an explicit deny in an identity-based policy"
    : `because no identity-based policy allows the ${check.action} action`;
  const encoded = encodeMessage(authorizationMessage(check.action, check.resource, check.context, d));
  return new Ec2Error(
    "UnauthorizedOperation",
    `You are not authorized to perform this operation. ` +
      `User: ${PRINCIPAL.arn} is not authorized to perform: ${check.action} on resource: ${check.resource} ${why}. ` +
      `Encoded authorization failure message: ${encoded}`,
  );
}

/** Authorise a request against the policy: throws UnauthorizedOperation for the first check it fails. */
export function authorizeRequest(policy: Policy, action: string, w: World, input: Record<string, unknown>): void {
  const row = AUTHORIZATION[action];
  if (!row) throw new Error(`localcloud bug: no authorization row for ${action}`);
  for (const check of checksFor(action, row(w, input), w.region)) {
    const d = evaluate(policy, check);
    if (!d.allowed) throw unauthorized(check, d);
  }
}
