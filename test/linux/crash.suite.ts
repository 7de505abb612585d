import { execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createLinuxRuntime } from "../../localcloud/runtime/linux/index.js";
import { leftovers, NOTHING, spawnReadyChild } from "./leftovers.js";

function sleepersAlive(): number[] {
  try {
    return execFileSync("pgrep", ["-f", "^sleep 100[12]$"], { encoding: "utf8" }).split("\n").filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Registers the suite; `skip` is why it cannot run here (null: run). */
export function crashSuite(skip: string | null): void {
  describe.skipIf(skip !== null)("linux runtime after a SIGKILL", () => {
    const dirs: string[] = [];
    let child: ChildProcess | undefined;

    afterAll(async () => {
      if (child?.pid && child.exitCode === null && child.signalCode === null)
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          /* gone */
        }
      // Whatever happened above, leave the host clean.
      const rt = createLinuxRuntime({ stateDir: dirs[1] ?? mkdtempSync(join(tmpdir(), "spotkeep-lc-crash-")), lockWaitMs: 120_000 });
      await rt.cleanup();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }, 150_000);

    it("the next runtime's init() removes a killed runtime's processes, frozen mounts, loop devices, namespaces and links", async () => {
      const crashedDir = mkdtempSync(join(tmpdir(), "spotkeep-lc-crashed-"));
      dirs.push(crashedDir);
      const started = spawnReadyChild<{ loop: string; instanceId: string }>(
        join(import.meta.dirname, "crash-child.ts"),
        crashedDir,
        "crash child",
      );
      child = started.child;
      const ready = await started.ready;
      const before = leftovers([crashedDir]);
      expect(before.netns).toContain(`sk-${ready.instanceId}`);
      expect(before.loops.length).toBe(2); // root + data
      expect(sleepersAlive().length).toBe(2);

      process.kill(-child.pid!, "SIGKILL"); // the runtime dies; the instance's processes live on in their own groups
      await new Promise((r) => child!.once("exit", r));

      const freshDir = mkdtempSync(join(tmpdir(), "spotkeep-lc-fresh-"));
      dirs.push(freshDir);
      // A different state dir: the leftovers are found through the host registry, not by path.
      const rt = createLinuxRuntime({ stateDir: freshDir, lockWaitMs: 120_000 });
      await rt.init();
      expect(leftovers([crashedDir])).toEqual({ ...NOTHING, links: expect.any(Array) });
      expect(leftovers([crashedDir]).links.filter((l) => l.startsWith("skv"))).toEqual([]);
      expect(sleepersAlive()).toEqual([]);
      await rt.cleanup();
      expect(leftovers([crashedDir, freshDir])).toEqual(NOTHING);
    }, 150_000);
  });
}
