/** Every action localcloud implements: name -> handler over SDK-shaped input and output. */
import type { Ctx } from "../common.js";
import { runInstances } from "./run-instances.js";
import {
  describeInstanceAttribute,
  describeInstances,
  modifyInstanceAttribute,
  startInstances,
  stopInstances,
  terminateInstances,
} from "./instances.js";
import { describeInstanceStatus } from "./instance-status.js";
import { attachVolume, createVolume, deleteVolume, describeVolumes, detachVolume } from "./volumes.js";
import { describeVolumesModifications, modifyVolume } from "./modify-volumes.js";
import {
  createImage,
  createSnapshot,
  deleteSnapshot,
  deregisterImage,
  describeImages,
  describeSnapshots,
  registerImage,
} from "./images.js";
import {
  attachNetworkInterface,
  createNetworkInterface,
  deleteNetworkInterface,
  describeNetworkInterfaces,
  detachNetworkInterface,
  modifyNetworkInterfaceAttribute,
} from "./enis.js";
import { createTags, deleteTags, describeTags } from "./tags.js";
import { copySnapshot } from "./copy-snapshot.js";
import { copyImage } from "./copy-image.js";
import {
  disableEbsEncryptionByDefault,
  enableEbsEncryptionByDefault,
  getEbsDefaultKmsKeyId,
  getEbsEncryptionByDefault,
  modifyEbsDefaultKmsKeyId,
  resetEbsDefaultKmsKeyId,
} from "./ebs-encryption.js";
import {
  cancelSpotInstanceRequests,
  describeAvailabilityZones,
  describeInstanceTypes,
  describeRegions,
  describeSecurityGroups,
  describeSpotInstanceRequests,
  describeSpotPriceHistory,
  describeSubnets,
} from "./catalog.js";

// Inputs are decoded against the SDK's request schema before a handler sees them.
// biome-ignore lint/suspicious/noExplicitAny: each handler declares its own decoded input type
type Handler = (ctx: Ctx, input: any) => unknown;

export const ACTIONS: Record<string, Handler> = {
  RunInstances: runInstances,
  DescribeInstances: describeInstances,
  DescribeInstanceStatus: describeInstanceStatus,
  TerminateInstances: terminateInstances,
  StopInstances: stopInstances,
  StartInstances: startInstances,
  ModifyInstanceAttribute: modifyInstanceAttribute,
  DescribeInstanceAttribute: describeInstanceAttribute,
  CreateVolume: createVolume,
  DescribeVolumes: describeVolumes,
  AttachVolume: attachVolume,
  DetachVolume: detachVolume,
  DeleteVolume: deleteVolume,
  ModifyVolume: modifyVolume,
  DescribeVolumesModifications: describeVolumesModifications,
  CreateSnapshot: createSnapshot,
  DescribeSnapshots: describeSnapshots,
  DeleteSnapshot: deleteSnapshot,
  RegisterImage: registerImage,
  CreateImage: createImage,
  DescribeImages: describeImages,
  DeregisterImage: deregisterImage,
  CreateNetworkInterface: createNetworkInterface,
  DescribeNetworkInterfaces: describeNetworkInterfaces,
  AttachNetworkInterface: attachNetworkInterface,
  DetachNetworkInterface: detachNetworkInterface,
  DeleteNetworkInterface: deleteNetworkInterface,
  ModifyNetworkInterfaceAttribute: modifyNetworkInterfaceAttribute,
  CreateTags: createTags,
  DeleteTags: deleteTags,
  DescribeTags: describeTags,
  DescribeAvailabilityZones: describeAvailabilityZones,
  DescribeRegions: describeRegions,
  DescribeSubnets: describeSubnets,
  DescribeSecurityGroups: describeSecurityGroups,
  DescribeInstanceTypes: describeInstanceTypes,
  DescribeSpotPriceHistory: describeSpotPriceHistory,
  DescribeSpotInstanceRequests: describeSpotInstanceRequests,
  CancelSpotInstanceRequests: cancelSpotInstanceRequests,
  CopySnapshot: copySnapshot,
  CopyImage: copyImage,
  GetEbsEncryptionByDefault: getEbsEncryptionByDefault,
  EnableEbsEncryptionByDefault: enableEbsEncryptionByDefault,
  DisableEbsEncryptionByDefault: disableEbsEncryptionByDefault,
  GetEbsDefaultKmsKeyId: getEbsDefaultKmsKeyId,
  ModifyEbsDefaultKmsKeyId: modifyEbsDefaultKmsKeyId,
  ResetEbsDefaultKmsKeyId: resetEbsDefaultKmsKeyId,
};
