/**
 * What a delete may keep, and for how long: parsed the same way by the API (query or body) and the
 * CLI (before anything is sent), so a bad item or TTL is named with the same words everywhere.
 */
import { ValidationError } from "./errors.js";

export const KEEP_ITEMS = ["volumes", "network", "snapshots", "images"] as const;
export type KeepItem = (typeof KEEP_ITEMS)[number];

/** Which kinds of resources a delete keeps; everything not kept is deleted. */
export type KeepSet = Record<KeepItem, boolean>;

/** Ten years: a longer TTL is almost certainly a unit mistake. */
export const MAX_TTL_HOURS = 87_600;

export const KEEP_NOTHING: KeepSet = { volumes: false, network: false, snapshots: false, images: false };

/**
 * `volumes,network` (a comma list, or several values) → a KeepSet. Empty items are ignored;
 * an unknown item is refused by name.
 */
export function parseKeep(value: string | readonly string[] | null | undefined, path = "keep"): KeepSet {
  const items = (typeof value === "string" ? [value] : (value ?? [])).flatMap((v) => v.split(",")).map((v) => v.trim());
  const out: KeepSet = { ...KEEP_NOTHING };
  for (const item of items) {
    if (item === "") continue;
    if (!(KEEP_ITEMS as readonly string[]).includes(item))
      throw new ValidationError([{ path, reason: `unknown item ${JSON.stringify(item)} (allowed: ${KEEP_ITEMS.join(", ")})` }]);
    out[item as KeepItem] = true;
  }
  return out;
}

/** Hours (a positive number, fractions allowed, at most MAX_TTL_HOURS) or null when not given. */
export function parseTtlHours(value: string | number | null | undefined, path = "ttlHours"): number | null {
  if (value === null || value === undefined || value === "") return null;
  const n = typeof value === "number" ? value : /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isFinite(n) || n <= 0 || n > MAX_TTL_HOURS)
    throw new ValidationError([
      { path, reason: `${JSON.stringify(value)} is not a number of hours (a positive number, at most ${MAX_TTL_HOURS})` },
    ]);
  return n;
}

/** The kept items as a list, for messages: "volumes, network" or "nothing". */
export function keptList(keep: KeepSet): string {
  const on = KEEP_ITEMS.filter((k) => keep[k]);
  return on.length ? on.join(", ") : "nothing";
}
