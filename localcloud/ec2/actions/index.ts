/** Every action localcloud implements: name -> handler over SDK-shaped input and output. */
import type { Ctx } from "../common.js";
import { runInstances } from "./run-instances.js";
import { describeInstanceStatus, describeInstances, modifyInstanceAttribute, startInstances, stopInstances, terminateInstances } from "./instances.js";
import { describeAvailabilityZones, describeInstanceTypes, describeSecurityGroups, describeSpotInstanceRequests, describeSpotPriceHistory, describeSubnets } from "./catalog.js";

// Inputs are decoded against the SDK's request schema before a handler sees them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Handler = (ctx: Ctx, input: any) => unknown;

export const ACTIONS: Record<string, Handler> = {
  RunInstances: runInstances,
  DescribeInstances: describeInstances,
  DescribeInstanceStatus: describeInstanceStatus,
  TerminateInstances: terminateInstances,
  StopInstances: stopInstances,
  StartInstances: startInstances,
  ModifyInstanceAttribute: modifyInstanceAttribute,
  DescribeAvailabilityZones: describeAvailabilityZones,
  DescribeSubnets: describeSubnets,
  DescribeSecurityGroups: describeSecurityGroups,
  DescribeInstanceTypes: describeInstanceTypes,
  DescribeSpotPriceHistory: describeSpotPriceHistory,
  DescribeSpotInstanceRequests: describeSpotInstanceRequests,
};
