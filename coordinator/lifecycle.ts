/**
 * The lifecycle of a stateful instance, in one place: its states, what each workflow kind moves it
 * through, and which operations an operator may ask for in which state. Operations check here
 * before they start anything; the API turns a refusal into 409 with the state and what is allowed.
 *
 *   creating ──create──▶ running ◀──────────────┐
 *   importing ──import──▶ running (a rollback archives the record: the instance is as it was)
 *   running ──notice/lost──▶ replacing ──▶ running
 *   running ──pause──▶ pausing ──▶ paused ──resume──▶ resuming ──▶ running
 *   running ──recycle──▶ recycling ──▶ running
 *   any but deleting/deleted ──delete──▶ deleting ──▶ deleted
 *   a workflow that fails leaves `failed`; resume, recycle and delete work from it.
 */
import type { StatefulInstanceState } from "./db/store.js";

export type OperatorAction = "pause" | "resume" | "recycle" | "snapshot" | "delete" | "update";

/** States each operator action may start from. */
export const ALLOWED_FROM: Readonly<Record<OperatorAction, readonly StatefulInstanceState[]>> = {
  pause: ["running"],
  resume: ["paused", "failed"],
  recycle: ["running", "failed"],
  snapshot: ["running"],
  delete: ["running", "paused", "failed"],
  update: ["creating", "importing", "running", "replacing", "pausing", "paused", "resuming", "recycling", "failed"],
};

/** The state a workflow kind puts the instance in while it runs. */
export const RUNNING_STATE: Readonly<Record<string, StatefulInstanceState | null>> = {
  create: "creating",
  import: "importing",
  replace: "replacing",
  pause: "pausing",
  resume: "resuming",
  recycle: "recycling",
  delete: "deleting",
  snapshot: null,
};

/** States where a live EC2 instance should exist (the lost-instance sweep covers them). */
export const SERVING_STATES: readonly StatefulInstanceState[] = ["running"];

export function allowed(action: OperatorAction, state: StatefulInstanceState): boolean {
  return ALLOWED_FROM[action].includes(state);
}

/** Why `action` cannot start in `state`, for a 409. */
export function refusal(name: string, action: OperatorAction, state: StatefulInstanceState): string {
  const from = ALLOWED_FROM[action];
  return `${name} is ${state}; ${action} is allowed from ${from.join(", ")}`;
}
