/**
 * Process-group bookkeeping for the `process` runtime, read from /proc on Linux so that
 *  - zombies count as gone (a container's PID 1 may never reap orphans, and kill(-pgid, 0)
 *    succeeds on a group of zombies forever);
 *  - a recorded pgid is only killed if a member still carries this runtime's marker in its
 *    environment (pids get reused; we must never signal a stranger's process group).
 * Without /proc (macOS) it falls back to kill(-pgid, 0) and trusts the recorded pgid.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";

const HAS_PROC = existsSync("/proc/self/stat");

interface ProcInfo {
  pid: number;
  pgrp: number;
  zombie: boolean;
}

function readStat(pid: number): ProcInfo | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) state ppid pgrp ..."; comm may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { pid, pgrp: Number(fields[2]), zombie: fields[0] === "Z" || fields[0] === "X" };
  } catch {
    return null;
  }
}

function allProcs(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const info = readStat(Number(name));
    if (info) out.push(info);
  }
  return out;
}

/** Whether the process's environment contains every one of the exact `KEY=value` entries. */
export function environHas(pid: number, ...entries: string[]): boolean {
  try {
    const env = readFileSync(`/proc/${pid}/environ`).toString("utf8").split("\0");
    return entries.every((e) => env.includes(e));
  } catch {
    return false;
  }
}

/** Live (non-zombie) members of a process group. */
export function groupMembers(pgid: number): number[] {
  if (!HAS_PROC) {
    try {
      process.kill(-pgid, 0);
      return [pgid];
    } catch {
      return [];
    }
  }
  return allProcs()
    .filter((p) => p.pgrp === pgid && !p.zombie)
    .map((p) => p.pid);
}

export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: already gone; EPERM: not ours (never expected for groups we started).
  }
}

/** The group still has a member carrying `marker` (so it is really ours to kill). */
export function groupIsOurs(pgid: number, marker: string): boolean {
  const members = groupMembers(pgid);
  if (!HAS_PROC) return members.length > 0;
  return members.some((pid) => environHas(pid, marker));
}

/** SIGKILL every live process (other than us) whose environment carries all `markers`; returns how many. */
export function killMarked(...markers: string[]): number {
  if (!HAS_PROC) return 0;
  let n = 0;
  for (const p of allProcs()) {
    if (p.zombie || p.pid === process.pid || !environHas(p.pid, ...markers)) continue;
    try {
      process.kill(p.pid, "SIGKILL");
      n++;
    } catch {
      // raced with its exit
    }
  }
  return n;
}

export const sleepMs = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Poll until no live member remains or `ms` passes; true when the group is gone. The interval
 * backs off (10 ms -> 250 ms) because each poll scans /proc: quick exits are seen quickly and
 * a long grace does not burn a core.
 */
export async function waitGroupGone(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  let pollMs = 10;
  for (;;) {
    if (groupMembers(pgid).length === 0) return true;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await sleepMs(Math.min(pollMs, left));
    pollMs = Math.min(250, pollMs * 1.5);
  }
}
