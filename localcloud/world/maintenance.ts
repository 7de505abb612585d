/**
 * What only EC2 does to an instance's health: fail its system or instance status check
 * (`impaired`), schedule a maintenance event (instance-retirement, system-reboot, …) and carry it
 * out at its NotBefore, and hang it (its processes stopped while EC2 still says running). The
 * control API calls these; DescribeInstanceStatus and IMDS `events/maintenance/` read the result.
 */
import { newId } from "./ids.js";
import type { Instance, MaintenanceEvent } from "./types.js";
import type { World } from "./world.js";

export class HealthError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export const EVENT_CODES = ["instance-reboot", "system-reboot", "system-maintenance", "instance-retirement", "instance-stop"] as const;
export type EventCode = (typeof EVENT_CODES)[number];

const DESCRIPTIONS: Record<EventCode, string> = {
  "instance-reboot": "The instance is scheduled for a reboot",
  "system-reboot": "The instance is scheduled for a reboot due to host maintenance",
  "system-maintenance": "The instance is scheduled for network maintenance",
  "instance-retirement": "The instance is running on degraded hardware",
  "instance-stop": "The instance is scheduled to be stopped",
};

/** EC2's event times have second precision. */
const seconds = (d: Date) => new Date(Math.floor(d.getTime() / 1000) * 1000);

export type CheckStatus = "ok" | "impaired" | "initializing" | "not-applicable";

/** The status of one check as DescribeInstanceStatus reports it. */
export function checkStatus(inst: Instance, which: "system" | "instance"): CheckStatus {
  if (inst.state !== "running") return "not-applicable";
  if (!inst.booted) return "initializing";
  return inst.impaired?.[which] ? "impaired" : "ok";
}

/** Fail (or pass again) the instance's system and/or instance status check. */
export function setStatusChecks(w: World, inst: Instance, want: { system?: "ok" | "impaired"; instance?: "ok" | "impaired" }): void {
  if (inst.state !== "running")
    throw new HealthError(409, `instance ${inst.id} is ${inst.state}: status checks apply to a running instance only`);
  const system = want.system ? want.system === "impaired" : (inst.impaired?.system ?? false);
  const instance = want.instance ? want.instance === "impaired" : (inst.impaired?.instance ?? false);
  if (!system && !instance) inst.impaired = undefined;
  else if (inst.impaired?.system !== system || inst.impaired?.instance !== instance)
    inst.impaired = { system, instance, since: inst.impaired?.since ?? new Date() };
  w.log(`${inst.id}: status checks system ${system ? "impaired" : "ok"}, instance ${instance ? "impaired" : "ok"}`);
}

/**
 * Schedule an event `inSeconds` model seconds from now. At NotBefore an instance-stop or
 * instance-retirement stops an on-demand instance and terminates a spot instance (EC2 cannot stop
 * a one-time spot instance); reboot and maintenance codes complete without touching the
 * instance's processes. Returns the event.
 */
export function scheduleEvent(
  w: World,
  inst: Instance,
  o: { code: EventCode; inSeconds: number; durationSeconds?: number; description?: string },
): MaintenanceEvent {
  if (inst.state !== "running" && inst.state !== "pending")
    throw new HealthError(409, `instance ${inst.id} is ${inst.state}: events are scheduled for a pending or running instance`);
  const events = (inst.maintenanceEvents ??= []);
  if (events.filter((e) => e.state === "active").length >= 10)
    throw new HealthError(409, `instance ${inst.id} already has 10 active scheduled events`);
  const notBefore = seconds(new Date(Date.now() + w.real(o.inSeconds * 1000)));
  const event: MaintenanceEvent = {
    id: `instance-event-${newId("x").slice(2)}`,
    code: o.code,
    description: o.description ?? DESCRIPTIONS[o.code],
    notBefore,
    notAfter: o.durationSeconds ? seconds(new Date(notBefore.getTime() + w.real(o.durationSeconds * 1000))) : undefined,
    state: "active",
  };
  events.push(event);
  const epoch = inst.epoch;
  w.after(o.inSeconds * 1000, `scheduled event ${event.id} on ${inst.id}`, () => {
    if (event.state !== "active") return;
    event.state = "completed";
    if (inst.epoch !== epoch || inst.state !== "running") return;
    if (o.code === "instance-stop" || o.code === "instance-retirement") {
      const reason = { code: "Server.ScheduledStop", message: "Server.ScheduledStop: Stopped due to scheduled retirement" };
      if (inst.lifecycle === "spot") w.beginTerminate(inst, reason);
      else w.beginStop(inst, reason);
    }
  });
  return event;
}

/** Cancel an active event (as EC2 does when the host maintenance is no longer needed). */
export function cancelEvent(inst: Instance, eventId: string): MaintenanceEvent {
  const e = inst.maintenanceEvents?.find((x) => x.id === eventId);
  if (!e) throw new HealthError(404, `instance ${inst.id} has no scheduled event ${eventId}`);
  if (e.state !== "active") throw new HealthError(409, `scheduled event ${eventId} is already ${e.state}`);
  e.state = "canceled";
  return e;
}

/** Stop (SIGSTOP) or continue every process of the instance; EC2's view of it does not change. */
export async function setHung(w: World, inst: Instance, hung: boolean): Promise<void> {
  const rt = w.runtime;
  if (!rt.pauseInstance || !rt.resumeInstance) throw new HealthError(501, `the ${rt.kind} runtime cannot stop an instance's processes`);
  if (inst.state !== "running")
    throw new HealthError(409, `instance ${inst.id} is ${inst.state}: only a running instance's processes can be stopped`);
  const done = hung ? await rt.pauseInstance(inst.id) : await rt.resumeInstance(inst.id);
  if (!done) throw new HealthError(409, `instance ${inst.id} has no processes running (not booted yet?)`);
  inst.hung = hung || undefined;
}
