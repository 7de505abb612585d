/**
 * The coordinator's workflow kinds, each mapped to its runbook's input type. The engine's `start`
 * and the runbook registration in coordinator/service.ts are typed by this one map, so a workflow
 * started with the wrong input, or a kind without its runbook, does not compile.
 */
import type { GroupScaleInput, GroupUpdateInput } from "./group-inputs.js";
import type { InstanceWorkflowKind } from "../lifecycle.js";
import type { WorkflowEngine } from "./engine.js";
import type { CreateInput } from "./runbooks/create.js";
import type { DeleteInput } from "./runbooks/delete.js";
import type { GrowInput } from "./runbooks/grow.js";
import type { ImportInput } from "./runbooks/import.js";
import type { PauseInput } from "./runbooks/pause.js";
import type { RelocateInput } from "./runbooks/relocate.js";
import type { ReplaceInput } from "./runbooks/replace.js";
import type { ResumeInput } from "./runbooks/resume.js";
import type { SnapshotInput } from "./runbooks/snapshot.js";

export type WorkflowInputs = {
  create: CreateInput;
  import: ImportInput;
  replace: ReplaceInput;
  /** A recycle is a planned replacement: the replace runbook, with trigger `recycle`. */
  recycle: ReplaceInput;
  pause: PauseInput;
  resume: ResumeInput;
  snapshot: SnapshotInput;
  delete: DeleteInput;
  /** Data volumes that grow or join the running instance (an update of its volumes). */
  grow: GrowInput;
  /** Back in another region from its disaster-recovery copies (spotkeep restore --region). */
  relocate: RelocateInput;
  "group-scale": GroupScaleInput;
  "group-update": GroupUpdateInput;
};

export type WorkflowKind = keyof WorkflowInputs;

/** The coordinator's engine: it runs the workflow kinds of `WorkflowInputs`. */
export type Engine = WorkflowEngine<WorkflowInputs>;

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Every workflow kind that moves one stateful instance has its row in the lifecycle table, and no other kind. */
export const LIFECYCLE_COVERS_EVERY_INSTANCE_KIND: Same<Exclude<WorkflowKind, `group-${string}`>, InstanceWorkflowKind> = true;
