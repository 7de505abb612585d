/**
 * Names of workflow steps that code outside the runbooks reads as well as the runbooks that record
 * them: the bring-up and retire sequence of a generation (coordinator/workflow/runbooks/generation.ts),
 * and the quiesce steps that start a replacement's downtime. The coordinator's views, its end-of-
 * workflow handling and the console's Gantt chart find steps by these names. A name is what the
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
} as const;
