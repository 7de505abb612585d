/**
 * `spotkeep coordinator` that SIGKILLs itself right after step N of a KIND workflow is recorded, for
 * the crash tests, run as a child process:
 *
 *   node test-output/build/dist/cli/crashing-coordinator.mjs KIND N [spotkeep coordinator flags…]
 *
 * (built from this file by crashingCoordinator() in test/cli/built.ts; `node --import tsx` runs it from the sources)
 *
 * The flags and the config are the product command's own (`runCoordinator`, cli/commands/coordinator.ts);
 * the crash is the one thing added, through the coordinator's instrumentation hooks. Before the kill
 * it logs "crash hook: killing myself after KIND step N (NAME)" on stderr, which the tests look for.
 */
import { UsageError } from "../../cli/args.js";
import { runCoordinator } from "../../cli/commands/coordinator.js";

const [kind, n, ...flags] = process.argv.slice(2);
const seq = Number(n);
if (!kind || !Number.isInteger(seq) || seq < 1) {
  process.stderr.write(`usage: crashing-coordinator.ts KIND N [coordinator flags…] (N a positive integer, got ${JSON.stringify(n)})\n`);
  process.exit(2);
}

try {
  process.exitCode = await runCoordinator(flags, {
    afterStep: (wf, s, name) => {
      if (wf.kind !== kind || s !== seq) return;
      // stderr is a pipe: the write is synchronous, so the line is out before the kill.
      process.stderr.write(`${new Date().toISOString()} crash hook: killing myself after ${wf.kind} step ${s} (${name})\n`);
      process.kill(process.pid, "SIGKILL");
    },
  });
} catch (err) {
  const usage = err instanceof UsageError;
  process.stderr.write(
    `spotkeep coordinator: ${(err as Error)?.message ?? String(err)}${usage ? " (see spotkeep coordinator --help)" : ""}\n`,
  );
  process.exitCode = usage ? 2 : 1;
}
