/**
 * One linux-runtime test FILE at a time on this host. The runtime's own host lock is taken per
 * runtime object, so two vitest files (test/linux/linux.test.ts, test/e2e/postgres.test.ts) would
 * interleave: one grabs the lock between the other's suites and the other's next init() times out.
 * Holding this lock for a whole file (or the whole `npm run e2e:postgres`) serialises them.
 * Stale when the holder's pid is gone (or reused: its start time differs).
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";

const LOCK_FILE = "/run/spotkeep-linux-suite.lock";

function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/** Waits (bounded) for the host's linux-suite lock; returns its release function. */
export async function holdLinuxSuiteLock(what: string, waitMs = 20 * 60_000, file = LOCK_FILE): Promise<() => void> {
  const me = { pid: process.pid, startTime: startTime(process.pid), what };
  const deadline = Date.now() + waitMs;
  let said = false;
  for (;;) {
    try {
      const fd = openSync(file, "wx", 0o600);
      try {
        writeSync(fd, JSON.stringify(me));
      } finally {
        closeSync(fd);
      }
      return () => {
        try {
          if ((JSON.parse(readFileSync(file, "utf8")) as { pid: number }).pid === process.pid) rmSync(file, { force: true });
        } catch {
          /* already gone */
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST")
        throw new Error(`taking the linux-suite lock ${file} for ${what}: ${String(err)}`, { cause: err });
    }
    let holder: { pid: number; startTime: string | null; what: string } | null = null;
    try {
      holder = JSON.parse(readFileSync(file, "utf8"));
    } catch {
      holder = null; // half-written or just removed: retry below
    }
    if (holder && (holder.pid === process.pid || startTime(holder.pid) !== holder.startTime)) {
      rmSync(file, { force: true }); // ours from an abandoned attempt, or its holder died
      continue;
    }
    if (Date.now() > deadline)
      throw new Error(
        `taking the linux-suite lock ${file} for ${what}: still held by pid ${holder?.pid} (${holder?.what}) after ${waitMs} ms`,
      );
    if (holder && !said) {
      said = true;
      console.log(`${what}: waiting for another linux-runtime test run (pid ${holder.pid}, ${holder.what}) to finish`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
