/**
 * The one decision path for notices, whichever source brings them: the instance's agent (after
 * EC2 confirms) or the EventBridge queue (AWS's own word). Starting a replacement is
 * check-and-start in one store transaction (`Operations.startReplace`), so the agent's notice and
 * the queue's event for the same interruption start one workflow, whichever arrives first. Each
 * source's first arrival per (EC2 instance, notice kind) is recorded, and the timeline says which
 * came first and by how much.
 */
import type { NoticeSource, Store } from "../db/store.js";
import type { Operations } from "../operations.js";
import type { ScaledClock } from "../../shared/clock.js";
import { MAX_NOTICE_MS, type ReplaceInput } from "../workflow/runbooks/replace.js";

export interface NoticeDecisionDeps {
  store: Store;
  operations: Operations;
  clock: ScaledClock;
  log: (line: string) => void;
}

const SOURCE_NAME: Record<NoticeSource, string> = { agent: "the agent", queue: "the EventBridge queue" };

export class NoticeDecisions {
  constructor(private readonly d: NoticeDecisionDeps) {}

  /**
   * Record that `source` reported a `kind` notice for `ec2InstanceId`; each source's first report
   * goes on the timeline with its delay. True when no source reported it before (the one to act on
   * for notices whose action is not itself check-and-start, such as a rebalance recommendation).
   */
  async arrival(source: NoticeSource, name: string, ec2InstanceId: string, kind: string): Promise<boolean> {
    const { store } = this.d;
    if (!(await store.noticeArrivals.record(ec2InstanceId, kind, source))) return false;
    const all = await store.noticeArrivals.list(ec2InstanceId, kind);
    const mine = all.find((a) => a.source === source);
    const other = all.find((a) => a.source !== source);
    if (!mine) return false;
    if (!other) {
      await store.events.add(name, "notice-arrival", `${kind} notice for ${ec2InstanceId} arrived first from ${SOURCE_NAME[source]}`);
      return true;
    }
    const seconds = (Math.abs(mine.at - other.at) / this.d.clock.timeScale / 1000).toFixed(2);
    const order = mine.at >= other.at ? "after" : "before";
    await store.events.add(
      name,
      "notice-arrival",
      `${kind} notice for ${ec2InstanceId} arrived from ${SOURCE_NAME[source]} ${seconds} s ${order} ${SOURCE_NAME[other.source]}`,
    );
    return false;
  }

  /**
   * Start the replacement of a confirmed spot interruption (a no-op when one already runs or the
   * instance is not the live generation). Returns the workflow started, if any.
   */
  async spotInterruption(input: ReplaceInput, why: string): Promise<string | null> {
    const started = await this.d.operations.startReplace(input, why);
    if (started) return started;
    // A pause or recycle already in flight is taking the instance off EC2 itself: it quiesces and
    // captures before terminating, and the notice window only bounds how long that may take. (A
    // replacement already running is the same interruption, from the other source.)
    const running = (await this.d.store.workflows.runningFor(input.name)).find((w) => w.kind !== "snapshot" && w.kind !== "replace");
    if (running)
      await this.d.store.events.add(
        input.name,
        "notice-during-workflow",
        `spot interruption of ${input.instanceId} while ${running.kind} ${running.id} runs: that workflow already moves the instance off it`,
        running.id,
      );
    return null;
  }

  /** A rebalance recommendation: what the spec's `onRebalance` asks for. */
  async rebalance(name: string): Promise<void> {
    const inst = await this.d.store.instances.get(name);
    if (inst?.spec.onRebalance === "snapshot") await this.d.operations.startSnapshot(name, "rebalance recommendation");
    if (inst?.spec.onRebalance === "recycle") {
      // Move before EC2 takes the instance: a planned recycle, unless something already moves it.
      try {
        await this.d.operations.run(name, "recycle", "rebalance recommendation");
      } catch (err) {
        await this.d.store.events.add(name, "rebalance", `rebalance recommendation: no recycle started (${(err as Error).message})`);
      }
    }
  }

  /** A deadline in the future by at most EC2's two-minute notice (wall clock, ISO); `latestWall` bounds it further. */
  clampDeadline(deadline: string | undefined, latestWall = Number.POSITIVE_INFINITY): string {
    const latest = Math.min(this.d.clock.wallAfter(MAX_NOTICE_MS), latestWall);
    const claimed = deadline ? Date.parse(deadline) : Number.NaN;
    return new Date(Number.isFinite(claimed) ? Math.min(claimed, latest) : latest).toISOString();
  }
}
