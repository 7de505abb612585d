import type { Reporter, TestModule } from "vitest/node";

/** How many of the slowest test files the summary names. */
const SLOWEST = 12;

/**
 * After vitest's own summary: the slowest test files with their time (where the suite's time goes,
 * in every CI log), then one plain closing line, `tests: N passed, N failed, N skipped`, that any CI
 * log reader understands.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const durations: Array<{ file: string; ms: number; project: string }> = [];
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
      if (mod.state() === "failed" && mod.children.size === 0) failed++;
      durations.push({ file: mod.relativeModuleId, ms: mod.diagnostic().duration, project: mod.project.name });
    }
    durations.sort((a, b) => b.ms - a.ms);
    const lines = durations
      .slice(0, SLOWEST)
      .map((d) => `  ${(d.ms / 1000).toFixed(1).padStart(7)} s  ${d.project ? `[${d.project}] ` : ""}${d.file}`);
    if (lines.length > 0) process.stdout.write(`\nslowest test files:\n${lines.join("\n")}\n`);
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
