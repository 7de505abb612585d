/**
 * `npm run demo` is the README's main command: it must verify end to end, print one JSON object
 * with --json, and leave nothing behind, also when interrupted with Ctrl-C.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CLI as cli, ensureBuilt } from "./cli/built.js";

beforeAll(() => ensureBuilt());

function runDemo(args: string[]) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [cli, "demo", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => {
      stderr += d;
    });
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** Processes started by a localcloud process runtime whose state dir lies under `dir`. */
function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/environ`, "utf8").includes(`SPOTKEEP_LOCALCLOUD_RUNTIME=${dir}`)) pids.push(Number(p));
    } catch {
      /* gone or not ours */
    }
  }
  return pids;
}

describe("spotkeep demo", () => {
  it("--json verifies the recovery on a stock image (no Node.js): same IP, ENI and volume, no lost write, the runtime downloaded once", async () => {
    const r = await runDemo(["--json", "--time-scale", "0.05"]);
    expect(r.stderr).toMatch(/demo verified/);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(1);
    const result = JSON.parse(lines[0]!);
    expect(result).toMatchObject({
      recovered: true,
      samePrivateIp: true,
      sameEni: true,
      sameDataVolume: true,
      sameRootDisk: true,
      // The first generation's bootstrap downloaded the coordinator's runtime; the replacement, on
      // a root made from that root, used the copy it carries.
      agentRuntime: { downloadedAtFirstBoot: true, keptByReplacement: true },
      lostWrites: 0,
    });
    expect(result.acknowledgedWrites).toBeGreaterThan(0);
    expect(result.downtimeSeconds).toBeGreaterThan(0);
    expect(result.recoverySeconds).toBeGreaterThanOrEqual(result.downtimeSeconds);
    expect(result.criticalPathSeconds).toBeGreaterThan(0);
    expect(result.timeline.steps.length).toBeGreaterThan(3);
  }, 240_000);

  it("Ctrl-C stops it and removes its processes and temp files", async () => {
    let dir: string | undefined;
    let sent = false;
    // Interrupted once the instance is up (the temp dir is parsed from the progress lines).
    const r2 = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [cli, "demo", "--time-scale", "0.05"], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
        dir ??= /SQLite store in (\S+)\/coordinator/.exec(out)?.[1];
        if (!sent && /is running on i-/.test(out)) {
          sent = true;
          child.kill("SIGINT");
        }
      });
      child.stderr.on("data", (d) => (out += d));
      child.on("close", (code) => resolve({ code, out }));
    });
    expect(sent).toBe(true);
    expect(r2.code).toBe(130);
    expect(r2.out).toMatch(/SIGINT: stopping the demo and cleaning up/);
    expect(dir).toBeDefined();
    expect(existsSync(dir!)).toBe(false);
    expect(processesUnder(join(dir!, "localcloud"))).toEqual([]);
  }, 240_000);
});
