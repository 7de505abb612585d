import { execFile, type ExecFileOptions } from "node:child_process";

/** Result of a command; `code` is 0 on success. */
export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a tool (no shell) and resolves with its output whatever the exit code. The linux runtime
 * drives ip/losetup/mount/nsenter, whose "already gone" failures are normal during cleanup, so
 * callers decide what a non-zero exit means (see `sh`).
 */
export function shTry(cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<ShResult> {
  return new Promise((resolve) => {
    const o: ExecFileOptions = { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, encoding: "utf8" };
    const child = execFile(cmd, [...args], o, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean }) | null;
      let code = 0;
      if (e) code = typeof e.code === "number" ? e.code : e.killed ? 124 : 127;
      const errText =
        String(stderr ?? "") + (e && typeof e.code !== "number" ? (e.killed ? `timed out after ${o.timeout} ms` : String(e.message)) : "");
      resolve({ code, stdout: String(stdout ?? ""), stderr: errText });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Runs a tool and throws `<what>: <cmd line>: exit N: <stderr>` when it fails. */
export async function sh(
  what: string,
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<string> {
  const r = await shTry(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${what}: \`${[cmd, ...args].join(" ")}\` exited ${r.code}: ${r.stderr.trim() || r.stdout.trim() || "(no output)"}`);
  }
  return r.stdout;
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
