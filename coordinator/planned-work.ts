/**
 * Cluster safety for stateful groups: planned work on a member (recycle, pause, a spec update's
 * roll-out, scheduled tasks, rebalance and health recycles, make-before-break cutovers of a
 * recycle) may start only while fewer than `maxUnavailable` other members are down, and never
 * while another member is recovering from an interruption. Interruption replacements are not
 * asked: they are never delayed, and they count as unavailable. Call it inside the store
 * transaction that starts the work, so two requests at the same moment cannot both pass.
 */
import { Refusal } from "./refusal.js";
import type { GroupMember, StoreTx } from "./db/store.js";

/** Planned work refused for now because of the member's group; it may start later. */
export class PlannedWorkWaits extends Refusal {
  override name = "PlannedWorkWaits";
  constructor(message: string) {
    super("conflict", message);
  }
}

/** The group's members that are down now (not running, or moved by a workflow other than a snapshot), and those recovering from an interruption. */
export async function unavailableMembers(
  t: Pick<StoreTx, "instances" | "workflows">,
  members: readonly GroupMember[],
): Promise<{ down: string[]; recovering: string[] }> {
  const down: string[] = [];
  const recovering: string[] = [];
  for (const m of members) {
    if (m.status !== "active") continue;
    const inst = await t.instances.get(m.instance);
    // A member not created yet has never served: it takes nothing away from the cluster.
    if (!inst || inst.state === "creating") continue;
    const running = await t.workflows.runningFor(m.instance);
    if (running.some((w) => w.kind === "replace")) recovering.push(m.instance);
    if (inst.state !== "running" || running.some((w) => w.kind !== "snapshot")) down.push(m.instance);
  }
  return { down, recovering };
}

/** Why planned work on `instance` must wait now; null when it may start (or the instance is in no group). */
export async function plannedWorkRefusal(t: Pick<StoreTx, "instances" | "workflows" | "groups">, instance: string): Promise<string | null> {
  const m = await t.groups.memberOf(instance);
  if (!m) return null;
  const g = await t.groups.get(m.group);
  if (!g) return null;
  const others = (await t.groups.members(m.group)).filter((x) => x.instance !== instance);
  const { down, recovering } = await unavailableMembers(t, others);
  if (recovering.length)
    return `group ${g.name}: planned work on ${instance} waits while ${recovering.join(", ")} recover${recovering.length > 1 ? "" : "s"} from an interruption`;
  if (down.length >= g.spec.maxUnavailable)
    return (
      `group ${g.name}: planned work on ${instance} waits: ${down.length} other member${down.length > 1 ? "s are" : " is"} down ` +
      `(${down.join(", ")}) and maxUnavailable is ${g.spec.maxUnavailable}`
    );
  return null;
}

/** Throw PlannedWorkWaits when planned work on `instance` must wait. */
export async function admitPlannedWork(t: Pick<StoreTx, "instances" | "workflows" | "groups">, instance: string): Promise<void> {
  const why = await plannedWorkRefusal(t, instance);
  if (why) throw new PlannedWorkWaits(why);
}
