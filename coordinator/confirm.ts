/**
 * EC2's word on a notice about one of its instances, asked the same way whichever source brought
 * the notice (an agent, or the EventBridge queue): a claim that an instance is being interrupted,
 * or is gone, is acted on only when EC2 itself says so. EC2 lags IMDS and EventBridge a little,
 * so it is asked a few times before the notice counts as unconfirmed.
 */
import type { Ec2Gateway } from "./cloud/gateway.js";
import type { ScaledClock } from "../shared/clock.js";

/** Spot request status codes that mean EC2 itself has decided to take the instance. */
export const MARKED = new Set(["marked-for-termination", "marked-for-stop", "marked-for-hibernation"]);

/** What is claimed: an interruption is coming (spot request marked, or already leaving), or the instance is gone. */
export type Claim = "interruption" | "gone";

export type Confirmation = { ok: true; why: string } | { ok: false; why: string };

export interface ConfirmDeps {
  ec2: Pick<Ec2Gateway, "spotRequestStatus" | "describeInstances">;
  clock: Pick<ScaledClock, "sleep">;
  /** How often (and how far apart, model ms) EC2 is asked before the claim counts as unconfirmed. */
  attempts?: number;
  intervalMs?: number;
}

const LEAVING = new Set(["shutting-down", "terminated", "stopping", "stopped"]);

export async function confirmWithEc2(d: ConfirmDeps, instanceId: string, claim: Claim): Promise<Confirmation> {
  const attempts = Math.max(1, d.attempts ?? 4);
  let why = "not asked";
  for (let i = 0; i < attempts; i++) {
    if (i > 0) await d.clock.sleep(d.intervalMs ?? 1500);
    try {
      const [status, [inst]] = await Promise.all([
        claim === "interruption" ? d.ec2.spotRequestStatus(instanceId) : Promise.resolve(null),
        d.ec2.describeInstances([instanceId]),
      ]);
      if (status && MARKED.has(status.statusCode))
        return { ok: true, why: `spot request ${status.spotInstanceRequestId} is ${status.statusCode}` };
      if (!inst) return { ok: true, why: "the instance is gone" };
      if (claim === "interruption" ? inst.state !== "running" && inst.state !== "pending" : LEAVING.has(inst.state))
        return { ok: true, why: `the instance is ${inst.state}` };
      why = status
        ? `spot request ${status.spotInstanceRequestId} is ${status.statusCode}, instance ${inst.state}`
        : claim === "interruption"
          ? `no spot request, instance ${inst.state}`
          : `instance ${inst.state}`;
    } catch (err) {
      why = `asking EC2 failed: ${(err as Error).message}`;
    }
  }
  return { ok: false, why };
}
