/**
 * `spotkeep coordinator` that SIGKILLs itself right after step N of a KIND workflow is recorded, for
 * the crash tests, run as a child process:
 *
 *   node test-output/build/dist/cli/crashing-coordinator.mjs KIND N[+] [STEP] [spotkeep coordinator flags…]
 *
 * With STEP (test/support/crash-matrix.ts), step N must be recorded under that name: when it is
 * not, the process exits 3 naming both instead of crashing. With N+ it SIGKILLs itself after the
 * first step it records at N or later (a step that runs beside others may already have been recorded
 * by an earlier process, test/support/crash-chain.ts); STEP is then checked when that step is N.
 *
 * (built from this file by crashingCoordinator() in test/cli/built.ts; `node --import tsx` runs it from the sources)
 *
 * The flags and the config are the product command's own (`runCoordinator`, cli/commands/coordinator.ts);
 * the crash is the one thing added, through the coordinator's instrumentation hooks. Before the kill
 * it logs "crash hook: killing myself after KIND step N (NAME)" on stderr, which the tests look for.
 */
import { UsageError } from "../../cli/args.js";
import { runCoordinator } from "../../cli/commands/coordinator.js";

const [kind, n, ...rest] = process.argv.slice(2);
// An optional third argument (not a flag) is the step's name the crash matrix expects at N.
const expected = rest[0] !== undefined && !rest[0].startsWith("--") ? rest[0] : undefined;
const flags = expected === undefined ? rest : rest.slice(1);
const orLater = n?.endsWith("+") === true;
const seq = Number(orLater ? n?.slice(0, -1) : n);
if (!kind || !Number.isInteger(seq) || seq < 1) {
  process.stderr.write(
    `usage: crashing-coordinator.ts KIND N[+] [STEP] [coordinator flags…] (N a positive integer, got ${JSON.stringify(n)})\n`,
  );
  process.exit(2);
}

try {
  process.exitCode = await runCoordinator(flags, {
    afterStep: (wf, s, name, alsoRecording) => {
      if (wf.kind !== kind || (orLater ? s < seq : s !== seq)) return;
      if (expected !== undefined && s === seq && name !== expected) {
        // The runbook no longer records the step the matrix names here: crashing elsewhere would prove nothing.
        process.stderr.write(`crash hook: ${wf.kind} step ${s} is "${name}", the crash matrix expects "${expected}": not crashing\n`);
        process.exit(3);
      }
      // stderr is a pipe: the write is synchronous, so the line is out before the kill.
      // Steps run beside this one may be recorded too by now: the log names them (the crash chain counts them as passed).
      const also = alsoRecording.length > 0 ? `; also recording step(s) ${alsoRecording.join(",")}` : "";
      process.stderr.write(`${new Date().toISOString()} crash hook: killing myself after ${wf.kind} step ${s} (${name})${also}\n`);
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
