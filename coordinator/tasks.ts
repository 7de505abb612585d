/**
 * Scheduled tasks (`spec.schedule`: pause, resume, recycle or snapshot on a UTC cron expression).
 * Every pass of the schedule looks at each task's latest due time; a due time newer than the last
 * one handled is handled exactly once: the operation starts (the due time is recorded in the same
 * transaction as the workflow, so a coordinator killed at any point neither loses nor repeats it),
 * or it is skipped with an event when it does not apply to the instance's state, or it is marked
 * missed when the coordinator only saw it more than an hour late. While another workflow moves the
 * instance the due time waits for the next pass (within that hour).
 */
import { nextDue, latestDue } from "../shared/cron.js";
import type { StatefulInstanceSpec } from "../shared/spec.js";
import { isRefusal } from "./refusal.js";
import { PlannedWorkWaits } from "./planned-work.js";
import type { StatefulInstance, Store, StoreTx, TaskRun } from "./db/store.js";
import { admission, refusalOf, scheduledStart } from "./lifecycle.js";

export type ScheduledTask = StatefulInstanceSpec["schedule"][number];

/** A due time seen later than this (wall ms) is not run: the coordinator was down or busy past it. */
export const MISSED_AFTER_MS = 60 * 60_000;

export const taskKey = (t: ScheduledTask): string => `${t.action} ${t.cron}`;

/**
 * What the schedule needs of the operations: start one, recording its due time in the transaction
 * that records the workflow. A refusal (it cannot start now, or not in this state) is thrown as a Refusal.
 */
export interface TaskOperations {
  run(
    name: string,
    op: ScheduledTask["action"],
    reason: string,
    o: { onStarted?: (t: StoreTx, workflowId: string) => Promise<void>; by: "schedule" },
  ): Promise<{ workflowId: string }>;
}

export interface TaskDeps {
  store: Store;
  operations: TaskOperations;
  /** The wall clock (epoch ms) cron expressions are read on. */
  calendar: () => number;
  log: (line: string) => void;
}

/** What `describe` shows for one task. */
export interface TaskView {
  action: ScheduledTask["action"];
  cron: string;
  nextRunAt: number | null;
  lastDueAt: number | null;
  lastOutcome: string | null;
  lastWorkflowId: string | null;
}

/** The due time a task should handle now, if any: newer than its baseline and its last handled one. */
function pendingDue(task: ScheduledTask, run: TaskRun | undefined, now: number): number | null {
  const due = latestDue(task.cron, now);
  if (due === null) return null;
  const from = Math.max(run?.baselineAt ?? now, run?.lastDueAt ?? Number.NEGATIVE_INFINITY);
  return due > from ? due : null;
}

/** Each task of a spec with its next run: a pending due time (it runs at the next pass), else the next one. */
export function taskViews(schedule: ScheduledTask[], runs: TaskRun[], now: number): TaskView[] {
  const byKey = new Map(runs.map((r) => [r.taskKey, r]));
  return schedule.map((t) => {
    const run = byKey.get(taskKey(t));
    const pending = pendingDue(t, run, now);
    return {
      action: t.action,
      cron: t.cron,
      nextRunAt: pending !== null && now - pending <= MISSED_AFTER_MS ? pending : nextDue(t.cron, now),
      lastDueAt: run?.lastDueAt ?? null,
      lastOutcome: run?.lastOutcome ?? null,
      lastWorkflowId: run?.lastWorkflowId ?? null,
    };
  });
}

export class ScheduledTasks {
  constructor(private readonly d: TaskDeps) {}

  /** One pass over every instance's tasks. Returns the workflows started. */
  async pass(): Promise<string[]> {
    const started: string[] = [];
    for (const inst of await this.d.store.instances.list()) {
      if (inst.state === "deleted") continue;
      // A spec stored before scheduled tasks existed has no `schedule`.
      const schedule = inst.spec.schedule ?? [];
      const now = this.d.calendar();
      let runs = await this.d.store.taskRuns.list(inst.name);
      const keys = schedule.map(taskKey);
      if (keys.length !== runs.length || keys.some((k) => !runs.some((r) => r.taskKey === k))) {
        await this.d.store.taskRuns.sync(inst.name, keys, now);
        runs = await this.d.store.taskRuns.list(inst.name);
      }
      const byKey = new Map(runs.map((r) => [r.taskKey, r]));
      // Oldest due time first, so a pause and a resume both pending run in their order.
      const due = schedule
        .map((task) => ({ task, at: pendingDue(task, byKey.get(taskKey(task)), now) }))
        .filter((x): x is { task: ScheduledTask; at: number } => x.at !== null)
        .sort((a, b) => a.at - b.at);
      for (const { task, at } of due) {
        let id: string | null = null;
        try {
          id = await this.handle(inst, task, at, now);
        } catch (err) {
          this.d.log(`${inst.name}: scheduled ${taskKey(task)}: ${(err as Error).message}`);
        }
        // A started operation moves the instance: its other due tasks wait for the next pass.
        if (id) {
          started.push(id);
          break;
        }
      }
    }
    return started;
  }

  private async handle(inst: StatefulInstance, task: ScheduledTask, dueAt: number, now: number): Promise<string | null> {
    const { store } = this.d;
    const key = taskKey(task);
    const when = new Date(dueAt).toISOString();
    const record = (outcome: string, kind: string, message: string) =>
      store.tx(async (t) => {
        if (await t.taskRuns.handled(inst.name, key, dueAt, outcome, null)) await t.events.add(inst.name, kind, message);
      });
    if (now - dueAt > MISSED_AFTER_MS) {
      await record(
        "missed",
        "schedule-missed",
        `scheduled ${task.action} (${task.cron}) due at ${when} was not run: seen ${Math.round((now - dueAt) / 60_000)} min late`,
      );
      return null;
    }
    // The lifecycle table says whether the task applies now: while another workflow moves the
    // instance the due time waits; in any other state the task does not apply, and is skipped.
    const a = await admission(store, inst.name);
    if (!a || a.facts.running.length > 0) return null;
    const skip = (why: string) =>
      record(`skipped: ${why}`, "schedule-skipped", `scheduled ${task.action} (${task.cron}) due at ${when} skipped: ${why}`);
    const why = refusalOf(scheduledStart(task.action), a.facts);
    if (why) {
      await skip(why);
      return null;
    }
    try {
      const { workflowId } = await this.d.operations.run(inst.name, task.action, `scheduled ${task.action} (${task.cron}) due at ${when}`, {
        by: "schedule",
        onStarted: async (t, wf) => {
          await t.taskRuns.handled(inst.name, key, dueAt, "started", wf);
        },
      });
      this.d.log(`${inst.name}: scheduled ${task.action} due at ${when} started as workflow ${workflowId}`);
      return workflowId;
    } catch (err) {
      if (!isRefusal(err)) throw err;
      // Another workflow started in between: the due time waits for the next pass.
      if ((await store.workflows.runningFor(inst.name)).length > 0) return null;
      // The member's group has too many members down: the due time waits for a later pass.
      if (err instanceof PlannedWorkWaits) return null;
      await skip(err.message);
      return null;
    }
  }
}
