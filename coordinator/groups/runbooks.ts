/**
 * What the group runbooks (scale.ts, update.ts) share: their deps and inputs (inputs.ts), step policies, and
 * the wait for a member's workflow. Group workflows and timeline events are recorded under
 * `group:NAME`. A member is an ordinary stateful instance; its membership row (the pool address it
 * owns) is written when its address is allocated and removed once its delete has finished.
 */
import type { GroupSpec } from "../../shared/group-spec.js";
import type { StoreTx, WorkflowRecord } from "../db/store.js";
import type { Operations } from "../operations.js";
import type { StepPolicy, WorkflowContext } from "../workflow/engine.js";
import { Failure, type FailureKind, failureKind } from "../workflow/failure.js";
import type { WorkflowInputs } from "../workflow/kinds.js";
import { type RunbookDeps, waitUntil } from "../workflow/runbooks/deps.js";

export type { GroupScaleInput, GroupUpdateInput } from "../workflow/group-inputs.js";

export { groupKey } from "../db/owner.js";

/** The workflows the group runbooks start for a member. */
export type MemberWorkflowKind = "create" | "resume" | "recycle";

export interface GroupRunbookDeps {
  run: RunbookDeps;
  /** Start a member's workflow inside the caller's transaction (the engine's start). */
  start: <Kind extends MemberWorkflowKind>(
    kind: Kind,
    instance: string,
    input: WorkflowInputs[Kind],
    trigger: string,
    t: StoreTx,
  ) => Promise<string>;
  operations: Pick<Operations, "deleteInstance">;
  /** The member's health status (healthy, failing, …) when its spec has health checks; null otherwise. */
  health?: (instance: string) => Promise<string | null>;
  /** Calendar for a new member's scheduled tasks. */
  calendar?: () => number;
  /** Model ms a member may take to come up, be deleted or be recycled. */
  memberTimeoutMs?: number;
}

const GROUP_PERMANENT: readonly FailureKind[] = ["pool-exhausted", "invalid-spec", "resource-lost", "fatal"];

export const STORE_POLICY: StepPolicy = { initialMs: 500, factor: 2, maxMs: 8000, attempts: 20, jitter: "equal" };
export const EC2_POLICY: StepPolicy = {
  ...STORE_POLICY,
  // Transient EC2 and store errors are retried; an exhausted pool or a bad template is not.
  retryable: (e) => !GROUP_PERMANENT.includes(failureKind(e)),
};
export const WAIT_POLICY: StepPolicy = { attempts: 1 };

export async function loadGroup(deps: GroupRunbookDeps, group: string): Promise<GroupSpec> {
  const g = await deps.run.store.groups.get(group);
  if (!g) throw new Failure("resource-lost", `group ${group} no longer exists`);
  return g.spec;
}

/** Wait for workflow `id` to end; a Failure naming the member when it did not succeed. */
export async function waitWorkflow(deps: GroupRunbookDeps, ctx: WorkflowContext, id: string, what: string): Promise<WorkflowRecord> {
  const wf = await waitUntil(
    deps.run.clock,
    `${what} (workflow ${id})`,
    async () => {
      const w = await deps.run.store.workflows.get(id);
      if (!w) return { status: "gone" } as const;
      return w.status === "running" ? null : w;
    },
    { intervalMs: deps.run.pollMs, timeoutMs: deps.memberTimeoutMs ?? 60 * 60_000, signal: ctx.signal },
  );
  if (!("id" in wf)) return { id, status: "succeeded" } as WorkflowRecord; // archived with its deleted instance
  if (wf.status !== "succeeded")
    throw new Failure("member-failed", `${what}: ${wf.kind} ${wf.id} ${wf.status}: ${wf.error ?? "no error recorded"}`);
  return wf;
}
