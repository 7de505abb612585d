/**
 * The `ha` section of the coordinator config: two or more coordinators on one PostgreSQL store,
 * one leading at a time (coordinator/ha/lease.ts).
 */
import { z } from "zod";

const url = z.string().regex(/^https?:\/\/[^\s,]+$/, { message: "must be an http:// or https:// URL" });

export const HaConfig = z
  .object({
    /**
     * Seconds a lease lasts without renewal (renewed every third of it): a standby takes over at
     * most this long after the leader stops. Real seconds, not scaled by timeScale: the lease
     * guards against real pauses and real network delays.
     */
    leaseSeconds: z.number().min(1).max(300).default(15),
    /** Seconds before the lease's end at which the leader already stops trusting it; default a fifth of leaseSeconds. */
    marginSeconds: z.number().min(0).max(60).optional(),
    /**
     * The coordinators' URLs as agents reach them, tried in turn (a standby refuses an agent and
     * names the leader); default publicUrl alone (one load balancer in front of every coordinator).
     */
    agentUrls: z.array(url).min(1).max(8).optional(),
  })
  .strict()
  .superRefine((ha, ctx) => {
    if (ha.marginSeconds !== undefined && ha.marginSeconds >= ha.leaseSeconds)
      ctx.addIssue({ code: "custom", path: ["marginSeconds"], message: `must be less than leaseSeconds (${ha.leaseSeconds})` });
  });

export type HaConfig = z.infer<typeof HaConfig>;

/** The exit code of a coordinator that lost the lease (EX_TEMPFAIL): its supervisor restarts it as a standby. */
export const LEASE_LOST_EXIT_CODE = 75;

export function leaseTimings(ha: HaConfig): { ttlMs: number; marginMs: number } {
  const ttlMs = ha.leaseSeconds * 1000;
  return { ttlMs, marginMs: ha.marginSeconds !== undefined ? ha.marginSeconds * 1000 : ttlMs / 5 };
}
