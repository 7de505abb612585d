/**
 * The spec's `health` and `maintenance` blocks: how the coordinator tells a hung or impaired
 * instance from a healthy one and what it does about it, and how far ahead of an EC2 scheduled
 * maintenance event it moves the workload off the instance.
 */
import { z } from "zod";

export const HEALTH_TYPES = ["agent", "ec2", "http"] as const;
export type HealthType = (typeof HEALTH_TYPES)[number];

const HttpProbe = z
  .object({
    port: z
      .number()
      .int({ message: "must be a whole port number" })
      .min(1, { message: "must be a port between 1 and 65535" })
      .max(65_535, { message: "must be a port between 1 and 65535" }),
    path: z
      .string()
      .max(1024, { message: "is longer than 1024 characters" })
      .refine((p) => p.startsWith("/"), { message: 'must start with "/" (such as "/healthz")' })
      .refine((p) => /^[\x21-\x7e]*$/.test(p), { message: "must be printable ASCII without spaces (percent-encode the rest)" })
      .refine((p) => !p.includes("#"), { message: "must not contain a fragment (#)" })
      .default("/"),
  })
  .strict();

export const Health = z
  .object({
    type: z.enum(HEALTH_TYPES, {
      error: (iss) =>
        iss.input === undefined ? "is required (agent, ec2 or http)" : `${JSON.stringify(iss.input)} is not one of agent, ec2, http`,
    }),
    gracePeriodSeconds: z
      .number()
      .int({ message: "must be a whole number of seconds" })
      .min(0, { message: "must be 0 or more" })
      .max(86_400, { message: "must be at most 86400 (one day)" })
      .default(120),
    unhealthyDurationSeconds: z
      .number()
      .int({ message: "must be a whole number of seconds" })
      .min(10, { message: "must be at least 10 (shorter is within the noise of heartbeats and status checks)" })
      .max(86_400, { message: "must be at most 86400 (one day)" })
      .default(120),
    autoHealing: z.boolean().default(true),
    http: HttpProbe.optional(),
  })
  .strict()
  .superRefine((h, ctx) => {
    if (h.type === "http" && !h.http)
      ctx.addIssue({ code: "custom", path: ["http"], message: "is required when type is http (port, path)" });
    if (h.type !== "http" && h.http)
      ctx.addIssue({ code: "custom", path: ["http"], message: `is only used when type is http (it is ${h.type})` });
  });
export type HealthSpec = z.infer<typeof Health>;

export const Maintenance = z
  .object({
    /** Recycle onto a new instance ahead of an EC2 scheduled event (instance-retirement, system-reboot, …). */
    recycle: z.boolean().default(true),
    leadSeconds: z
      .number()
      .int({ message: "must be a whole number of seconds" })
      .min(60, { message: "must be at least 60 (a recycle needs time to finish before the event)" })
      .max(7 * 86_400, { message: "must be at most 604800 (one week)" })
      .default(900),
  })
  .strict();
export type MaintenanceSpec = z.infer<typeof Maintenance>;
export const MAINTENANCE_DEFAULT: MaintenanceSpec = { recycle: true, leadSeconds: 900 };
