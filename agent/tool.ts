/**
 * Runs a system tool (fsfreeze, mount, e2fsck, sync…) for the agent's quiesce, storage and restore
 * code: its exit code and the start of its output, with a timeout.
 */
import { spawn } from "node:child_process";
import { safeTimeout } from "../shared/clock.js";

export interface ToolResult {
  /** Exit code; null when the tool did not start or was killed. */
  code: number | null;
  output: string;
  /** The tool never ran (spawn failed), so it did nothing. */
  notStarted?: boolean;
}

/**
 * Run a system tool (fsfreeze, mount, e2fsck…) and collect its exit code and output. Resolves only
 * once the process has exited: a tool killed at its timeout inside an uninterruptible system call
 * (FIFREEZE) resolves when that call has returned.
 */
export function runTool(bin: string, args: string[], timeoutMs = 60_000): Promise<ToolResult> {
  return new Promise((resolve) => {
    let output = "";
    let child;
    try {
      child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    } catch (err) {
      resolve({ code: null, output: (err as Error).message, notStarted: true });
      return;
    }
    const cancelTimer = safeTimeout(timeoutMs, () => child.kill("SIGKILL"));
    child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
    child.once("error", (err) => {
      cancelTimer();
      resolve({ code: null, output: err.message, notStarted: child.pid === undefined });
    });
    child.once("close", (code) => {
      cancelTimer();
      resolve({ code, output: output.trim().slice(0, 4000) });
    });
  });
}
