import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { evidenceDigest, writeEvidence } from "./evidence.js";

describe("failure evidence", () => {
  it("writes each collector, a failing collector says so without hiding the others, and the digest is the timelines' end", async () => {
    const timeline = Array.from({ length: 100 }, (_, i) => `step ${i}`).join("\n");
    const { dir, texts } = await writeEvidence(import.meta.filename, "a case: with odd/characters", {
      "coordinator.log": "started\n",
      "db-1-timeline.txt": () => Promise.resolve(timeline),
      "broken.json": () => {
        throw new Error("the coordinator is gone");
      },
    });
    try {
      expect(dir).toMatch(/test-output\/evidence\/a-case-with-odd-characters$/);
      expect(readFileSync(join(dir, "coordinator.log"), "utf8")).toBe("started\n");
      expect(readFileSync(join(dir, "broken.json"), "utf8")).toBe("(could not collect: the coordinator is gone)\n");
      const digest = evidenceDigest(texts);
      expect(digest.split("\n")[0]).toBe("--- db-1-timeline.txt (its end):");
      expect(digest).toMatch(/\nstep 60\n[\s\S]*\nstep 99$/);
      expect(digest).not.toMatch(/step 59\n|started|could not collect/);
      expect(evidenceDigest({ "coordinator.log": "x" })).toBe("");
      expect(evidenceDigest({ "timeline.txt": "x".repeat(10_000) }).length).toBeLessThan(6100);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(existsSync(dir)).toBe(false);
  });
});
