/** Instance actions other than RunInstances: describe, status, terminate/stop/start, attributes. */
import type {
  DescribeInstanceAttributeRequest,
  InstanceAttribute,
  DescribeInstancesRequest,
  DescribeInstancesResult,
  Instance as SdkInstance,
  PlatformValues as SdkPlatform,
  InstanceStateChange,
  ModifyInstanceAttributeRequest,
  Reservation as SdkReservation,
  StartInstancesRequest,
  StopInstancesRequest,
  TerminateInstancesRequest,
} from "@aws-sdk/client-ec2";
import type { Ctx } from "../common.js";
import { applyFilters, checkId, dryRun, noIdsWithMaxResults, paginate, required, tagList } from "../common.js";
import { Ec2Error, architectureMismatch, combination, invalidValue } from "../errors.js";
import { ACCOUNT_ID, coreCount, platformInfo, threadsPerCore, type InstanceTypeInfo } from "../../world/catalog.js";
import type { World } from "../../world/world.js";
import { STATE_CODES, type Instance, type Reservation } from "../../world/types.js";
import { describeFailure, encryptionFailure, type EncryptionFailure, launchFailureReason } from "../encryption.js";

export function describeInstance(w: World, i: Instance): SdkInstance {
  const enis = [...w.enis.values()]
    .filter((e) => e.attachment?.instanceId === i.id)
    .sort((a, b) => a.attachment!.deviceIndex - b.attachment!.deviceIndex);
  const vols = [...w.volumes.values()].filter((v) => v.attachment?.instanceId === i.id);
  const sgName = (id: string) => w.securityGroups.get(id)?.name ?? "";
  const live = i.state !== "terminated";
  const billing = platformInfo(i.platform);
  return {
    InstanceId: i.id,
    ImageId: i.imageId,
    State: { Code: STATE_CODES[i.state], Name: i.state },
    PrivateDnsName: live ? `ip-${i.privateIp.replace(/\./g, "-")}.ec2.internal` : "",
    PublicDnsName: "",
    StateTransitionReason: i.stateTransitionReason,
    AmiLaunchIndex: w.reservations.get(i.reservationId)?.instanceIds.indexOf(i.id) ?? 0,
    InstanceType: i.instanceType as SdkInstance["InstanceType"],
    LaunchTime: i.launchTime,
    Placement: { AvailabilityZone: i.az, Tenancy: "default", GroupName: "" },
    Monitoring: { State: "disabled" },
    SubnetId: live ? i.subnetId : undefined,
    VpcId: live ? i.vpcId : undefined,
    PrivateIpAddress: live ? i.privateIp : undefined,
    Architecture: i.architecture,
    KeyName: i.keyName,
    IamInstanceProfile: i.iamInstanceProfile ? { Arn: i.iamInstanceProfile.arn, Id: i.iamInstanceProfile.id } : undefined,
    // EC2 sends "windows" (lower case) although the SDK's PlatformValues enum spells "Windows".
    Platform: i.platform as SdkPlatform,
    PlatformDetails: billing.platformDetails,
    UsageOperation: billing.usageOperation,
    UsageOperationUpdateTime: i.usageOperationUpdateTime,
    RootDeviceType: "ebs",
    RootDeviceName: i.rootDeviceName,
    BlockDeviceMappings: vols.map((v) => ({
      DeviceName: v.attachment!.device,
      Ebs: {
        VolumeId: v.id,
        Status: v.attachment!.state,
        AttachTime: v.attachment!.attachTime,
        DeleteOnTermination: v.attachment!.deleteOnTermination,
      },
    })),
    ClientToken: i.clientToken ?? "",
    Tags: i.tags.size ? tagList(i.tags) : undefined,
    SecurityGroups: live ? i.securityGroupIds.map((id) => ({ GroupId: id, GroupName: sgName(id) })) : [],
    Hypervisor: "xen",
    VirtualizationType: "hvm",
    EnaSupport: true,
    EbsOptimized: false,
    SourceDestCheck: true,
    InstanceLifecycle: i.lifecycle === "spot" ? "spot" : undefined,
    SpotInstanceRequestId: i.spotRequestId,
    StateReason: i.stateReason ? { Code: i.stateReason.code, Message: i.stateReason.message } : undefined,
    HibernationOptions: { Configured: i.hibernationConfigured },
    MetadataOptions: {
      State: "applied",
      HttpTokens: i.httpTokens,
      HttpPutResponseHopLimit: 1,
      HttpEndpoint: i.httpEndpoint,
      InstanceMetadataTags: "disabled",
    },
    CpuOptions: cpuOptions(w.instanceType(i.instanceType)),
    NetworkInterfaces: enis.map((e) => ({
      NetworkInterfaceId: e.id,
      SubnetId: e.subnetId,
      VpcId: e.vpcId,
      Description: e.description,
      OwnerId: ACCOUNT_ID,
      Status: e.status,
      MacAddress: e.mac,
      PrivateIpAddress: e.privateIp,
      PrivateDnsName: `ip-${e.privateIp.replace(/\./g, "-")}.ec2.internal`,
      SourceDestCheck: true,
      InterfaceType: "interface",
      Groups: e.securityGroupIds.map((id) => ({ GroupId: id, GroupName: sgName(id) })),
      Attachment: {
        AttachmentId: e.attachment!.id,
        DeviceIndex: e.attachment!.deviceIndex,
        NetworkCardIndex: 0,
        Status: e.attachment!.state,
        AttachTime: e.attachment!.attachTime,
        DeleteOnTermination: e.attachment!.deleteOnTermination,
      },
      PrivateIpAddresses: [
        { PrivateIpAddress: e.privateIp, Primary: true, PrivateDnsName: `ip-${e.privateIp.replace(/\./g, "-")}.ec2.internal` },
      ],
    })),
  };
}

export function describeReservation(w: World, r: Reservation, only?: Set<string>): SdkReservation {
  const sgName = (id: string) => w.securityGroups.get(id)?.name ?? "";
  return {
    ReservationId: r.id,
    OwnerId: ACCOUNT_ID,
    Groups: r.groupIds.map((id) => ({ GroupId: id, GroupName: sgName(id) })),
    Instances: r.instanceIds
      .map((id) => w.instances.get(id))
      .filter((i): i is Instance => !!i && (!only || only.has(i.id)))
      .map((i) => describeInstance(w, i)),
  };
}

/** Look up instances by id; as in EC2, any unknown id fails the whole call (InvalidInstanceID.NotFound). */
export function lookupInstances(w: World, ids: string[] | undefined, param = "InstanceId"): Instance[] {
  if (!ids || ids.length === 0) throw new Ec2Error("MissingParameter", `The request must contain the parameter ${param}`);
  for (const id of ids) checkId(id, "i", "InvalidInstanceID.Malformed");
  const missingIds = ids.filter((id) => !w.instances.has(id));
  if (missingIds.length === 1) throw new Ec2Error("InvalidInstanceID.NotFound", `The instance ID '${missingIds[0]}' does not exist`);
  if (missingIds.length > 1) throw new Ec2Error("InvalidInstanceID.NotFound", `The instance IDs '${missingIds.join(", ")}' do not exist`);
  return [...new Set(ids)].map((id) => w.instances.get(id)!);
}

function instanceFilters(w: World) {
  return {
    "instance-id": (i: Instance) => i.id,
    "instance-state-name": (i: Instance) => i.state,
    "instance-state-code": (i: Instance) => STATE_CODES[i.state],
    "instance-type": (i: Instance) => i.instanceType,
    "availability-zone": (i: Instance) => i.az,
    "subnet-id": (i: Instance) => i.subnetId,
    "vpc-id": (i: Instance) => i.vpcId,
    "private-ip-address": (i: Instance) => i.privateIp,
    "network-interface.network-interface-id": (i: Instance) =>
      [...w.enis.values()].filter((e) => e.attachment?.instanceId === i.id).map((e) => e.id),
    "network-interface-id": (i: Instance) => [...w.enis.values()].filter((e) => e.attachment?.instanceId === i.id).map((e) => e.id),
    "block-device-mapping.volume-id": (i: Instance) =>
      [...w.volumes.values()].filter((v) => v.attachment?.instanceId === i.id).map((v) => v.id),
    "block-device-mapping.device-name": (i: Instance) =>
      [...w.volumes.values()].filter((v) => v.attachment?.instanceId === i.id).map((v) => v.attachment!.device),
    "instance-lifecycle": (i: Instance) => (i.lifecycle === "spot" ? "spot" : undefined),
    "spot-instance-request-id": (i: Instance) => i.spotRequestId,
    "image-id": (i: Instance) => i.imageId,
    "key-name": (i: Instance) => i.keyName,
    "iam-instance-profile.arn": (i: Instance) => i.iamInstanceProfile?.arn,
    "iam-instance-profile.id": (i: Instance) => i.iamInstanceProfile?.id,
    platform: (i: Instance) => i.platform,
    "platform-details": (i: Instance) => platformInfo(i.platform).platformDetails,
    "usage-operation": (i: Instance) => platformInfo(i.platform).usageOperation,
    "root-device-type": () => "ebs",
    "root-device-name": (i: Instance) => i.rootDeviceName,
    "client-token": (i: Instance) => i.clientToken,
    "reservation-id": (i: Instance) => i.reservationId,
    "owner-id": () => ACCOUNT_ID,
  };
}

export function describeInstances(ctx: Ctx, input: DescribeInstancesRequest): DescribeInstancesResult {
  const w = ctx.world;
  noIdsWithMaxResults(input.InstanceIds, input, "instancesSet");
  let insts = input.InstanceIds?.length ? lookupInstances(w, input.InstanceIds) : [...w.instances.values()];
  insts = applyFilters(insts, input.Filters, instanceFilters(w), (i) => i.tags);
  // Pagination counts instances; a page groups its instances by reservation.
  const { page, nextToken } = paginate(insts, input, "DescribeInstances", [5, 1000]);
  dryRun(ctx, input);
  const byRes = new Map<string, Set<string>>();
  for (const i of page) {
    const s = byRes.get(i.reservationId) ?? new Set<string>();
    s.add(i.id);
    byRes.set(i.reservationId, s);
  }
  return {
    Reservations: [...byRes].map(([rid, only]) => describeReservation(w, w.reservations.get(rid)!, only)),
    NextToken: nextToken,
  };
}

function change(i: Instance, prev: Instance["state"]): InstanceStateChange {
  return {
    InstanceId: i.id,
    PreviousState: { Code: STATE_CODES[prev], Name: prev },
    CurrentState: { Code: STATE_CODES[i.state], Name: i.state },
  };
}

export function terminateInstances(ctx: Ctx, input: TerminateInstancesRequest) {
  const w = ctx.world;
  const insts = lookupInstances(w, input.InstanceIds);
  const protectedOne = insts.find((i) => i.disableApiTermination && i.state !== "terminated");
  if (protectedOne)
    throw new Ec2Error(
      "OperationNotPermitted",
      `The instance '${protectedOne.id}' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again.`,
    );
  dryRun(ctx, input);
  return {
    TerminatingInstances: insts.map((i) => {
      const prev = i.state;
      w.beginTerminate(i, { code: "Client.UserInitiatedShutdown", message: "Client.UserInitiatedShutdown: User initiated shutdown" });
      return change(i, prev);
    }),
  };
}

export function stopInstances(ctx: Ctx, input: StopInstancesRequest) {
  const w = ctx.world;
  const insts = lookupInstances(w, input.InstanceIds);
  for (const i of insts) {
    if (i.state === "terminated" || i.state === "shutting-down")
      throw new Ec2Error("IncorrectInstanceState", `This instance '${i.id}' is not in a state from which it can be stopped.`);
    if (i.lifecycle === "spot") {
      const req = i.spotRequestId ? w.spotRequests.get(i.spotRequestId) : undefined;
      if (req?.type !== "persistent" || req.interruptionBehavior === "terminate") {
        throw new Ec2Error(
          "UnsupportedOperation",
          `You can't stop the Spot Instance '${i.id}' because it is associated with a one-time Spot Instance request. ` +
            `You can only stop Spot Instances associated with persistent Spot Instance requests.`,
        );
      }
    }
    if (input.Hibernate && !i.hibernationConfigured)
      throw new Ec2Error("UnsupportedHibernationConfiguration", `The instance '${i.id}' is not enabled for hibernation.`);
  }
  dryRun(ctx, input);
  return {
    StoppingInstances: insts.map((i) => {
      const prev = i.state;
      if (input.Hibernate)
        w.beginStop(i, { code: "Client.UserInitiatedHibernate", message: "Client.UserInitiatedHibernate: User initiated hibernate" });
      else w.beginStop(i, { code: "Client.UserInitiatedShutdown", message: "Client.UserInitiatedShutdown: User initiated shutdown" });
      if (input.Force && i.state === "stopping") {
        // Force skips the graceful wait (the runtime kills the group at once).
        void w.track(`force-stopping ${i.id}`, w.runtime.shutdown(i.id, 0));
      }
      return change(i, prev);
    }),
  };
}

/** Can EC2 use the keys of a stopped instance's encrypted volumes for the caller? */
function startKeyFailure(w: World, inst: Instance): EncryptionFailure | undefined {
  if (inst.state !== "stopped") return undefined;
  const vols = [...w.volumes.values()].filter((v) => v.attachment?.instanceId === inst.id && v.encrypted);
  return encryptionFailure(
    w,
    vols.map((v) => ({ encrypted: true, keyRef: v.kmsKeyId })),
  );
}

/**
 * A start EC2 cannot complete because of its volumes' keys: pending, then stopping -> stopped with
 * the state reason `launchFailureReason` gives (AWS's knowledge center describes pending -> stopped
 * with Client.InternalError when the caller may not let EC2 use the key).
 */
function failStart(w: World, inst: Instance, f: EncryptionFailure): void {
  const epoch = inst.epoch;
  w.after(w.profile.pendingToRunning, `failing the start of ${inst.id}`, () => {
    if (inst.state !== "pending" || inst.epoch !== epoch) return;
    w.log(`${inst.id} could not start: ${describeFailure(f)}`);
    w.beginStop(inst, launchFailureReason(f));
  });
}

export function startInstances(ctx: Ctx, input: StartInstancesRequest) {
  const w = ctx.world;
  const insts = lookupInstances(w, input.InstanceIds);
  for (const i of insts) {
    if (i.state === "terminated" || i.state === "shutting-down" || i.state === "stopping") {
      throw new Ec2Error("IncorrectInstanceState", `The instance '${i.id}' is not in a state from which it can be started.`);
    }
    const root = [...w.volumes.values()].find((v) => v.attachment?.instanceId === i.id && v.attachment.device === i.rootDeviceName);
    if (i.state === "stopped" && !root)
      throw new Ec2Error("IncorrectInstanceState", `The instance '${i.id}' has no root volume attached at ${i.rootDeviceName}.`);
    if (i.state === "stopped" && w.takeCapacity(i.instanceType, i.az, i.lifecycle, 1) < 1) {
      throw new Ec2Error(
        "InsufficientInstanceCapacity",
        i.lifecycle === "spot"
          ? `You can't start the Spot Instance '${i.id}' because there is no available Spot capacity.`
          : `We currently do not have sufficient ${i.instanceType} capacity in the Availability Zone you requested (${i.az}).`,
      );
    }
  }
  dryRun(ctx, input);
  const keyFailures = new Map(insts.map((i) => [i.id, startKeyFailure(w, i)]));
  return {
    StartingInstances: insts.map((i) => {
      const prev = i.state;
      if (i.state === "stopped") {
        w.useCapacity(i.instanceType, i.az, i.lifecycle, 1);
        const root = [...w.volumes.values()].find((v) => v.attachment?.instanceId === i.id && v.attachment.device === i.rootDeviceName);
        i.rootVolumeId = root!.id;
        i.state = "pending";
        i.epoch += 1;
        i.stateReason = undefined;
        i.stateTransitionReason = "";
        i.pendingTime = w.wallNow();
        i.launchTime = i.pendingTime;
        i.spotAction = null;
        i.rebalanceNoticeTime = null;
        const req = i.spotRequestId ? w.spotRequests.get(i.spotRequestId) : undefined;
        if (req) {
          req.state = "active";
          req.statusCode = "fulfilled";
          req.statusMessage = "Your spot request is fulfilled.";
          req.statusTime = w.wallNow();
        }
        const keyFailure = keyFailures.get(i.id);
        if (keyFailure) failStart(w, i, keyFailure);
        else w.schedulePendingToRunning(i);
        w.stateChanged(i);
      }
      return change(i, prev);
    }),
  };
}

export function modifyInstanceAttribute(ctx: Ctx, input: ModifyInstanceAttributeRequest) {
  const w = ctx.world;
  const id = required(input.InstanceId, "InstanceId");
  const [inst] = lookupInstances(w, [id]);
  const i = inst!;
  const given = [
    input.BlockDeviceMappings?.length ? "BlockDeviceMapping" : "",
    input.DisableApiTermination ? "DisableApiTermination" : "",
    input.InstanceType ? "InstanceType" : "",
    input.UserData ? "UserData" : "",
    input.InstanceInitiatedShutdownBehavior ? "InstanceInitiatedShutdownBehavior" : "",
    input.Attribute ? "Attribute" : "",
    input.SourceDestCheck ? "SourceDestCheck" : "",
    input.Groups?.length ? "GroupId" : "",
  ].filter(Boolean);
  if (given.length === 0)
    throw new Ec2Error(
      "MissingParameter",
      "The request must contain one attribute to modify (e.g. BlockDeviceMapping, DisableApiTermination, InstanceType, UserData)",
    );
  if (given.length > 1) throw combination(`Only one attribute can be modified at a time (got ${given.join(", ")})`);
  if (i.state === "terminated") throw new Ec2Error("IncorrectInstanceState", `The instance '${i.id}' is terminated.`);
  const apply: Array<() => void> = [];
  if (input.BlockDeviceMappings?.length) {
    input.BlockDeviceMappings.forEach((m, n) => {
      const dev = required(m.DeviceName, `BlockDeviceMapping.${n + 1}.DeviceName`);
      const vol = [...w.volumes.values()].find((v) => v.attachment?.instanceId === i.id && v.attachment.device === dev);
      if (!vol) throw new Ec2Error("InvalidInstanceAttributeValue", `No device is currently mapped at ${dev}`);
      if (m.Ebs?.VolumeId !== undefined && m.Ebs.VolumeId !== vol.id)
        throw invalidValue(`BlockDeviceMapping.${n + 1}.Ebs.VolumeId`, m.Ebs.VolumeId, `The volume at ${dev} is ${vol.id}`);
      const dot = m.Ebs?.DeleteOnTermination;
      if (dot === undefined)
        throw new Ec2Error(
          "MissingParameter",
          `The request must contain the parameter BlockDeviceMapping.${n + 1}.Ebs.DeleteOnTermination`,
        );
      apply.push(() => {
        vol.attachment!.deleteOnTermination = dot;
      });
    });
  } else if (input.DisableApiTermination) {
    const v = input.DisableApiTermination.Value;
    if (v === undefined) throw new Ec2Error("MissingParameter", "The request must contain the parameter DisableApiTermination.Value");
    apply.push(() => {
      i.disableApiTermination = v;
    });
  } else if (input.InstanceType) {
    const t = required(input.InstanceType.Value, "InstanceType.Value");
    const type = w.instanceType(t);
    if (!type) throw invalidValue("InstanceType.Value", t);
    if (i.state !== "stopped") throw new Ec2Error("IncorrectInstanceState", `The instance '${i.id}' is not in the 'stopped' state.`);
    if (type.architecture !== i.architecture) throw architectureMismatch(type.architecture, i.architecture);
    apply.push(() => {
      i.instanceType = t;
    });
  } else if (input.UserData) {
    const v = input.UserData.Value;
    if (i.state !== "stopped") throw new Ec2Error("IncorrectInstanceState", `The instance '${i.id}' is not in the 'stopped' state.`);
    apply.push(() => {
      i.userData = v === undefined ? null : Buffer.from(v as unknown as string, "base64");
    });
  } else {
    throw new Ec2Error("Unsupported", `localcloud does not model the attribute ${given[0]}`);
  }
  dryRun(ctx, input);
  for (const f of apply) f();
  return { Return: true };
}

/** DescribeInstances' CpuOptions: the type's default cores and threads (a type localcloud does not know: 1 core, 2 threads). */
function cpuOptions(type: InstanceTypeInfo | undefined): { CoreCount: number; ThreadsPerCore: number } {
  return type ? { CoreCount: coreCount(type), ThreadsPerCore: threadsPerCore(type) } : { CoreCount: 1, ThreadsPerCore: 2 };
}

/** The attributes DescribeInstanceAttribute answers for (EC2's names). */
const INSTANCE_ATTRIBUTES = [
  "instanceType",
  "userData",
  "disableApiTermination",
  "instanceInitiatedShutdownBehavior",
  "rootDeviceName",
  "blockDeviceMapping",
  "groupSet",
  "sourceDestCheck",
  "ebsOptimized",
  "enaSupport",
] as const;

export function describeInstanceAttribute(ctx: Ctx, input: DescribeInstanceAttributeRequest): InstanceAttribute {
  const w = ctx.world;
  const id = required(input.InstanceId, "InstanceId");
  const attribute = required(input.Attribute, "Attribute") as string;
  if (!(INSTANCE_ATTRIBUTES as readonly string[]).includes(attribute))
    throw new Ec2Error("InvalidParameterValue", `Value (${attribute}) for parameter attribute is invalid. Unknown attribute.`);
  const [inst] = lookupInstances(w, [id]);
  const i = inst!;
  dryRun(ctx, input);
  const base = { InstanceId: i.id };
  switch (attribute) {
    case "instanceType":
      return { ...base, InstanceType: { Value: i.instanceType } };
    case "userData":
      // No user-data: EC2 answers an empty UserData element.
      return { ...base, UserData: i.userData ? { Value: i.userData.toString("base64") } : {} };
    case "disableApiTermination":
      return { ...base, DisableApiTermination: { Value: i.disableApiTermination } };
    case "instanceInitiatedShutdownBehavior":
      return { ...base, InstanceInitiatedShutdownBehavior: { Value: "stop" } };
    case "rootDeviceName":
      return { ...base, RootDeviceName: { Value: i.rootDeviceName } };
    case "blockDeviceMapping":
      return { ...base, BlockDeviceMappings: describeInstance(w, i).BlockDeviceMappings ?? [] };
    case "groupSet":
      return { ...base, Groups: i.securityGroupIds.map((g) => ({ GroupId: g })) };
    case "sourceDestCheck":
      return { ...base, SourceDestCheck: { Value: true } };
    case "ebsOptimized":
      return { ...base, EbsOptimized: { Value: false } };
    default:
      return { ...base, EnaSupport: { Value: true } };
  }
}
