/** Network interfaces. An ENI is fixed to its subnet/AZ and keeps its IP until deleted. */
import type {
  AttachNetworkInterfaceRequest,
  CreateNetworkInterfaceRequest,
  DeleteNetworkInterfaceRequest,
  DescribeNetworkInterfacesRequest,
  DetachNetworkInterfaceRequest,
  ModifyNetworkInterfaceAttributeRequest,
  NetworkInterface as SdkEni,
} from "@aws-sdk/client-ec2";
import { createHash } from "node:crypto";
import type { Ctx } from "../common.js";
import { applyFilters, checkId, dryRun, integer, noIdsWithMaxResults, paginate, required, tagList, tagSpecs } from "../common.js";
import { Ec2Error } from "../errors.js";
import { ACCOUNT_ID } from "../../world/catalog.js";
import { ID_PREFIX, newId, newMac } from "../../world/ids.js";
import type { RuntimeEni } from "../../runtime/types.js";
import type { Eni } from "../../world/types.js";
import type { World } from "../../world/world.js";
import { lookupInstances } from "./instances.js";
import { checkFreeIp } from "./run-instances.js";

export function describeEni(w: World, e: Eni): SdkEni {
  const sgName = (id: string) => w.securityGroups.get(id)?.name ?? "";
  const dns = `ip-${e.privateIp.replace(/\./g, "-")}.ec2.internal`;
  return {
    NetworkInterfaceId: e.id,
    SubnetId: e.subnetId,
    VpcId: e.vpcId,
    AvailabilityZone: e.az,
    Description: e.description,
    OwnerId: ACCOUNT_ID,
    RequesterManaged: false,
    Status: e.status,
    MacAddress: e.mac,
    PrivateIpAddress: e.privateIp,
    PrivateDnsName: dns,
    SourceDestCheck: true,
    InterfaceType: "interface",
    Groups: e.securityGroupIds.map((id) => ({ GroupId: id, GroupName: sgName(id) })),
    Attachment: e.attachment
      ? {
          AttachmentId: e.attachment.id,
          InstanceId: e.attachment.instanceId,
          InstanceOwnerId: ACCOUNT_ID,
          DeviceIndex: e.attachment.deviceIndex,
          NetworkCardIndex: 0,
          Status: e.attachment.state,
          AttachTime: e.attachment.attachTime,
          DeleteOnTermination: e.attachment.deleteOnTermination,
        }
      : undefined,
    PrivateIpAddresses: [{ PrivateIpAddress: e.privateIp, Primary: true, PrivateDnsName: dns }],
    Ipv6Addresses: [],
    TagSet: e.tags.size ? tagList(e.tags) : undefined,
  };
}

/** What the runtime needs to plug the ENI into an instance. */
export function runtimeEni(w: World, e: Eni, deviceIndex: number): RuntimeEni {
  return { eniId: e.id, mac: e.mac, deviceIndex, privateIp: e.privateIp, subnetCidr: w.subnets.get(e.subnetId)?.cidr ?? "" };
}

function lookupEni(w: World, id: string | undefined): Eni {
  const eid = required(id, "NetworkInterfaceId");
  checkId(eid, "eni", "InvalidNetworkInterfaceID.Malformed");
  const e = w.enis.get(eid);
  if (!e) throw new Ec2Error("InvalidNetworkInterfaceID.NotFound", `The networkInterface ID '${eid}' does not exist`);
  return e;
}

function fingerprint(input: object): string {
  const { ClientToken: _t, DryRun: _d, ...rest } = input as Record<string, unknown>;
  return createHash("sha256").update(JSON.stringify(rest)).digest("hex");
}

export function createNetworkInterface(ctx: Ctx, input: CreateNetworkInterfaceRequest) {
  const w = ctx.world;
  if (input.ClientToken !== undefined) {
    const prior = w.clientTokens.get(`CreateNetworkInterface:${input.ClientToken}`);
    if (prior) {
      if (prior.fingerprint !== fingerprint(input))
        throw new Ec2Error("IdempotentParameterMismatch", `The client token '${input.ClientToken}' was used with different parameters`);
      const e = w.enis.get(prior.ids[0]!);
      if (e) {
        dryRun(ctx, input);
        return { NetworkInterface: describeEni(w, e), ClientToken: input.ClientToken };
      }
    }
  }
  const subnetId = required(input.SubnetId, "SubnetId");
  checkId(subnetId, "subnet", "InvalidSubnetID.Malformed");
  const subnet = w.subnets.get(subnetId);
  if (!subnet) throw new Ec2Error("InvalidSubnetID.NotFound", `The subnet ID '${subnetId}' does not exist`);
  const groups = input.Groups?.length ? [...new Set(input.Groups)] : [w.defaultSecurityGroup(subnet.vpcId)!.id];
  for (const g of groups) {
    checkId(g, "sg", "InvalidGroupId.Malformed");
    if (!w.securityGroups.has(g)) throw new Ec2Error("InvalidGroup.NotFound", `The security group '${g}' does not exist`);
  }
  if (input.PrivateIpAddress !== undefined) checkFreeIp(ctx, subnet, input.PrivateIpAddress, "PrivateIpAddress");
  if (input.SecondaryPrivateIpAddressCount !== undefined || input.PrivateIpAddresses?.length)
    throw new Ec2Error("Unsupported", "localcloud ENIs have a single private IP");
  const ip = input.PrivateIpAddress ?? w.allocateIp(subnet);
  if (!ip)
    throw new Ec2Error(
      "InsufficientFreeAddressesInSubnet",
      `There are not enough free addresses in subnet '${subnet.id}' to satisfy the requested number of instances.`,
    );
  const tags = tagSpecs(input.TagSpecifications, ["network-interface"]);
  dryRun(ctx, input);
  const e: Eni = {
    id: newId(ID_PREFIX.eni),
    subnetId: subnet.id,
    vpcId: subnet.vpcId,
    az: subnet.az,
    privateIp: ip,
    mac: newMac(),
    securityGroupIds: groups,
    description: input.Description ?? "",
    status: "available",
    tags: tags.get("network-interface") ?? new Map(),
    clientToken: input.ClientToken,
  };
  w.enis.set(e.id, e);
  if (input.ClientToken !== undefined)
    w.clientTokens.set(`CreateNetworkInterface:${input.ClientToken}`, { fingerprint: fingerprint(input), ids: [e.id] });
  return { NetworkInterface: describeEni(w, e), ClientToken: input.ClientToken };
}

export function describeNetworkInterfaces(ctx: Ctx, input: DescribeNetworkInterfacesRequest) {
  const w = ctx.world;
  noIdsWithMaxResults(input.NetworkInterfaceIds, input, "NetworkInterfaceIds");
  let enis = [...w.enis.values()];
  if (input.NetworkInterfaceIds?.length) enis = input.NetworkInterfaceIds.map((id) => lookupEni(w, id));
  enis = applyFilters(
    enis,
    input.Filters,
    {
      "network-interface-id": (e: Eni) => e.id,
      "attachment.instance-id": (e: Eni) => e.attachment?.instanceId,
      "attachment.device-index": (e: Eni) => e.attachment?.deviceIndex,
      "attachment.attachment-id": (e: Eni) => e.attachment?.id,
      "attachment.status": (e: Eni) => e.attachment?.state,
      "attachment.delete-on-termination": (e: Eni) => (e.attachment ? String(e.attachment.deleteOnTermination) : undefined),
      status: (e: Eni) => e.status,
      "subnet-id": (e: Eni) => e.subnetId,
      "vpc-id": (e: Eni) => e.vpcId,
      "availability-zone": (e: Eni) => e.az,
      "private-ip-address": (e: Eni) => e.privateIp,
      "addresses.private-ip-address": (e: Eni) => e.privateIp,
      "mac-address": (e: Eni) => e.mac,
      "group-id": (e: Eni) => e.securityGroupIds,
      description: (e: Eni) => e.description,
      "owner-id": () => ACCOUNT_ID,
      "interface-type": () => "interface",
    },
    (e) => e.tags,
  );
  const { page, nextToken } = paginate(enis, input, "DescribeNetworkInterfaces", [5, 1000]);
  dryRun(ctx, input);
  return { NetworkInterfaces: page.map((e) => describeEni(w, e)), NextToken: nextToken };
}

export function attachNetworkInterface(ctx: Ctx, input: AttachNetworkInterfaceRequest) {
  const w = ctx.world;
  const idx = integer(required(input.DeviceIndex, "DeviceIndex"), "DeviceIndex", 0, 15)!;
  const inst = lookupInstances(w, [required(input.InstanceId, "InstanceId")])[0]!;
  const e = lookupEni(w, input.NetworkInterfaceId);
  if (e.status !== "available") throw new Ec2Error("InvalidNetworkInterface.InUse", `Interface: [${e.id}] in use.`);
  if (e.az !== inst.az)
    throw new Ec2Error(
      "InvalidParameterCombination",
      `You may not attach a network interface to an instance if they are not in the same availability zone (${e.az} vs ${inst.az})`,
    );
  if (inst.state !== "running" && inst.state !== "stopped")
    throw new Ec2Error("IncorrectState", `The instance '${inst.id}' is not in the 'running' or 'stopped' state (it is '${inst.state}').`);
  if (e.vpcId !== inst.vpcId)
    throw new Ec2Error("InvalidParameterCombination", `The network interface ${e.id} and instance ${inst.id} are in different VPCs`);
  const current = [...w.enis.values()].filter((x) => x.attachment?.instanceId === inst.id);
  if (current.some((x) => x.attachment!.deviceIndex === idx))
    throw new Ec2Error("InvalidParameterValue", `Instance '${inst.id}' already has an interface attached at device index '${idx}'.`);
  const max = w.instanceType(inst.instanceType)?.maxEnis ?? 2;
  if (current.length >= max)
    throw new Ec2Error("AttachmentLimitExceeded", `Interface count ${current.length + 1} exceeds the limit for ${inst.instanceType}`);
  dryRun(ctx, input);
  const att = {
    id: newId(ID_PREFIX.eniAttachment),
    instanceId: inst.id,
    deviceIndex: idx,
    state: "attaching" as const,
    attachTime: w.wallNow(),
    deleteOnTermination: false,
  };
  e.attachment = { ...att };
  e.status = "attaching";
  const a = e.attachment;
  w.after(w.profile.attachEni, `attaching ${e.id}`, async () => {
    if (e.attachment !== a || a.state !== "attaching") return;
    // The link appears in the instance before EC2 reports the attachment (and IMDS lists it).
    await w.runtime.attachEni(inst.id, runtimeEni(w, e, idx));
    if (e.attachment === a && a.state === "attaching") {
      a.state = "attached";
      e.status = "in-use";
    }
  });
  return { AttachmentId: att.id, NetworkCardIndex: 0 };
}

export function detachNetworkInterface(ctx: Ctx, input: DetachNetworkInterfaceRequest) {
  const w = ctx.world;
  const aid = required(input.AttachmentId, "AttachmentId");
  checkId(aid, "eni-attach", "InvalidAttachmentID.Malformed");
  const e = [...w.enis.values()].find((x) => x.attachment?.id === aid);
  if (!e) throw new Ec2Error("InvalidAttachmentID.NotFound", `Interface attachment '${aid}' does not exist.`);
  const a = e.attachment!;
  if (a.deviceIndex === 0) throw new Ec2Error("OperationNotPermitted", `The network interface at device index 0 cannot be detached.`);
  if (a.state === "detaching" && !input.Force) throw new Ec2Error("IncorrectState", `Interface attachment '${aid}' is already detaching.`);
  dryRun(ctx, input);
  a.state = "detaching";
  e.status = "detaching";
  w.after(input.Force ? 0 : w.profile.detachEni, `detaching ${e.id}`, async () => {
    if (e.attachment !== a) return;
    await w.runtime.detachEni(a.instanceId, runtimeEni(w, e, a.deviceIndex));
    if (e.attachment === a) {
      e.attachment = undefined;
      e.status = "available";
    }
  });
  return {};
}

export function deleteNetworkInterface(ctx: Ctx, input: DeleteNetworkInterfaceRequest) {
  const w = ctx.world;
  const e = lookupEni(w, input.NetworkInterfaceId);
  if (e.status !== "available") throw new Ec2Error("InvalidNetworkInterface.InUse", `The network interface '${e.id}' is currently in use.`);
  dryRun(ctx, input);
  w.enis.delete(e.id);
  return {};
}

/** Only the attachment's DeleteOnTermination and the description are modelled (what import/replace need). */
export function modifyNetworkInterfaceAttribute(ctx: Ctx, input: ModifyNetworkInterfaceAttributeRequest) {
  const w = ctx.world;
  const e = lookupEni(w, input.NetworkInterfaceId);
  const given = [
    input.Attachment ? "Attachment" : "",
    input.Description ? "Description" : "",
    input.Groups?.length ? "SecurityGroupId" : "",
    input.SourceDestCheck ? "SourceDestCheck" : "",
  ].filter(Boolean);
  if (given.length === 0)
    throw new Ec2Error("MissingParameter", "The request must contain one attribute to modify (Attachment, Description or SecurityGroupId)");
  if (given.length > 1)
    throw new Ec2Error("InvalidParameterCombination", `Only one attribute can be modified at a time (got ${given.join(", ")})`);
  let apply: () => void;
  if (input.Attachment) {
    const aid = required(input.Attachment.AttachmentId, "Attachment.AttachmentId");
    checkId(aid, "eni-attach", "InvalidAttachmentID.Malformed");
    if (!e.attachment || e.attachment.id !== aid)
      throw new Ec2Error("InvalidAttachmentID.NotFound", `Interface attachment '${aid}' does not exist on ${e.id}.`);
    const dot = input.Attachment.DeleteOnTermination;
    if (dot === undefined) throw new Ec2Error("MissingParameter", "The request must contain the parameter Attachment.DeleteOnTermination");
    const a = e.attachment;
    apply = () => {
      a.deleteOnTermination = dot;
    };
  } else if (input.Description) {
    const d = input.Description.Value ?? "";
    apply = () => {
      e.description = d;
    };
  } else if (input.Groups?.length) {
    for (const g of input.Groups) {
      checkId(g, "sg", "InvalidGroupId.Malformed");
      if (!w.securityGroups.has(g)) throw new Ec2Error("InvalidGroup.NotFound", `The security group '${g}' does not exist`);
    }
    const groups = [...new Set(input.Groups)];
    apply = () => {
      e.securityGroupIds = groups;
    };
  } else {
    throw new Ec2Error("Unsupported", "localcloud does not model SourceDestCheck");
  }
  dryRun(ctx, input);
  apply();
  return {};
}
