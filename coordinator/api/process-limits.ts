/**
 * The process's descriptor budget, for /healthz. Every agent session and every idle connection
 * holds a descriptor, so running out is how a connection flood takes the API down.
 *
 * Node raises its own soft RLIMIT_NOFILE to the hard limit at start-up (it has no setrlimit for
 * scripts to call), so the soft limit seen here is already as high as the process may set it;
 * raising the hard limit is the service manager's job (`LimitNOFILE=` in the systemd unit).
 * Linux only: elsewhere the figures are null.
 */
import { readdirSync, readFileSync } from "node:fs";

export interface OpenFiles {
  /** Descriptors open now; null when it cannot be counted (no /proc, or no descriptor left to count with). */
  open: number | null;
  /** RLIMIT_NOFILE; "unlimited" or null when unknown. */
  soft: number | "unlimited" | null;
  hard: number | "unlimited" | null;
}

let lastLimits: Pick<OpenFiles, "soft" | "hard"> | null = null;

/** Parse the "Max open files" line of /proc/<pid>/limits. */
export function parseOpenFilesLimit(limits: string): Pick<OpenFiles, "soft" | "hard"> | null {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(limits);
  if (!m) return null;
  const v = (s: string) => (s === "unlimited" ? ("unlimited" as const) : Number.isFinite(Number(s)) ? Number(s) : null);
  return { soft: v(m[1]!), hard: v(m[2]!) };
}

/** Share of the soft limit at which /healthz reports descriptors as nearly exhausted. */
export const DESCRIPTOR_PRESSURE = 0.9;

/**
 * Why the descriptor budget is a health problem, or null when it is not: open descriptors at or
 * above `threshold` of the soft limit mean the next agent sessions and API connections are about
 * to be refused (accept fails with EMFILE), and so is the store's next file.
 */
export function descriptorPressure(o: OpenFiles, threshold = DESCRIPTOR_PRESSURE): string | null {
  if (o.open === null || typeof o.soft !== "number" || o.soft <= 0) return null;
  if (o.open < o.soft * threshold) return null;
  const pct = Math.round((o.open / o.soft) * 100);
  const hard = o.hard === "unlimited" ? "unlimited" : o.hard === null ? "unknown" : String(o.hard);
  return (
    `${o.open} of ${o.soft} open descriptors in use (${pct}%, hard limit ${hard}): ` +
    "new agent sessions and API connections will soon be refused; raise the limit (LimitNOFILE= in the systemd unit)"
  );
}

export function openFiles(): OpenFiles {
  let open: number | null = null;
  try {
    // The listing's own descriptor is in it.
    open = Math.max(0, readdirSync("/proc/self/fd").length - 1);
  } catch {
    open = null;
  }
  try {
    lastLimits = parseOpenFilesLimit(readFileSync("/proc/self/limits", "utf8")) ?? lastLimits;
  } catch {
    /* out of descriptors, or not Linux: keep what was read before */
  }
  return { open, soft: lastLimits?.soft ?? null, hard: lastLimits?.hard ?? null };
}
