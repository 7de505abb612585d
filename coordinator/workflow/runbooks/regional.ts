/**
 * Runbooks that run against the AWS clients of their instance's (or group's) region. A runbook is
 * made once per region from deps whose `ec2`/`elb` are that region's, and each workflow runs the
 * one of the region its instance is in; the region of a stored spec changes only by a relocate,
 * which runs in the region it moves to (its input names it), so a workflow resumed after a restart
 * finds the same region.
 */
import type { Runbook, WorkflowContext } from "../engine.js";

export function regionalRunbook<D, I>(
  regionOf: (ctx: WorkflowContext, input: I) => Promise<string>,
  depsIn: (region: string) => D,
  make: (deps: D) => Runbook<I>,
): Runbook<I> {
  const made = new Map<string, Runbook<I>>();
  return async (ctx, input) => {
    const region = await regionOf(ctx, input);
    let runbook = made.get(region);
    if (!runbook) {
      runbook = make(depsIn(region));
      made.set(region, runbook);
    }
    return runbook(ctx, input);
  };
}
