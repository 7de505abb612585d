/**
 * The names of workflow steps, for the runbooks that record them and for the code that reads them:
 * the coordinator's views and end-of-workflow handling, the console's Gantt chart and the crash
 * tests' matrix. `STEP` holds the fixed names, `STEP_OF` the names of steps that act on one thing
 * (a device, a group member). A name is what the
 * store records for a step, so it stays as it is: a step that takes another name replays its old
 * one through RENAMED_STEPS.
 */
export const STEP = {
  terminateOld: "terminate-old",
  waitOldTerminated: "wait-old-terminated",
  launch: "launch",
  waitRunning: "wait-running",
  attachEni: "attach-eni",
  restore: "restore",
  finish: "finish",
  deleteUnreadyRoot: "delete-unready-root",
  deleteOldRoot: "delete-old-root",
  retention: "retention",
  /** The old instance quiesced before a replacement (replace, recycle) or a pause. */
  quiesce: "quiesce",
  /** The old instance quiesced for good in a make-before-break cutover, after its replacement is ready. */
  cutoverQuiesce: "cutover-quiesce",
  abandon: "abandon",
  adopt: "adopt",
  begin: "begin",
  createEni: "create-eni",
  deleteEni: "delete-eni",
  deleteSnapshots: "delete-snapshots",
  deregisterImages: "deregister-images",
  detachEni: "detach-eni",
  freeze: "freeze",
  image: "image",
  keep: "keep",
  keepEni: "keep-eni",
  keepVolumes: "keep-volumes",
  load: "load",
  mbbDeleteUnreadyRoot: "mbb-delete-unready-root",
  mbbLaunch: "mbb-launch",
  mbbSubnets: "mbb-subnets",
  mbbTerminateUnready: "mbb-terminate-unready",
  mbbWaitReady: "mbb-wait-ready",
  plan: "plan",
  probeSpotCapacity: "probe-spot-capacity",
  removeGroup: "remove-group",
  resolve: "resolve",
  rollback: "rollback",
  snapshotLostRoot: "snapshot-lost-root",
  snapshotRoot: "snapshot-root",
  stop: "stop",
  subnets: "subnets",
  terminate: "terminate",
  terminateOriginal: "terminate-original",
  thaw: "thaw",
  untag: "untag",
  waitOriginalTerminated: "wait-original-terminated",
  waitSnapshots: "wait-snapshots",
  waitTerminated: "wait-terminated",
  /** A load balancer's steps (spec `loadBalancers`). */
  deregisterTargets: "deregister-targets",
  drainTargets: "drain-targets",
  registerTargets: "register-targets",
  waitTargetsHealthy: "wait-targets-healthy",
  /** A live volume change (grow runbook): the new spec and the new volumes recorded once in place. */
  record: "record",
} as const;

/** Steps named after the one thing they act on: a data volume's device, or a group member. */
export const STEP_OF = {
  createVolume: (device: string) => `create-volume ${device}`,
  attach: (device: string) => `attach ${device}`,
  detach: (device: string) => `detach ${device}`,
  deleteVolume: (device: string) => `delete-volume ${device}`,
  /** A data volume's snapshot; `prefix` "cross-az " when a replacement moves to another AZ. */
  snapshot: (device: string, prefix = "") => `${prefix}snapshot ${device}`,
  waitSnapshots: (prefix = "") => `${prefix}wait-snapshots`,
  allocateMember: (member: string) => `allocate ${member}`,
  createMember: (member: string) => `create ${member}`,
  waitMemberReady: (member: string) => `wait ${member} ready`,
  deleteMember: (member: string) => `delete ${member}`,
  waitMemberDeleted: (member: string) => `wait ${member} deleted`,
  releaseMember: (member: string) => `release ${member}`,
  rollMember: (member: string) => `roll ${member}`,
  waitMember: (member: string) => `wait ${member}`,
  /** A live volume change (grow runbook): ModifyVolume, its wait, the agent's online filesystem grow, a new volume's mount. */
  modify: (device: string) => `modify ${device}`,
  waitModified: (device: string) => `wait-modified ${device}`,
  growFilesystem: (device: string) => `grow-fs ${device}`,
  mount: (device: string) => `mount ${device}`,
} as const;
