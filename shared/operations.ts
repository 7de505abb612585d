/**
 * The vocabulary of a stateful instance's life, shared by the coordinator, the CLI and the web
 * console: its states, the operations an operator starts by name, and the actions the API lists
 * as allowed. The coordinator's lifecycle table (which start is admitted from which state) is
 * written in these words.
 */

/** The lifecycle state of a stateful instance (not EC2's instance state). */
export const INSTANCE_STATES = [
  "creating",
  "importing",
  "running",
  "replacing",
  "pausing",
  "paused",
  "resuming",
  "recycling",
  "relocating",
  "deleting",
  "deleted",
  "failed",
] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

/**
 * The operations started on a stateful instance by name: `spotkeep OP NAME`,
 * POST /api/v1/instances/NAME/OP, the console's buttons, and a spec's scheduled tasks.
 */
export const OPERATIONS = ["pause", "resume", "recycle", "snapshot"] as const;
export type Operation = (typeof OPERATIONS)[number];

/** What an instance's `allowedActions` may list: the operations, a delete, and a spec update. */
export const INSTANCE_ACTIONS = [...OPERATIONS, "delete", "update"] as const;
export type InstanceAction = (typeof INSTANCE_ACTIONS)[number];
