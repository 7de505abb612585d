/**
 * Shapes of the coordinator's HTTP API (/api/v1). The server builds these, the CLI parses
 * them; both sides import from here so they cannot drift.
 */
import { z } from "zod";
import { INSTANCE_ACTIONS, INSTANCE_STATES } from "./operations.js";

export const InstanceState = z.enum(INSTANCE_STATES);
export type InstanceState = z.infer<typeof InstanceState>;

export const InstanceSummary = z.object({
  name: z.string(),
  state: InstanceState,
  /** Why it is in this state (set for failed, replacing). */
  stateReason: z.string().nullable(),
  generation: z.number().int().nonnegative(),
  instanceId: z.string().nullable(),
  instanceType: z.string().nullable(),
  availabilityZone: z.string().nullable(),
  lifecycle: z.enum(["spot", "on-demand"]).nullable(),
  privateIp: z.string().nullable(),
  lastDowntimeSeconds: z.number().nullable(),
  /** Health checks (spec `health`): null without them. */
  health: z
    .object({
      type: z.enum(["agent", "ec2", "http"]),
      status: z.enum(["initializing", "healthy", "failing", "unhealthy", "unknown"]),
      since: z.string().nullable(),
      reason: z.string().nullable(),
    })
    .nullable()
    .optional(),
  /** When the live generation launched (null when none runs): its uptime, on its market. */
  liveSince: z.string().nullable().optional(),
  /** When the last replacement with a measured downtime started (the downtime is lastDowntimeSeconds). */
  lastInterruptionAt: z.string().nullable().optional(),
  /**
   * What the coordinator would start for this instance now: its state allows it, no other workflow
   * moves it, and it has what the action needs (a live EC2 instance to pause, data volumes to
   * snapshot; a group member is updated and deleted through its group). A group may still ask
   * planned work to wait while other members are down. Absent from an older coordinator: none.
   */
  allowedActions: z.array(z.enum(INSTANCE_ACTIONS)).default([]),
  /**
   * A deleted instance's kept resources, or what a restore in another region left in the old one
   * (absent when none): id, kind, expiry (null: until deleted by hand), and whether EC2 still has it.
   */
  kept: z
    .array(
      z.object({
        resourceId: z.string(),
        kind: z.enum(["volume", "network-interface", "snapshot", "image"]),
        expiresAt: z.string().nullable(),
        gone: z.boolean(),
      }),
    )
    .optional(),
});
export type InstanceSummary = z.infer<typeof InstanceSummary>;

export const PersistedVolume = z.object({
  device: z.string(),
  /** null: attached but not mounted (an adopted volume the spec gives no mount point). */
  mountPoint: z.string().nullable(),
  volumeId: z.string().nullable(),
  latestSnapshotId: z.string().nullable(),
  availabilityZone: z.string().nullable(),
});

export const Generation = z.object({
  generation: z.number().int().positive(),
  instanceId: z.string().nullable(),
  instanceType: z.string().nullable(),
  availabilityZone: z.string().nullable(),
  lifecycle: z.enum(["spot", "on-demand"]).nullable(),
  launchedAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  endReason: z.string().nullable(),
});

export const ScheduledTaskView = z.object({
  action: z.string(),
  cron: z.string(),
  nextRunAt: z.string().nullable(),
  lastDueAt: z.string().nullable(),
  /** started, skipped: why, or missed. */
  lastOutcome: z.string().nullable(),
  lastWorkflowId: z.string().nullable(),
});

/**
 * The latest inventory the agent of the current generation sent: what the instance says it has
 * (a claim, shown as reported; the coordinator's decisions read EC2).
 */
export const InventoryView = z.object({
  generation: z.number().int().positive(),
  instanceId: z.string(),
  /** When the coordinator recorded it. */
  receivedAt: z.string(),
  instanceType: z.string(),
  availabilityZone: z.string(),
  imageId: z.string(),
  /** The agent's block devices and volume links (shared/protocol.ts BlockDevice). */
  devices: z.array(
    z.object({
      device: z.string(),
      volumeId: z.string().optional(),
      requestedName: z.string().optional(),
      sizeBytes: z.number().optional(),
      fsType: z.string().optional(),
      uuid: z.string().optional(),
      mountPoint: z.string().optional(),
      kind: z.enum(["block", "directory"]),
      root: z.boolean().optional(),
    }),
  ),
  /** Mounted filesystems with their usage; empty from an agent older than usage reports. usedRatio: used / (used + available). */
  filesystems: z.array(
    z.object({
      device: z.string(),
      volumeId: z.string().optional(),
      mountPoint: z.string(),
      fsType: z.string(),
      sizeBytes: z.number(),
      usedBytes: z.number(),
      availableBytes: z.number(),
      usedRatio: z.number().nullable(),
    }),
  ),
  networkInterfaces: z.array(z.object({ name: z.string(), mac: z.string(), addresses: z.array(z.string()) })),
});
export type InventoryView = z.infer<typeof InventoryView>;

export const InstanceDetail = InstanceSummary.extend({
  spec: z.unknown(),
  resources: z.object({
    volumes: z.array(PersistedVolume),
    root: z.object({ imageId: z.string().nullable(), snapshotId: z.string().nullable() }),
    network: z.object({ eniId: z.string().nullable(), privateIp: z.string().nullable() }),
    /**
     * The snapshots and images spotkeep made for it and still holds, newest first; snapshot-copy and
     * image-copy are their disaster-recovery copies in `region` (snapshots.copyToRegions), of `sourceId`.
     */
    artifacts: z
      .array(
        z.object({
          id: z.string(),
          kind: z.enum(["data-snapshot", "root-snapshot", "image", "snapshot-copy", "image-copy"]),
          device: z.string().nullable(),
          generation: z.number().int().nullable(),
          region: z.string().nullable().optional(),
          sourceId: z.string().nullable().optional(),
          createdAt: z.string(),
        }),
      )
      .optional(),
  }),
  generations: z.array(Generation),
  /** EC2 scheduled events on the live instance and when the recycle ahead of each starts. */
  maintenance: z
    .array(z.object({ eventId: z.string(), code: z.string(), notBefore: z.string().nullable(), recycleAt: z.string().nullable() }))
    .optional(),
  /** Each scheduled task (spec.schedule) with its next run and the last due time handled. */
  schedule: z.array(ScheduledTaskView).default([]),
  /** The current generation's latest inventory; null when its agent sent none (absent from an older coordinator). */
  inventory: InventoryView.nullable().optional(),
});
export type InstanceDetail = z.infer<typeof InstanceDetail>;

export const WorkflowStep = z.object({
  seq: z.number().int().nonnegative(),
  name: z.string(),
  status: z.enum(["pending", "running", "done", "failed"]),
  attempts: z.number().int().nonnegative(),
  startedAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  durationMs: z.number().nullable(),
  error: z.string().nullable(),
});
export type WorkflowStep = z.infer<typeof WorkflowStep>;

export const Workflow = z.object({
  id: z.string(),
  kind: z.string(),
  instance: z.string(),
  status: z.enum(["running", "succeeded", "failed", "cancelled"]),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  error: z.string().nullable(),
  steps: z.array(WorkflowStep),
});
export type Workflow = z.infer<typeof Workflow>;

/** One replacement (or create) as a timeline. Times are ISO strings; durations in seconds. */
export const Timeline = z.object({
  workflowId: z.string(),
  kind: z.string(),
  trigger: z.string().nullable(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  outcome: z.enum(["running", "succeeded", "failed", "cancelled"]),
  /** Downtime: from quiesce start on the old instance to the workload serving on the new one. */
  downtimeSeconds: z.number().nullable(),
  /** When the downtime began: the quiesce, or a make-before-break's cutover quiesce (the workflow's start without one). */
  downtimeFrom: z.string().nullable().optional(),
  /** Recovery time: from the notice to the replacement reported ready. */
  recoverySeconds: z.number().nullable(),
  steps: z.array(WorkflowStep),
  /** Names of the steps on the critical path, in order. */
  criticalPath: z.array(z.string()),
  /** Real seconds per model second when this ran (timestamps are real, durations model time). */
  timeScale: z.number().positive().default(1),
});
export type Timeline = z.infer<typeof Timeline>;

export const EventsResponse = z.object({
  name: z.string(),
  timelines: z.array(Timeline),
  events: z.array(z.object({ at: z.string(), kind: z.string(), message: z.string(), workflowId: z.string().nullable() })),
});
export type EventsResponse = z.infer<typeof EventsResponse>;

export const CreateResponse = z.object({ name: z.string(), workflowId: z.string() });
/** POST /api/v1/import: the spec the import made and its steps in words; a dry run has no workflow. */
export const ImportResponse = z.object({
  name: z.string(),
  instanceId: z.string(),
  dryRun: z.boolean().optional(),
  workflowId: z.string().nullable().optional(),
  spec: z.record(z.string(), z.unknown()),
  steps: z.array(z.string()),
});
/** pause | resume | recycle | snapshot: 202 with the workflow it started. */
export const OperationResponse = CreateResponse;
/** PUT /api/v1/instances/{name}: the workflow of `?recycle=true`, else null (applied at the next generation). */
export const UpdateResponse = z.object({ name: z.string(), workflowId: z.string().nullable() });
export const ApiError = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
export type ApiError = z.infer<typeof ApiError>;

/** GET /api/v1/savings: hours on spot and on-demand per instance and what spot saved (model hours, USD). */
export const SavingsLine = z.object({
  name: z.string(),
  spotHours: z.number(),
  onDemandHours: z.number(),
  /** What the spot hours cost at the spot price in effect while they ran. */
  spotCost: z.number(),
  onDemandCost: z.number(),
  /** What every priced hour would have cost on-demand. */
  onDemandEquivalent: z.number(),
  saved: z.number(),
  /** Generations left out of the money, with the reason. */
  unpriced: z.array(z.string()),
});
export type SavingsLine = z.infer<typeof SavingsLine>;
export const Savings = z.object({
  currency: z.literal("USD"),
  at: z.string(),
  instances: z.array(SavingsLine),
  total: SavingsLine.omit({ name: true, unpriced: true }),
});
export type Savings = z.infer<typeof Savings>;
