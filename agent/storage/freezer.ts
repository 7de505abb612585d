/**
 * Freeze, thaw and unmount of a filesystem.
 *
 * The thaw path must work while filesystems are frozen: it uses only code loaded at start
 * (child_process is imported at the top; binaries are resolved to absolute paths when the Freezer
 * is built), no DNS, no writes to a frozen filesystem. Besides the in-process deadline timer, a
 * detached watchdog process is started BEFORE freezing, so the filesystem is thawed by its deadline
 * even if the agent itself dies or hangs; a verified thaw kills it.
 *
 * "Not frozen" (FITHAW's EINVAL, which fsfreeze reports as "Invalid argument") proves the
 * filesystem is thawed only once no freeze of it is still in flight: a FIFREEZE that is still
 * syncing completes AFTER such a thaw and leaves the filesystem frozen. The agent therefore never
 * thaws while its own freeze call runs, and the watchdog, which cannot know, believes "not frozen"
 * only when no `fsfreeze -f` of that mount point is running (it retries every second otherwise).
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { runTool } from "../tool.js";

/** A freeze that failed. `maybeFrozen`: its outcome is unknown (the tool was killed), so treat the filesystem as frozen. */
export class FreezeError extends Error {
  override name = "FreezeError";
  constructor(
    message: string,
    readonly maybeFrozen: boolean,
  ) {
    super(message);
  }
}

/** What one thaw call found: it thawed the filesystem, or the kernel says it was not frozen. */
export type ThawResult = "thawed" | "not-frozen";

export interface Freezer {
  /** Resolves once the freeze call has returned; throws FreezeError. */
  freeze(mountPoint: string): Promise<void>;
  /** One thaw call; throws when it failed for any other reason than "not frozen". */
  thaw(mountPoint: string): Promise<ThawResult>;
  unmount(mountPoint: string): Promise<void>;
  /** Start an out-of-process thaw at `inMs` from now; returns a cancel function. */
  armWatchdog(mountPoint: string, inMs: number): () => void;
}

/** First executable among common sbin/bin locations; the bare name when none is found. */
export function resolveBinary(name: string): string {
  for (const dir of ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/local/bin"]) {
    const p = `${dir}/${name}`;
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return name;
}

/**
 * The watchdog: sleep, then thaw until a thaw succeeds, or finds the filesystem not frozen while no
 * `fsfreeze -f <mp>` is running (matched in /proc/<pid>/cmdline, NULs turned into \001).
 * $0 = fsfreeze, $1 = mount point, $2 = seconds to sleep.
 */
const WATCHDOG_SCRIPT = `sleep "$2"
sep=$(printf '\\001')
while :; do
  "$0" -u "$1" >/dev/null 2>&1 && exit 0
  cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\000' '\\001' | grep -qF "$0$sep-f$sep$1$sep" || exit 0
  sleep 1
done`;

/** `fsfreeze` is a parameter for tests (a stand-in script); it defaults to the system's. */
export function createFsFreezer(o: { fsfreeze?: string } = {}): Freezer {
  const fsfreeze = o.fsfreeze ?? resolveBinary("fsfreeze");
  const umount = resolveBinary("umount");
  const sh = resolveBinary("sh");
  return {
    async freeze(mp) {
      const r = await runTool(fsfreeze, ["-f", mp], 120_000);
      if (r.code === 0) return;
      // Killed (timeout) or no exit status: the FIFREEZE may have succeeded.
      const maybeFrozen = r.code === null && !r.notStarted;
      throw new FreezeError(`fsfreeze -f ${mp}: ${r.output || (r.code === null ? "killed" : `exit ${r.code}`)}`, maybeFrozen);
    },
    async thaw(mp) {
      const r = await runTool(fsfreeze, ["-u", mp], 30_000);
      if (r.code === 0) return "thawed";
      // fsfreeze prints strerror(EINVAL); it exposes no other way to tell "not frozen" apart.
      if (r.code !== null && /Invalid argument/i.test(r.output)) return "not-frozen";
      throw new Error(`fsfreeze -u ${mp}: ${r.output || `exit ${r.code}`}`);
    },
    async unmount(mp) {
      const r = await runTool(umount, [mp], 60_000);
      if (r.code !== 0) throw new Error(`umount ${mp}: ${r.output || `exit ${r.code}`}`);
    },
    armWatchdog(mp, inMs) {
      const seconds = Math.max(0.05, inMs / 1000).toFixed(3);
      let pid: number | undefined;
      try {
        const child = spawn(sh, ["-c", WATCHDOG_SCRIPT, fsfreeze, mp, seconds], {
          detached: true,
          stdio: "ignore",
        });
        child.on("error", () => {});
        child.unref();
        pid = child.pid;
      } catch {
        pid = undefined;
      }
      return () => {
        if (!pid) return;
        try {
          process.kill(-pid, "SIGKILL");
        } catch {
          /* already ran or gone */
        }
        pid = undefined;
      };
    },
  };
}
