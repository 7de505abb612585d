/** The shapes of /api/v1/groups answers (the CLI parses them with these schemas). */
import { z } from "zod";

export const GroupMemberView = z.object({
  ordinal: z.number(),
  name: z.string(),
  privateIp: z.string(),
  subnetId: z.string(),
  availabilityZone: z.string(),
  /** active, or removing (a scale-down or the group's delete is deleting it). */
  membership: z.string(),
  /** The member's lifecycle state (running, replacing, …); null once its record is gone. */
  state: z.string().nullable(),
  stateReason: z.string().nullable(),
  generation: z.number().nullable(),
  instanceId: z.string().nullable(),
  eniId: z.string().nullable(),
  /** Down now: not running, or moved by a workflow other than a snapshot. */
  unavailable: z.boolean(),
});
export type GroupMemberView = z.infer<typeof GroupMemberView>;

export const GroupSummary = z.object({
  name: z.string(),
  state: z.string(),
  stateReason: z.string().nullable(),
  size: z.number(),
  maxUnavailable: z.number(),
  members: z.number(),
  /** Member instance names by ordinal. */
  memberNames: z.array(z.string()),
  /** Members by lifecycle state. */
  byState: z.record(z.string(), z.number()),
  unavailable: z.number(),
  workflowId: z.string().nullable(),
});
export type GroupSummary = z.infer<typeof GroupSummary>;

export const GroupDetail = GroupSummary.extend({
  ipPool: z.array(z.string()),
  /** Pool addresses no member owns. */
  freeAddresses: z.array(z.string()),
  /** Members per AZ (every AZ of the template's subnets). */
  spread: z.record(z.string(), z.number()),
  memberList: z.array(GroupMemberView),
  spec: z.unknown(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type GroupDetail = z.infer<typeof GroupDetail>;

export const GroupList = z.object({ groups: z.array(GroupSummary) });
export const GroupStarted = z.object({ name: z.string(), workflowId: z.string().nullable() });
