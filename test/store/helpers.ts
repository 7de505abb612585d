import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const CHILD = join(import.meta.dirname, "store-child.ts");

/** A fresh temporary directory per test, removed (with everything in it) by `cleanup()`. */
export function tempDirs(prefix = "spotkeep-store-") {
  const made: string[] = [];
  return {
    make(): string {
      const d = mkdtempSync(join(tmpdir(), prefix));
      made.push(d);
      return d;
    },
    cleanup(): void {
      for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
    },
  };
}

export type ChildArgs = { mode: "hold-lock" | "write"; dir: string; rows?: number; checkpointAfter?: number };

/** Run test/store/store-child.ts and wait for its ready line; `kill()` SIGKILLs it and waits for the exit. */
export async function startChild(args: ChildArgs): Promise<{ pid: number; child: ChildProcess; kill(): Promise<void> }> {
  const child = spawn(process.execPath, ["--import", "tsx", CHILD, JSON.stringify(args)], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const ready = await new Promise<{ pid: number }>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d;
      if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!) as { pid: number });
    });
    child.once("exit", (code) => reject(new Error(`store child exited ${code} before ready: ${err}`)));
  });
  return {
    pid: ready.pid,
    child,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}
