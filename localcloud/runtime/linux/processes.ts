import { readFileSync, readdirSync } from "node:fs";
import { delay } from "./sh.js";

/** Process bookkeeping: signals to whole process groups and to loose pids, and bounded waits for exit. */

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  // A zombie is dead for our purposes (its parent just has not reaped it yet).
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Members of a process group (scanning /proc: the group may outlive its leader). */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(rest[2]) === pgid && rest[0] !== "Z") out.push(Number(e));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

export function signalAll(pgids: readonly number[], pids: readonly number[], sig: NodeJS.Signals): void {
  for (const g of pgids) {
    try {
      process.kill(-g, sig);
    } catch {
      /* group gone */
    }
  }
  for (const p of pids) {
    if (p === process.pid) continue;
    try {
      process.kill(p, sig);
    } catch {
      /* gone */
    }
  }
}

/** Waits until every listed pid and every member of the groups is gone, up to `ms`; returns whether they all went. */
export async function waitGone(pgids: readonly number[], pids: readonly number[], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = pids.some(alive) || pgids.some((g) => groupMembers(g).length > 0);
    if (!left) return true;
    if (Date.now() >= deadline) return false;
    await delay(50);
  }
}
