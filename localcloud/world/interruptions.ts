/**
 * Spot interruption timeline and the other things only EC2 does to an instance:
 * notice now -> state change at notice time -> terminated/stopped; rebalance; loss without notice.
 */
import type { Instance } from "./types.js";
import { DETAIL_TYPES } from "./events.js";
import type { World } from "./world.js";

export type InterruptAction = "terminate" | "stop" | "hibernate";

export class InterruptError extends Error {}

/**
 * Record the notice (IMDS shows it at once) and schedule the state change `noticeSeconds` model
 * seconds later (hibernate starts at once: no lead time). Returns the notice.
 */
export function interrupt(
  w: World,
  inst: Instance,
  action: InterruptAction | undefined,
  noticeSeconds: number,
): { action: InterruptAction; time: string } {
  if (inst.state !== "running" && inst.state !== "pending")
    throw new InterruptError(`instance ${inst.id} is ${inst.state}: only a pending or running instance can be interrupted`);
  if (inst.spotAction)
    throw new InterruptError(
      `instance ${inst.id} already has an interruption notice (${inst.spotAction.action} at ${inst.spotAction.time})`,
    );
  const req = inst.spotRequestId ? w.spotRequests.get(inst.spotRequestId) : undefined;
  const configured: InterruptAction = req?.interruptionBehavior ?? "terminate";
  const act = action ?? configured;
  if (act !== "terminate" && act !== configured) {
    throw new InterruptError(
      `instance ${inst.id} has interruption behavior ${configured}: ` +
        `EC2 can only ${act} a spot instance launched with InstanceInterruptionBehavior=${act} (persistent request)`,
    );
  }
  const lead = act === "hibernate" ? 0 : noticeSeconds;
  const time = new Date(Date.now() + w.real(lead * 1000));
  // IMDS shows second precision like AWS ("2024-01-02T03:04:05Z").
  const notice = { action: act, time: time.toISOString().replace(/\.\d{3}Z$/, "Z") };
  inst.spotAction = notice;
  w.events?.publish(DETAIL_TYPES.spotInterruption, inst.id, inst.az, { "instance-action": act });
  if (req) {
    req.statusCode = act === "terminate" ? "marked-for-termination" : act === "stop" ? "marked-for-stop" : "marked-for-hibernation";
    const marked = act === "terminate" ? "termination" : act === "stop" ? "stop" : "hibernation";
    req.statusMessage = `Spot Instance is marked for ${marked} due to no available capacity.`;
    req.statusTime = new Date();
  }
  const epoch = inst.epoch;
  w.after(lead * 1000, `interrupting ${inst.id}`, () => {
    if (inst.epoch !== epoch || (inst.state !== "running" && inst.state !== "pending")) return;
    if (act === "terminate") {
      w.beginTerminate(inst, {
        code: "Server.SpotInstanceTermination",
        message: "Server.SpotInstanceTermination: Spot instance termination",
      });
    } else {
      w.beginStop(inst, { code: "Server.SpotInstanceShutdown", message: "Server.SpotInstanceShutdown: Spot instance shutdown" });
      if (req) {
        req.state = "disabled";
        req.statusCode = act === "stop" ? "instance-stopped-no-capacity" : "instance-hibernated-no-capacity";
        req.statusMessage = `Spot Instance ${act === "stop" ? "stopped" : "hibernated"} due to no available capacity.`;
        req.statusTime = new Date();
      }
    }
  });
  return notice;
}

export function rebalance(w: World, inst: Instance): string {
  if (inst.state !== "running" && inst.state !== "pending")
    throw new InterruptError(`instance ${inst.id} is ${inst.state}: only a pending or running instance gets a rebalance recommendation`);
  if (!inst.rebalanceNoticeTime) w.events?.publish(DETAIL_TYPES.rebalance, inst.id, inst.az, {});
  inst.rebalanceNoticeTime ??= new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  return inst.rebalanceNoticeTime;
}

/** Gone without notice (hardware failure): straight to shutting-down, then terminated. */
export function lose(w: World, inst: Instance): void {
  if (inst.state === "shutting-down" || inst.state === "terminated")
    throw new InterruptError(`instance ${inst.id} is already ${inst.state}`);
  w.beginTerminate(inst, {
    code: "Server.InternalError",
    message: "Server.InternalError: The instance was lost to an underlying host failure",
  });
}
