/**
 * Cron expressions for scheduled tasks, read in UTC: five fields (minute hour day-of-month month
 * day-of-week), names (MON-FRI, JAN) and the @daily/@weekly/… nicknames, as croner parses them
 * (day-of-month and day-of-week combine with OR when both are restricted, as in Vixie cron).
 * Seconds are not accepted: the coordinator checks for due tasks a few times a minute.
 */
import { Cron } from "croner";

const cache = new Map<string, Cron>();

function compile(expr: string): Cron {
  let c = cache.get(expr);
  if (!c) {
    c = new Cron(expr, { timezone: "UTC", mode: "5-part", paused: true });
    if (cache.size > 1000) cache.clear();
    cache.set(expr, c);
  }
  return c;
}

/** Why `expr` is not a usable cron expression, or null when it is. */
export function cronProblem(expr: string): string | null {
  if (expr.trim() === "") return 'is empty (a cron expression such as "0 20 * * 1-5")';
  if (expr.trim() !== expr) return `${JSON.stringify(expr)} has leading or trailing spaces`;
  if (expr.length > 200) return "is longer than 200 characters";
  let c: Cron;
  try {
    c = compile(expr);
  } catch (err) {
    const why = (err as Error).message.replace(/^CronPattern: /, "");
    return `${JSON.stringify(expr)} is not a five-field cron expression (minute hour day-of-month month day-of-week, UTC): ${why}`;
  }
  if (!c.nextRun(new Date(Date.UTC(2000, 0, 1)))) return `${JSON.stringify(expr)} never runs (no such date)`;
  return null;
}

/** The first due time strictly after `afterMs` (epoch ms), or null when there is none. */
export function nextDue(expr: string, afterMs: number): number | null {
  return compile(expr).nextRun(new Date(afterMs))?.getTime() ?? null;
}

/** The latest due time at or before `atMs`, or null when there is none. */
export function latestDue(expr: string, atMs: number): number | null {
  // previousRuns includes a run earlier in the same second; a run at exactly atMs counts too.
  const [d] = compile(expr).previousRuns(1, new Date(atMs + 1));
  return d ? d.getTime() : null;
}
