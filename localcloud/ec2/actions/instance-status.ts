/**
 * DescribeInstanceStatus: the system and instance status checks and the scheduled events of
 * instances, as EC2 reports them. Running instances only unless IncludeAllInstances; unknown ids
 * fail the call; InstanceIds and MaxResults do not mix; filters as EC2 documents them.
 */
import type { DescribeInstanceStatusRequest, DescribeInstanceStatusResult, InstanceStatus, InstanceStatusEvent } from "@aws-sdk/client-ec2";
import type { Ctx } from "../common.js";
import { applyFilters, dryRun, noIdsWithMaxResults, paginate } from "../common.js";
import { STATE_CODES, type Instance } from "../../world/types.js";
import { type CheckStatus, checkStatus } from "../../world/maintenance.js";
import { eventDescription } from "../../world/maintenance-events.js";
import { lookupInstances } from "./instances.js";

const REACHABILITY: Record<CheckStatus, string> = {
  ok: "passed",
  impaired: "failed",
  initializing: "initializing",
  "not-applicable": "insufficient-data",
};

const events = (i: Instance) => i.maintenanceEvents ?? [];
const iso = (d: Date | undefined) => d?.toISOString();

function summary(i: Instance, which: "system" | "instance"): InstanceStatus["SystemStatus"] {
  const s = checkStatus(i, which);
  if (s === "not-applicable") return { Status: "not-applicable" };
  return {
    Status: s,
    Details: [
      {
        Name: "reachability",
        Status: REACHABILITY[s] as "passed",
        ...(s === "impaired" && i.impaired ? { ImpairedSince: i.impaired.since } : {}),
      },
    ],
  };
}

export function describeInstanceStatus(ctx: Ctx, input: DescribeInstanceStatusRequest): DescribeInstanceStatusResult {
  const w = ctx.world;
  noIdsWithMaxResults(input.InstanceIds, input, "instancesSet");
  let insts = input.InstanceIds?.length ? lookupInstances(w, input.InstanceIds) : [...w.instances.values()];
  if (!input.IncludeAllInstances) insts = insts.filter((i) => i.state === "running");
  insts = applyFilters(insts, input.Filters, {
    "availability-zone": (i) => i.az,
    "instance-state-name": (i) => i.state,
    "instance-state-code": (i) => STATE_CODES[i.state],
    "instance-status.status": (i) => checkStatus(i, "instance"),
    "instance-status.reachability": (i) => REACHABILITY[checkStatus(i, "instance")],
    "system-status.status": (i) => checkStatus(i, "system"),
    "system-status.reachability": (i) => REACHABILITY[checkStatus(i, "system")],
    "event.code": (i) => events(i).map((e) => e.code),
    "event.description": (i) => events(i).map(eventDescription),
    "event.instance-event-id": (i) => events(i).map((e) => e.id),
    "event.not-before": (i) => events(i).map((e) => iso(e.notBefore)),
    "event.not-after": (i) => events(i).map((e) => iso(e.notAfter)),
  });
  const { page, nextToken } = paginate(insts, input, "DescribeInstanceStatus", [5, 1000]);
  dryRun(ctx, input);
  return {
    InstanceStatuses: page.map(
      (i): InstanceStatus => ({
        InstanceId: i.id,
        AvailabilityZone: i.az,
        InstanceState: { Code: STATE_CODES[i.state], Name: i.state },
        InstanceStatus: summary(i, "instance"),
        SystemStatus: summary(i, "system"),
        Events: events(i).map(
          (e): InstanceStatusEvent => ({
            InstanceEventId: e.id,
            Code: e.code,
            Description: eventDescription(e),
            NotBefore: e.notBefore,
            NotAfter: e.notAfter,
          }),
        ),
      }),
    ),
    NextToken: nextToken,
  };
}
