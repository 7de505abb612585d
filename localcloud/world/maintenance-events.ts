/**
 * How a scheduled maintenance event reads to the outside: its description in
 * DescribeInstanceStatus and its entry in IMDS `events/maintenance/scheduled`. Pure functions of
 * the event, so the world (which serves IMDS) and the maintenance actions both use them.
 */
import type { ImdsScheduledEvent } from "../imds/types.js";
import type { MaintenanceEvent } from "./types.js";

/** `[Completed] …`/`[Canceled] …`, as EC2 describes events that are over. */
export function eventDescription(e: MaintenanceEvent): string {
  return e.state === "active" ? e.description : `[${e.state === "completed" ? "Completed" : "Canceled"}] ${e.description}`;
}

export function imdsEvent(e: MaintenanceEvent): ImdsScheduledEvent {
  return {
    code: e.code,
    state: e.state,
    eventId: e.id,
    description: eventDescription(e),
    notBefore: e.notBefore.toISOString(),
    notAfter: e.notAfter?.toISOString(),
  };
}
