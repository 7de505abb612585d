/**
 * RunInstances: every rule EC2 enforces on it is checked before anything is created, so a rejected
 * (or DryRun) request changes nothing. ClientToken makes a retry return the first launch.
 */
import type { Reservation, RunInstancesRequest } from "@aws-sdk/client-ec2";
import { createHash } from "node:crypto";
import type { Ctx } from "../common.js";
import { checkId, dryRun, integer, oneOf, required, tagSpecs } from "../common.js";
import { Ec2Error, architectureMismatch, combination, invalidValue, missing } from "../errors.js";
import { ACCOUNT_ID, DEVICE_NAME_RE, VOLUME_TYPES, spotPrice } from "../../world/catalog.js";
import { ID_PREFIX, newId, newMac } from "../../world/ids.js";
import type { Eni, Instance, Subnet, Tags, Volume } from "../../world/types.js";
import { describeReservation } from "./instances.js";
import {
  chooseEncryption,
  describeFailure,
  type Encryption,
  encryptionFailure,
  type EncryptionFailure,
  launchFailureReason,
} from "../encryption.js";
import type { World } from "../../world/world.js";

const USER_DATA_LIMIT = 16 * 1024;

interface PlannedVolume {
  deviceName: string;
  snapshotId: string;
  size: number;
  volumeType: string;
  iops?: number;
  deleteOnTermination: boolean;
  root: boolean;
  /** The snapshot's encryption (the volume's source). */
  source?: { encrypted: boolean; kmsKeyId?: string };
  encryption: Encryption;
}

interface PlannedEni {
  deviceIndex: number;
  existing?: Eni;
  subnet: Subnet;
  securityGroupIds: string[];
  privateIp?: string;
  deleteOnTermination: boolean;
  description: string;
}

function fingerprint(input: RunInstancesRequest): string {
  const { ClientToken: _t, DryRun: _d, ...rest } = input;
  return createHash("sha256").update(JSON.stringify(rest)).digest("hex");
}

export async function runInstances(ctx: Ctx, input: RunInstancesRequest): Promise<Reservation> {
  const w = ctx.world;
  const minCount = integer(required(input.MinCount, "MinCount"), "MinCount", 1)!;
  const maxCount = integer(required(input.MaxCount, "MaxCount"), "MaxCount", 1)!;
  if (maxCount < minCount)
    throw new Ec2Error("InvalidParameterValue", `MaxCount (${maxCount}) must be greater than or equal to MinCount (${minCount})`);
  if (maxCount > 100)
    throw new Ec2Error(
      "InstanceLimitExceeded",
      `You have requested more instances (${maxCount}) than your current instance limit of 100 allows`,
    );

  if (input.ClientToken !== undefined) {
    if (input.ClientToken.length > 64 || !/^[\x20-\x7e]*$/.test(input.ClientToken))
      throw invalidValue("ClientToken", input.ClientToken, "A client token is at most 64 ASCII characters");
    const prior = w.clientTokens.get(`RunInstances:${input.ClientToken}`);
    if (prior) {
      if (prior.fingerprint !== fingerprint(input))
        throw new Ec2Error("IdempotentParameterMismatch", `The client token '${input.ClientToken}' was used with different parameters`);
      const insts = prior.ids.map((id) => w.instances.get(id));
      if (insts.some((i) => !i || i.state === "terminated"))
        throw new Ec2Error(
          "IdempotentInstanceTerminated",
          `The instance launched with client token '${input.ClientToken}' has been terminated`,
        );
      dryRun(ctx, input);
      return describeReservation(w, w.reservations.get(insts[0]!.reservationId)!);
    }
  }

  // --- image
  const imageId = required(input.ImageId, "ImageId");
  checkId(imageId, "ami", "InvalidAMIID.Malformed");
  const image = w.images.get(imageId);
  if (!image) throw new Ec2Error("InvalidAMIID.NotFound", `The image id '[${imageId}]' does not exist`);
  if (image.state !== "available")
    throw new Ec2Error("InvalidAMIID.Unavailable", `Image ${imageId} is not available (state ${image.state})`);

  // --- type
  const typeName = input.InstanceType ?? "t3.micro";
  const type = w.instanceType(typeName);
  if (!type) throw new Ec2Error("InvalidParameterValue", `Invalid value '${typeName}' for InstanceType.`);
  if (type.architecture !== image.architecture) throw architectureMismatch(type.architecture, image.architecture);

  // --- identity: key pair and instance profile
  let keyName: string | undefined;
  if (input.KeyName !== undefined) {
    if (!w.keyPair(input.KeyName)) throw new Ec2Error("InvalidKeyPair.NotFound", `The key pair '${input.KeyName}' does not exist`);
    keyName = input.KeyName;
  }
  const iamInstanceProfile = instanceProfile(input.IamInstanceProfile);

  // --- network
  const nis = input.NetworkInterfaces ?? [];
  if (nis.length > 0) {
    if (input.SubnetId !== undefined)
      throw combination("Network interfaces and an instance-level subnet ID may not be specified on the same request");
    if ((input.SecurityGroupIds ?? []).length > 0 || (input.SecurityGroups ?? []).length > 0)
      throw combination("Network interfaces and an instance-level security groups may not be specified on the same request");
    if (input.PrivateIpAddress !== undefined)
      throw combination("Network interfaces and an instance-level private IP address may not be specified on the same request");
  }
  if ((input.SecurityGroups ?? []).length > 0)
    throw new Ec2Error(
      "InvalidParameterCombination",
      "The parameter groupName cannot be used with the parameter subnet (use SecurityGroupId in a VPC)",
    );
  const placementAz = input.Placement?.AvailabilityZone;
  if (placementAz !== undefined && !w.defaultSubnet(placementAz))
    throw new Ec2Error("InvalidParameterValue", `Invalid availability zone: [${placementAz}]`);

  const planned: PlannedEni[] = [];
  const seenIdx = new Set<number>();
  nis.forEach((ni, i) => {
    const where = `NetworkInterface.${i + 1}`;
    const idx = integer(ni.DeviceIndex, `${where}.DeviceIndex`, 0, 15);
    if (idx === undefined) throw missing(`${where}.DeviceIndex`);
    if (seenIdx.has(idx))
      throw new Ec2Error("InvalidParameterValue", `Each network interface requires a unique device index: ${idx} is repeated`);
    seenIdx.add(idx);
    if (ni.NetworkInterfaceId !== undefined) {
      checkId(ni.NetworkInterfaceId, "eni", "InvalidNetworkInterfaceID.Malformed");
      const eni = w.enis.get(ni.NetworkInterfaceId);
      if (!eni)
        throw new Ec2Error("InvalidNetworkInterfaceID.NotFound", `The networkInterface ID '${ni.NetworkInterfaceId}' does not exist`);
      if (ni.SubnetId !== undefined || (ni.Groups ?? []).length > 0 || ni.PrivateIpAddress !== undefined) {
        throw combination(`${where}: a subnet, security groups or private IP may not be given with an existing network interface`);
      }
      if (ni.DeleteOnTermination === true)
        throw combination(`${where}.DeleteOnTermination can be true only when creating a new network interface`);
      if (eni.status !== "available") throw new Ec2Error("InvalidNetworkInterface.InUse", `Interface: [${eni.id}] in use.`);
      if (maxCount > 1) throw combination("An existing network interface can only be attached to one instance: MaxCount must be 1");
      planned.push({
        deviceIndex: idx,
        existing: eni,
        subnet: w.subnets.get(eni.subnetId)!,
        securityGroupIds: eni.securityGroupIds,
        deleteOnTermination: false,
        description: eni.description,
      });
    } else {
      const subnetId = ni.SubnetId ?? (idx === 0 ? w.defaultSubnet(placementAz)?.id : undefined);
      if (!subnetId) throw missing(`${where}.SubnetId`);
      const subnet = lookupSubnet(ctx, subnetId);
      const groups = checkGroups(ctx, ni.Groups ?? [], subnet);
      if (ni.PrivateIpAddress !== undefined) {
        checkFreeIp(ctx, subnet, ni.PrivateIpAddress, `${where}.PrivateIpAddress`);
        if (maxCount > 1) throw combination("A private IP address can only be given when launching one instance (MaxCount 1)");
      }
      planned.push({
        deviceIndex: idx,
        subnet,
        securityGroupIds: groups,
        privateIp: ni.PrivateIpAddress,
        deleteOnTermination: ni.DeleteOnTermination ?? true,
        description: ni.Description ?? "",
      });
    }
  });
  if (planned.length === 0) {
    const subnet = input.SubnetId !== undefined ? lookupSubnet(ctx, input.SubnetId) : w.defaultSubnet(placementAz ?? w.catalog.azs[0])!;
    const groups = checkGroups(ctx, input.SecurityGroupIds ?? [], subnet);
    if (input.PrivateIpAddress !== undefined) {
      checkFreeIp(ctx, subnet, input.PrivateIpAddress, "PrivateIpAddress");
      if (maxCount > 1) throw combination("A private IP address can only be given when launching one instance (MaxCount 1)");
    }
    planned.push({
      deviceIndex: 0,
      subnet,
      securityGroupIds: groups,
      privateIp: input.PrivateIpAddress,
      deleteOnTermination: true,
      description: "",
    });
  }
  planned.sort((a, b) => a.deviceIndex - b.deviceIndex);
  const primary = planned[0]!;
  if (primary.deviceIndex !== 0) throw new Ec2Error("InvalidParameterValue", "A network interface at device index 0 is required");
  const az = primary.subnet.az;
  if (placementAz !== undefined && placementAz !== az)
    throw new Ec2Error(
      "InvalidParameterValue",
      `The subnet ${primary.subnet.id} is in ${az}, not in the requested availability zone ${placementAz}`,
    );
  for (const p of planned) {
    if (p.subnet.az !== az)
      throw new Ec2Error(
        p.existing ? "InvalidNetworkInterface.InUse" : "InvalidParameterValue",
        `Network interfaces of one instance must be in one availability zone (${p.subnet.az} vs ${az})`,
      );
  }
  if (planned.length > type.maxEnis)
    throw new Ec2Error("InvalidParameterValue", `Instance type ${type.name} supports at most ${type.maxEnis} network interfaces`);

  // --- block devices
  const rootSnap = image.blockDeviceMappings.find((b) => b.deviceName === image.rootDeviceName);
  const volumes = new Map<string, PlannedVolume>();
  for (const b of image.blockDeviceMappings) {
    if (!b.snapshotId && !b.volumeSize) continue;
    const source = b.snapshotId ? { encrypted: b.encrypted ?? false, kmsKeyId: b.kmsKeyId } : undefined;
    volumes.set(b.deviceName, {
      source,
      encryption: chooseEncryption(w, { source }),
      deviceName: b.deviceName,
      snapshotId: b.snapshotId ?? "",
      size: b.volumeSize ?? 8,
      volumeType: b.volumeType,
      deleteOnTermination: b.deleteOnTermination,
      root: b.deviceName === image.rootDeviceName,
    });
  }
  const seenDev = new Set<string>();
  (input.BlockDeviceMappings ?? []).forEach((m, i) => {
    const where = `BlockDeviceMapping.${i + 1}`;
    const dev = required(m.DeviceName, `${where}.DeviceName`);
    if (seenDev.has(dev))
      throw new Ec2Error("InvalidBlockDeviceMapping", `The device '${dev}' is used in more than one block-device mapping`);
    seenDev.add(dev);
    const isRoot = dev === image.rootDeviceName;
    if (!isRoot && !DEVICE_NAME_RE.test(dev)) throw new Ec2Error("InvalidBlockDeviceMapping", `Invalid device name ${dev}`);
    if (m.NoDevice !== undefined) {
      if (isRoot) throw new Ec2Error("InvalidBlockDeviceMapping", `The root device ${dev} cannot be suppressed with NoDevice`);
      volumes.delete(dev);
      return;
    }
    if (m.VirtualName !== undefined)
      throw new Ec2Error(
        "InvalidBlockDeviceMapping",
        `${where}.VirtualName: instance store volumes are not available on localcloud instance types`,
      );
    const ebs = m.Ebs;
    if (!ebs) throw new Ec2Error("InvalidBlockDeviceMapping", `${where} must have Ebs, NoDevice or VirtualName`);
    const base = volumes.get(dev);
    let snapshotId = ebs.SnapshotId ?? base?.snapshotId ?? "";
    let snapSize = 0;
    let source = base?.source;
    if (ebs.SnapshotId !== undefined) {
      checkId(ebs.SnapshotId, "snap", "InvalidSnapshotID.Malformed");
      const snap = w.snapshots.get(ebs.SnapshotId);
      if (!snap) throw new Ec2Error("InvalidSnapshot.NotFound", `The snapshot '${ebs.SnapshotId}' does not exist.`);
      if (snap.state !== "completed") throw new Ec2Error("IncorrectState", `Snapshot ${snap.id} is not completed (state ${snap.state})`);
      snapSize = snap.volumeSize;
      snapshotId = snap.id;
      source = snap;
    } else if (base?.snapshotId) {
      snapSize = w.snapshots.get(base.snapshotId)?.volumeSize ?? base.size;
    }
    const volumeType = oneOf(ebs.VolumeType, `${where}.Ebs.VolumeType`, Object.keys(VOLUME_TYPES)) ?? base?.volumeType ?? "gp2";
    const limits = VOLUME_TYPES[volumeType]!;
    const size = integer(ebs.VolumeSize, `${where}.Ebs.VolumeSize`) ?? base?.size ?? (snapSize || undefined);
    if (size === undefined)
      throw new Ec2Error("InvalidBlockDeviceMapping", `${where}: the volume size is required when no snapshot is given`);
    if (size < snapSize)
      throw new Ec2Error(
        "InvalidBlockDeviceMapping",
        `Volume of size ${size}GB is smaller than snapshot '${snapshotId}', expect size >= ${snapSize}GB`,
      );
    if (size < limits.min || size > limits.max)
      throw new Ec2Error(
        "InvalidParameterValue",
        `Volume size ${size} for ${where} is out of range ${limits.min}-${limits.max} for ${volumeType}`,
      );
    if (ebs.Iops !== undefined && limits.iops === "none")
      throw new Ec2Error("InvalidParameterCombination", `${where}: Iops is not supported for ${volumeType} volumes`);
    if (ebs.Iops === undefined && limits.iops === "required") throw missing(`${where}.Ebs.Iops`);
    volumes.set(dev, {
      deviceName: dev,
      snapshotId,
      size,
      volumeType,
      iops: ebs.Iops,
      deleteOnTermination: ebs.DeleteOnTermination ?? base?.deleteOnTermination ?? !!isRoot,
      root: isRoot,
      source,
      encryption: chooseEncryption(w, { encrypted: ebs.Encrypted, kmsKeyId: ebs.KmsKeyId, source, prefix: `${where}.Ebs.` }),
    });
  });
  if (!rootSnap || !volumes.get(image.rootDeviceName))
    throw new Ec2Error("InvalidBlockDeviceMapping", `Image ${image.id} has no root device mapping`);

  // --- user data
  let userData: Buffer | null = null;
  if (input.UserData !== undefined) {
    const s = input.UserData.replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 === 1)
      throw new Ec2Error("InvalidParameterValue", "Invalid BASE64 encoding of user data.");
    userData = Buffer.from(s, "base64");
    if (userData.length > USER_DATA_LIMIT)
      throw new Ec2Error("InvalidParameterValue", `User data is limited to ${USER_DATA_LIMIT} bytes (got ${userData.length})`);
  }

  // --- market
  let market: "spot" | "on-demand" = "on-demand";
  let spotType: "one-time" | "persistent" = "one-time";
  let behavior: "terminate" | "stop" | "hibernate" = "terminate";
  let maxPrice = type.onDemand;
  const mo = input.InstanceMarketOptions;
  if (mo) {
    const mt = oneOf(mo.MarketType, "InstanceMarketOptions.MarketType", ["spot", "capacity-block"]);
    if (mt === "capacity-block") throw new Ec2Error("Unsupported", "Capacity Blocks are not supported by localcloud");
    if (mt === undefined && mo.SpotOptions) throw missing("InstanceMarketOptions.MarketType");
    if (mt === "spot") {
      market = "spot";
      const so = mo.SpotOptions ?? {};
      spotType = oneOf(so.SpotInstanceType, "InstanceMarketOptions.SpotOptions.SpotInstanceType", ["one-time", "persistent"]) ?? "one-time";
      behavior =
        oneOf(so.InstanceInterruptionBehavior, "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior", [
          "terminate",
          "stop",
          "hibernate",
        ]) ?? "terminate";
      if (behavior !== "terminate" && spotType !== "persistent")
        throw combination(`The ${behavior} interruption behavior requires a persistent Spot request (SpotInstanceType=persistent)`);
      if (so.ValidUntil !== undefined && spotType !== "persistent")
        throw combination("ValidUntil is only supported for persistent Spot requests");
      if (so.MaxPrice !== undefined) {
        if (!/^\d+(\.\d+)?$/.test(so.MaxPrice)) throw invalidValue("InstanceMarketOptions.SpotOptions.MaxPrice", so.MaxPrice);
        maxPrice = Number(so.MaxPrice);
        const price = spotPrice(type, az);
        if (maxPrice < price)
          throw new Ec2Error(
            "SpotMaxPriceTooLow",
            `Your Spot request price of ${so.MaxPrice} is lower than the minimum required Spot request fulfillment price of ${price}.`,
          );
      }
    }
  }
  const hib = input.HibernationOptions?.Configured === true;
  if (hib && market === "spot" && behavior !== "hibernate")
    throw combination("HibernationOptions.Configured=true requires InstanceInterruptionBehavior=hibernate for Spot Instances");

  const httpTokens =
    oneOf(input.MetadataOptions?.HttpTokens, "MetadataOptions.HttpTokens", ["optional", "required"]) ??
    (image.imdsSupport === "v2.0" ? "required" : "optional");
  const httpEndpoint = oneOf(input.MetadataOptions?.HttpEndpoint, "MetadataOptions.HttpEndpoint", ["enabled", "disabled"]) ?? "enabled";
  const tags = tagSpecs(input.TagSpecifications, ["instance", "volume", "network-interface", "spot-instances-request"]);

  // --- capacity (after validation, like EC2)
  const fits = w.takeCapacity(type.name, az, market, maxCount);
  if (fits < minCount) {
    throw new Ec2Error(
      "InsufficientInstanceCapacity",
      market === "spot"
        ? "There is no Spot capacity available that matches your request."
        : `We currently do not have sufficient ${type.name} capacity in the Availability Zone you requested (${az}). ` +
            "Our system will be working on provisioning additional capacity.",
    );
  }
  for (const p of planned) {
    if (!p.existing && !p.privateIp && w.availableIpCount(p.subnet) < fits)
      throw new Ec2Error(
        "InsufficientFreeAddressesInSubnet",
        `There are not enough free addresses in subnet '${p.subnet.id}' to satisfy the requested number of instances.`,
      );
  }
  dryRun(ctx, input);
  const keyFailure = encryptionFailure(
    w,
    [...volumes.values()].map((v) => v.encryption),
  );

  // --- create (nothing above this line changed the world)
  w.useCapacity(type.name, az, market, fits);
  const reservationId = newId(ID_PREFIX.reservation);
  const ids: string[] = [];
  const now = w.wallNow();
  for (let n = 0; n < fits; n++) {
    const instanceId = newId(ID_PREFIX.instance);
    ids.push(instanceId);
    const instTags: Tags = new Map(tags.get("instance") ?? []);
    const launchDevices: Record<string, string> = { ami: image.rootDeviceName, root: image.rootDeviceName };
    let rootVolumeId = "";
    let ebsN = 0;
    for (const pv of volumes.values()) {
      const vol: Volume = {
        id: newId(ID_PREFIX.volume),
        size: pv.size,
        snapshotId: pv.snapshotId,
        az,
        state: "in-use",
        createTime: now,
        volumeType: pv.volumeType,
        iops: pv.iops ?? VOLUME_TYPES[pv.volumeType]?.defaultIops?.(pv.size),
        encrypted: pv.encryption.encrypted,
        kmsKeyId: pv.encryption.kmsKeyId,
        tags: new Map(tags.get("volume") ?? []),
        attachment: { instanceId, device: pv.deviceName, state: "attached", attachTime: now, deleteOnTermination: pv.deleteOnTermination },
        ready: Promise.resolve(),
        noNode: (pv.snapshotId && w.snapshots.get(pv.snapshotId)?.noNode) || undefined,
      };
      vol.ready = w
        .track(`creating ${vol.id}`, w.runtime.createVolume({ volumeId: vol.id, sizeGiB: vol.size }, pv.snapshotId || undefined))
        .then(() => undefined);
      w.volumes.set(vol.id, vol);
      if (pv.root) rootVolumeId = vol.id;
      else launchDevices[`ebs${++ebsN}`] = pv.deviceName.replace(/^\/dev\//, "");
    }
    let privateIp = "";
    const taken = new Set<string>();
    for (const p of planned) {
      let eni: Eni;
      if (p.existing) {
        eni = p.existing;
      } else {
        const ip = p.privateIp ?? w.allocateIp(p.subnet, taken)!;
        taken.add(ip);
        eni = {
          id: newId(ID_PREFIX.eni),
          subnetId: p.subnet.id,
          vpcId: p.subnet.vpcId,
          az,
          privateIp: ip,
          mac: newMac(),
          securityGroupIds: p.securityGroupIds,
          description: p.description,
          status: "in-use",
          tags: new Map(tags.get("network-interface") ?? []),
        };
        w.enis.set(eni.id, eni);
      }
      eni.status = "in-use";
      eni.attachment = {
        id: newId(ID_PREFIX.eniAttachment),
        instanceId,
        deviceIndex: p.deviceIndex,
        state: "attached",
        attachTime: now,
        deleteOnTermination: p.deleteOnTermination,
      };
      if (p.deviceIndex === 0) privateIp = eni.privateIp;
    }
    let spotRequestId: string | undefined;
    if (market === "spot") {
      spotRequestId = newId(ID_PREFIX.spotRequest);
      w.spotRequests.set(spotRequestId, {
        id: spotRequestId,
        instanceId,
        state: "active",
        statusCode: "fulfilled",
        statusMessage: "Your spot request is fulfilled.",
        statusTime: now,
        type: spotType,
        interruptionBehavior: behavior,
        maxPrice: maxPrice.toFixed(6),
        instanceType: type.name,
        imageId: image.id,
        subnetId: primary.subnet.id,
        az,
        createTime: now,
        validUntil: mo?.SpotOptions?.ValidUntil,
        productDescription: image.platform === "windows" ? "Windows" : "Linux/UNIX",
        tags: new Map(tags.get("spot-instances-request") ?? []),
      });
    }
    const inst: Instance = {
      id: instanceId,
      reservationId,
      imageId: image.id,
      instanceType: type.name,
      az,
      subnetId: primary.subnet.id,
      vpcId: primary.subnet.vpcId,
      privateIp,
      securityGroupIds: primary.securityGroupIds,
      state: "pending",
      stateTransitionReason: "",
      launchTime: now,
      clientToken: input.ClientToken,
      tags: instTags,
      lifecycle: market,
      spotRequestId,
      userData,
      httpTokens,
      httpEndpoint,
      rootDeviceName: image.rootDeviceName,
      rootVolumeId,
      architecture: image.architecture,
      noNode: image.noNode,
      disableApiTermination: input.DisableApiTermination ?? false,
      hibernationConfigured: hib,
      keyName,
      iamInstanceProfile,
      platform: image.platform,
      usageOperationUpdateTime: now,
      spotAction: null,
      rebalanceNoticeTime: null,
      launchBlockDevices: launchDevices,
      pendingTime: now,
      booted: false,
      epoch: 0,
    };
    w.instances.set(instanceId, inst);
    if (keyFailure) failLaunch(w, inst, keyFailure, w.profile.runInstancesCall);
    else w.schedulePendingToRunning(inst, w.profile.runInstancesCall);
    w.stateChanged(inst);
  }
  const groupIds = primary.securityGroupIds;
  w.reservations.set(reservationId, { id: reservationId, instanceIds: ids, groupIds });
  if (input.ClientToken !== undefined) w.clientTokens.set(`RunInstances:${input.ClientToken}`, { fingerprint: fingerprint(input), ids });
  const out = describeReservation(w, w.reservations.get(reservationId)!);
  if (w.profile.runInstancesCall > 0) await w.clock.sleep(w.profile.runInstancesCall);
  return { ...out, OwnerId: ACCOUNT_ID };
}

/**
 * A launch whose volumes EC2 cannot encrypt or decrypt: the instance is pending, then terminates
 * with EC2's state reason (`launchFailureReason`).
 */
function failLaunch(w: World, inst: Instance, f: EncryptionFailure, extraDelay: number): void {
  const epoch = inst.epoch;
  const reason = launchFailureReason(f);
  w.after(extraDelay + w.profile.pendingToRunning, `failing the launch of ${inst.id}`, () => {
    if (inst.state !== "pending" || inst.epoch !== epoch) return;
    w.log(`${inst.id} could not launch: ${describeFailure(f)}`);
    w.beginTerminate(inst, reason);
  });
}

/** IAM instance profile names: 1-128 of letters, digits and + = , . @ _ - */
const PROFILE_NAME_RE = /^[\w+=,.@-]{1,128}$/;
/** arn:aws:iam::<account>:instance-profile[/path/]<name> */
const PROFILE_ARN_RE = /^arn:aws:iam::(\d{12}):instance-profile\/(?:[\x21-\x7e]{0,510}\/)?([\w+=,.@-]{1,128})$/;

/**
 * The instance profile as EC2 reports it. localcloud has no IAM instance profiles to look up: any
 * well-formed name of this account is accepted, and its role is taken to have the profile's name
 * (as iam:PassRole authorisation does). The Id is derived from the name, so it is stable.
 */
function instanceProfile(spec: RunInstancesRequest["IamInstanceProfile"]): Instance["iamInstanceProfile"] {
  if (!spec || (spec.Name === undefined && spec.Arn === undefined)) return undefined;
  let name = spec.Name;
  let arn: string | undefined;
  if (name !== undefined && !PROFILE_NAME_RE.test(name))
    throw new Ec2Error(
      "InvalidParameterValue",
      `Value (${name}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name`,
    );
  if (spec.Arn !== undefined) {
    const m = PROFILE_ARN_RE.exec(spec.Arn);
    if (!m || m[1] !== ACCOUNT_ID)
      throw new Ec2Error(
        "InvalidParameterValue",
        `Value (${spec.Arn}) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN`,
      );
    if (name !== undefined && name !== m[2])
      throw combination(`iamInstanceProfile.name (${name}) and iamInstanceProfile.arn (${spec.Arn}) name different instance profiles`);
    name = m[2]!;
    arn = spec.Arn;
  }
  arn ??= `arn:aws:iam::${ACCOUNT_ID}:instance-profile/${name}`;
  return { arn, id: profileId(name!) };
}

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** IAM's unique-id form for an instance profile: AIPA + 17 upper-case letters and digits. */
function profileId(name: string): string {
  const h = createHash("sha256").update(`instance-profile ${ACCOUNT_ID} ${name}`).digest();
  return `AIPA${[...h.subarray(0, 17)].map((b) => BASE32[b & 31]).join("")}`;
}

function lookupSubnet(ctx: Ctx, subnetId: string): Subnet {
  checkId(subnetId, "subnet", "InvalidSubnetID.Malformed");
  const s = ctx.world.subnets.get(subnetId);
  if (!s) throw new Ec2Error("InvalidSubnetID.NotFound", `The subnet ID '${subnetId}' does not exist`);
  return s;
}

function checkGroups(ctx: Ctx, ids: string[], subnet: Subnet): string[] {
  if (ids.length === 0) return [ctx.world.defaultSecurityGroup(subnet.vpcId)!.id];
  for (const id of ids) {
    checkId(id, "sg", "InvalidGroupId.Malformed");
    const g = ctx.world.securityGroups.get(id);
    if (!g) throw new Ec2Error("InvalidGroup.NotFound", `The security group '${id}' does not exist`);
    if (g.vpcId !== subnet.vpcId)
      throw new Ec2Error("InvalidParameter", `Security group ${id} and subnet ${subnet.id} belong to different networks.`);
  }
  return [...new Set(ids)];
}

export function checkFreeIp(ctx: Ctx, subnet: Subnet, ip: string, param: string): void {
  const problem = ctx.world.ipProblem(subnet, ip);
  if (problem) throw new Ec2Error("InvalidParameterValue", `Invalid value '${ip}' for ${param}. ${problem}`);
  if (ctx.world.usedIps(subnet.id).has(ip)) throw new Ec2Error("InvalidIPAddress.InUse", `Address ${ip} is in use.`);
}
