/**
 * The crash suites' one scaffold: a runbook killed at every step boundary in ONE run of it.
 *
 * A chain starts the coordinator armed to SIGKILL itself right after the first step of the runbook
 * it records (test/coordinator/crashing-coordinator.ts), lets the test start the workflow, waits
 * for the kill, starts the coordinator again on the same store armed the same way, and so on until
 * every step of the matrix (test/support/crash-matrix.ts) has been recorded by a coordinator that
 * was then killed; the last start is not armed, and the runbook must reach its end from there. So
 * every step of the runbook runs in a coordinator that has just recovered from a SIGKILL, and each
 * recovery starts from the store another recovery left: the workflow must survive a kill at each
 * boundary, and at all of them in turn. What the test asserts at the end (one identity, no orphan,
 * no duplicate launch, the data intact) holds for every kill at once.
 *
 * Steps that run side by side (the image beside the wait for the old instance's end) are recorded
 * in either order, and a replayed step is not recorded again: arming each coordinator for the
 * first step it records itself gives every step its own kill whatever the order. Two such steps
 * can finish together: the hook of the first then runs while the other's result is on its way to
 * the store too (the crashing coordinator names it, "also recording"), and the kill counts for
 * both (were the other not written after all, the next coordinator runs it again). A step recorded
 * under another name than the matrix gives at its number, or at a number the matrix does not
 * have, fails the chain. With SPOTKEEP_CRASH_STEPS (a subset of the matrix) each coordinator is
 * armed for the next listed step number or later instead.
 *
 * One chain per runbook instead of one run per step: a run per step repeats the whole setup (an
 * instance created and booted, its workload writing) and three coordinator starts for every step,
 * where a chain pays one setup and one coordinator start per step.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { CoordinatorChild, CrashAt } from "../coordinator/coordinator-process.js";
import { type Budget, explain } from "./budgets.js";
import type { CrashCase } from "./crash-matrix.js";

export interface Chain<C extends CoordinatorChild> {
  /** Every case of one runbook's matrix (one workflow kind), or the subset SPOTKEEP_CRASH_STEPS lists. */
  cases: readonly CrashCase[];
  /**
   * Starts the chain's coordinator on its store, armed with `crash` (or not, the last start);
   * `first` is the chain's first start (on an empty store).
   */
  start(crash: CrashAt | undefined, first: boolean): Promise<C>;
  /**
   * What comes before the workflow and what starts it, with the first (armed) coordinator up: create
   * the instance, wait for its records, pause it... then trigger the runbook under test.
   */
  begin(first: C): Promise<void>;
  /** How long one armed coordinator may take from its start to its kill (at most the whole runbook). */
  eachKill: Budget;
  /** Every coordinator the chain started, in order (for the case's evidence). */
  runs: C[];
}

/**
 * Runs the chain; answers the last coordinator (not armed), running, with the workflow on its way
 * to its end. Throws when an armed coordinator exits any other way than its own SIGKILL (exit 3: the
 * step recorded at n has another name than the matrix's) or does not crash within `eachKill`.
 */
export async function crashAtEveryStep<C extends CoordinatorChild>(chain: Chain<C>): Promise<C> {
  const { cases, runs } = chain;
  if (cases.length === 0) throw new Error("crashAtEveryStep: no step to crash at");
  const kinds = new Set(cases.map((c) => c.kind));
  if (kinds.size !== 1) throw new Error(`crashAtEveryStep: one workflow kind per chain, got ${[...kinds].join(", ")}`);
  const kind = cases[0]!.kind;
  const named = new Map(cases.map((c) => [c.n, c.step]));
  const whole = cases.every((c, i) => c.n === i + 1);
  const killed = new Set<number>();
  for (let i = 0; killed.size < cases.length; i++) {
    const armed: CrashAt = whole ? { kind, n: 1, orLater: true } : { ...cases.find((c) => !killed.has(c.n))!, orLater: true };
    const current = await chain.start(armed, i === 0);
    runs.push(current);
    if (i === 0) await chain.begin(current);
    const how = await Promise.race([current.exited, sleep(chain.eachKill.ms, "no crash" as const)]);
    const log = current.log.join("");
    const at = new RegExp(
      `crash hook: killing myself after ${kind} step (\\d+) \\((.*?)\\)(?:; also recording step\\(s\\) ([\\d,]+))?\n`,
    ).exec(log);
    if (how === "no crash" || how.signal !== "SIGKILL" || !at) {
      if (how === "no crash") current.child.kill("SIGKILL");
      const left = cases.filter((c) => !killed.has(c.n)).map((c) => `${c.n} (${c.step})`);
      throw new Error(
        `the coordinator armed for the next ${kind} step did not crash after one ` +
          `(${how === "no crash" ? `still running after ${explain(chain.eachKill)}` : JSON.stringify(how)}); ` +
          `steps not crashed after yet: ${left.join(", ")}:\n${log.slice(-4000)}`,
      );
    }
    const [seq, name] = [Number(at[1]), at[2]];
    if (whole && !named.has(seq)) throw new Error(`${kind} recorded step ${seq} (${name}), which the crash matrix does not list`);
    if (named.has(seq) && named.get(seq) !== name)
      throw new Error(`${kind} step ${seq} was recorded as "${name}", the crash matrix names it "${named.get(seq)}"`);
    const also = at[3]?.split(",").map(Number) ?? [];
    // With a subset, the listed steps before the one killed after were recorded without a kill.
    for (const c of cases) if (c.n === seq || also.includes(c.n) || (!whole && c.n < seq)) killed.add(c.n);
  }
  const last = await chain.start(undefined, false);
  runs.push(last);
  return last;
}
