/**
 * Runs a user hook (`preStop`, `postRestore`) with sh in its own process group, with a timeout
 * (the whole group is killed when it expires) and captured output (stdout+stderr, last 16 KiB)
 * that goes into the step's `detail`, so the coordinator's timeline shows why a hook failed.
 */
import { spawn } from "node:child_process";
import { safeTimeout } from "../../shared/clock.js";
import type { StepTiming } from "../../shared/protocol.js";

const MAX_OUTPUT = 16_000;

export interface HookOptions {
  /** Real ms. */
  timeoutMs: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  now?: () => number;
}

export function runHook(name: string, command: string, opts: HookOptions): Promise<StepTiming> {
  const now = opts.now ?? Date.now;
  const started = now();
  return new Promise((resolve) => {
    let output = "";
    const append = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      if (output.length > MAX_OUTPUT * 2) output = output.slice(-MAX_OUTPUT);
    };
    let child;
    try {
      child = spawn("/bin/sh", ["-c", command], {
        cwd: opts.cwd,
        env: opts.env ?? process.env,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (err) {
      resolve({ name, ok: false, ms: 0, detail: `could not start hook: ${(err as Error).message}` });
      return;
    }
    let timedOut = false;
    const cancelTimer = safeTimeout(Math.max(1, opts.timeoutMs), () => {
      timedOut = true;
      killGroup(child.pid, "SIGKILL");
    });
    child.stdout?.on("data", append);
    child.stderr?.on("data", append);
    const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error) => {
      cancelTimer();
      const tail = output.length > MAX_OUTPUT ? output.slice(-MAX_OUTPUT) : output;
      let status: string;
      if (spawnError) status = `could not start hook: ${spawnError.message}`;
      else if (timedOut) status = `timed out after ${opts.timeoutMs} ms; killed`;
      else if (code === 0) status = "exit 0";
      else status = code !== null ? `exit ${code}` : `killed by ${signal}`;
      const detail = `${status}${tail ? `\n${tail}` : ""}`.slice(0, MAX_OUTPUT);
      resolve({ name, ok: !spawnError && !timedOut && code === 0, ms: Math.max(0, Math.round(now() - started)), detail });
    };
    child.once("error", (err) => finish(null, null, err));
    child.once("close", (code, signal) => finish(code, signal));
  });
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  }
}
