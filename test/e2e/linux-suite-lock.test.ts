/** The host-wide lock that runs linux-runtime test files one at a time (temp lock file, no root). */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { holdLinuxSuiteLock } from "./linux-suite-lock.js";

describe("the linux-suite lock", () => {
  it("is taken over from a dead holder, free again after release, and waited for (boundedly) while a live process holds it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "spotkeep-suitelock-"));
    const file = join(dir, "lock");
    try {
      // A holder whose pid does not exist (start time cannot match): stale, taken over.
      writeFileSync(file, JSON.stringify({ pid: 2 ** 22 + 12345, startTime: "1", what: "crashed run" }));
      const release = await holdLinuxSuiteLock("first", 1000, file);
      const held = JSON.parse(readFileSync(file, "utf8")) as { pid: number };
      expect(held.pid).toBe(process.pid);
      release();
      const again = await holdLinuxSuiteLock("second", 1000, file);
      again();
      // A live holder (our parent process, with its real start time) is waited for, boundedly.
      const stat = readFileSync(`/proc/${process.ppid}/stat`, "utf8");
      writeFileSync(
        file,
        JSON.stringify({ pid: process.ppid, startTime: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19], what: "another run" }),
      );
      await expect(holdLinuxSuiteLock("third", 300, file)).rejects.toThrow(/still held by pid \d+ \(another run\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
