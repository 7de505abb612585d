/**
 * Control routes for an instance's health, under /_localcloud/v1/instances/{id}/:
 *  - `POST status-checks {system?, instance?: ok|impaired}`: fail or pass EC2's status checks;
 *  - `POST hang {hung?: boolean}`: stop (SIGSTOP) or continue its processes, EC2 still `running`;
 *  - `POST events {code, inSeconds, durationSeconds?, description?}`: schedule a maintenance event
 *    (IMDS events/maintenance/scheduled and DescribeInstanceStatus show it; it is carried out at
 *    NotBefore); `DELETE events/{eventId}` cancels it.
 */
import { z } from "zod";
import { cancelEvent, EVENT_CODES, scheduleEvent, setHung, setStatusChecks } from "../world/maintenance.js";
import type { World } from "../world/world.js";

const Check = z.enum(["ok", "impaired"]);
const StatusChecksBody = z
  .strictObject({ system: Check.optional(), instance: Check.optional() })
  .refine((b) => b.system !== undefined || b.instance !== undefined, { message: "name system and/or instance (ok or impaired)" });
const HangBody = z.strictObject({ hung: z.boolean().default(true) });
const EventBody = z.strictObject({
  code: z.enum(EVENT_CODES),
  /** Model seconds until NotBefore. */
  inSeconds: z
    .number()
    .finite()
    .min(0)
    .max(30 * 86_400),
  durationSeconds: z
    .number()
    .finite()
    .positive()
    .max(30 * 86_400)
    .optional(),
  description: z.string().min(1).max(255).optional(),
});

export interface HealthRouteIo {
  body(): Promise<unknown>;
  parse<T>(schema: z.ZodType<T>, body: unknown): T;
  send(status: number, body: unknown): void;
  fail(status: number, message: string): never;
}

/** Handle `route` when it is one of the routes above; false when it is not. */
export async function handleHealthRoute(w: World, method: string, route: string, io: HealthRouteIo): Promise<boolean> {
  const m = /^instances\/([^/]+)\/(status-checks|hang|events)(?:\/([^/]+))?$/.exec(route);
  if (!m) return false;
  const [, id, verb, eventId] = m as unknown as [string, string, string, string | undefined];
  const inst = w.instances.get(id);
  if (!inst) io.fail(404, `instance ${id} does not exist`);
  if (verb === "events" && eventId !== undefined) {
    if (method !== "DELETE") io.fail(405, "use DELETE for instances/{id}/events/{eventId}");
    const e = cancelEvent(inst, eventId);
    io.send(200, { instanceId: inst.id, eventId: e.id, state: e.state });
    return true;
  }
  if (method !== "POST") io.fail(405, `use POST for instances/{id}/${verb}`);
  const body = await io.body();
  if (verb === "status-checks") {
    setStatusChecks(w, inst, io.parse(StatusChecksBody, body));
    io.send(200, {
      instanceId: inst.id,
      system: inst.impaired?.system ? "impaired" : "ok",
      instance: inst.impaired?.instance ? "impaired" : "ok",
    });
  } else if (verb === "hang") {
    const b = io.parse(HangBody, body);
    await setHung(w, inst, b.hung);
    io.send(200, { instanceId: inst.id, hung: b.hung, state: inst.state });
  } else {
    const e = scheduleEvent(w, inst, io.parse(EventBody, body));
    io.send(200, {
      instanceId: inst.id,
      event: {
        eventId: e.id,
        code: e.code,
        description: e.description,
        notBefore: e.notBefore.toISOString(),
        notAfter: e.notAfter?.toISOString(),
      },
    });
  }
  return true;
}
