/**
 * The TTL sweep of resources a delete kept: every kept resource whose expiry has passed is deleted.
 * Crash-safe and idempotent: the store is marked first (sweep started), then EC2 deletes it (a
 * resource already gone counts as deleted), then the store marks it gone; a pass interrupted
 * anywhere is finished by the next one. Images go before snapshots (EC2 refuses to delete a
 * snapshot a registered image still uses), and volumes and ENIs still attached to something are
 * left for a later pass with an event saying why.
 */
import { isNotFound } from "./cloud/errors.js";
import type { Ec2Gateway } from "./cloud/gateway.js";
import type { KeptKind, KeptResource, Store } from "./db/store.js";
import type { ScaledClock } from "./time.js";

export interface KeptSweepDeps {
  store: Store;
  ec2: Pick<
    Ec2Gateway,
    "deregisterImage" | "deleteSnapshot" | "describeVolume" | "deleteVolume" | "describeNetworkInterface" | "deleteNetworkInterface"
  >;
  clock: Pick<ScaledClock, "now">;
  metrics?: { keptExpired: { inc(labels: { kind: string }): void } };
  log: (line: string) => void;
}

const ORDER: readonly KeptKind[] = ["image", "volume", "network-interface", "snapshot"];

/** Delete every expired kept resource; returns the ids deleted in this pass. */
export async function sweepExpiredKept(d: KeptSweepDeps): Promise<string[]> {
  const due = await d.store.deletions.due(d.clock.now());
  if (due.length === 0) return [];
  const sorted = [...due].sort((a, b) => ORDER.indexOf(a.kind) - ORDER.indexOf(b.kind));
  const done: string[] = [];
  for (const k of sorted) {
    try {
      await d.store.deletions.markSweeping(k.resourceId);
      const outcome = await deleteKept(d.ec2, k);
      if (outcome !== "deleted") {
        // Said once, at the first pass that could not delete it.
        if (k.sweepStartedAt === null)
          await d.store.events.add(k.instance, "kept-expiry-deferred", `${k.kind} ${k.resourceId} expired but ${outcome}; retrying later`);
        continue;
      }
      await d.store.deletions.markGone(k.resourceId);
      await d.store.events.add(
        k.instance,
        "kept-expired",
        `deleted kept ${k.kind} ${k.resourceId} (expired ${new Date(k.expiresAt ?? 0).toISOString()})`,
        k.workflowId,
      );
      d.metrics?.keptExpired.inc({ kind: k.kind });
      done.push(k.resourceId);
    } catch (err) {
      d.log(`kept-resource sweep: deleting ${k.kind} ${k.resourceId}: ${(err as Error).message}`);
    }
  }
  return done;
}

/** "deleted" (or already gone), or why it cannot be deleted yet. */
async function deleteKept(ec2: KeptSweepDeps["ec2"], k: KeptResource): Promise<"deleted" | string> {
  switch (k.kind) {
    case "image":
      await ec2.deregisterImage(k.resourceId);
      return "deleted";
    case "snapshot":
      await ec2.deleteSnapshot(k.resourceId);
      return "deleted";
    case "volume": {
      const v = await ec2.describeVolume(k.resourceId);
      if (v && v.attachments.length > 0) return `it is attached to ${v.attachments.map((a) => a.instanceId).join(", ")}`;
      await ec2.deleteVolume(k.resourceId);
      return "deleted";
    }
    case "network-interface": {
      const e = await ec2.describeNetworkInterface(k.resourceId);
      if (e?.attachedTo) return `it is attached to ${e.attachedTo}`;
      try {
        await ec2.deleteNetworkInterface(k.resourceId);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      return "deleted";
    }
  }
}
