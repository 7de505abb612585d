/**
 * Freeze, thaw and unmount of a filesystem (reference §E.2).
 *
 * The thaw path must work while filesystems are frozen: it uses only code loaded at start
 * (child_process is imported at the top; binaries are resolved to absolute paths when the Freezer
 * is built), no DNS, no writes to a frozen filesystem. Besides the in-process deadline timer, a
 * detached watchdog process (`sleep N; fsfreeze -u MP`) is started BEFORE freezing, so the
 * filesystem is thawed by its deadline even if the agent itself dies or hangs; a normal thaw kills it.
 */
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { runTool } from "../quiesce/hooks.js";

export interface Freezer {
  freeze(mountPoint: string): Promise<void>;
  thaw(mountPoint: string): Promise<void>;
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

export function createFsFreezer(): Freezer {
  const fsfreeze = resolveBinary("fsfreeze");
  const umount = resolveBinary("umount");
  const sh = resolveBinary("sh");
  return {
    async freeze(mp) {
      const r = await runTool(fsfreeze, ["-f", mp], 120_000);
      if (r.code !== 0) throw new Error(`fsfreeze -f ${mp}: ${r.output || `exit ${r.code}`}`);
    },
    async thaw(mp) {
      const r = await runTool(fsfreeze, ["-u", mp], 30_000);
      // EINVAL = not frozen (the watchdog or someone else thawed it already): fine.
      if (r.code !== 0 && !/Invalid argument/i.test(r.output)) throw new Error(`fsfreeze -u ${mp}: ${r.output || `exit ${r.code}`}`);
    },
    async unmount(mp) {
      const r = await runTool(umount, [mp], 60_000);
      if (r.code !== 0) throw new Error(`umount ${mp}: ${r.output || `exit ${r.code}`}`);
    },
    armWatchdog(mp, inMs) {
      const seconds = Math.max(0.05, inMs / 1000).toFixed(3);
      let pid: number | undefined;
      try {
        const child = spawn(sh, ["-c", `sleep ${seconds}; exec "$0" -u "$1" >/dev/null 2>&1`, fsfreeze, mp], {
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
