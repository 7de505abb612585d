/**
 * The TTL sweep of resources a delete kept: every kept resource whose expiry has passed is deleted,
 * but only while the deleted instance still owns it and nothing else claims it. Ownership is the
 * store's: a resource another stateful instance adopted (import with adoptKept) is not due at all,
 * and one the store records for any instance that is not deleted (a data volume, ENI, root image,
 * snapshot) is left alone. Right before each delete, EC2 is asked again: a volume or ENI attached
 * anywhere, or any resource tagged to another owner (`spotkeep:instance`), is left for a later
 * pass with an event saying why.
 * Crash-safe and idempotent: the store is marked first (sweep started), then EC2 deletes it (a
 * resource already gone counts as deleted), then the store marks it gone; a pass interrupted
 * anywhere is finished by the next one. Images go before snapshots (EC2 refuses to delete a
 * snapshot a registered image still uses, and such a refusal is a deferral too).
 */
import type { Regions } from "./cloud/regions.js";
import { errorCode, isNotFound } from "./cloud/errors.js";
import { type Ec2Gateway, TAG } from "./cloud/gateway.js";
import type { KeptKind, KeptResource, Store } from "./db/store.js";
import type { ScaledClock } from "../shared/clock.js";

export interface KeptSweepDeps {
  store: Store;
  ec2: Pick<
    Ec2Gateway,
    | "deregisterImage"
    | "deleteSnapshot"
    | "describeVolume"
    | "deleteVolume"
    | "describeNetworkInterface"
    | "deleteNetworkInterface"
    | "describeImage"
    | "describeSnapshot"
  >;
  clock: Pick<ScaledClock, "now">;
  /** The regions managed: a kept resource is deleted in the region of the instance that kept it. */
  regions?: Regions;
  metrics?: { keptExpired: { inc(labels: { kind: string }): void } };
  log: (line: string) => void;
}

const ORDER: readonly KeptKind[] = ["image", "volume", "network-interface", "snapshot"];

/** The gateway of the region the (deleted, archived) instance that kept `k` ran in. */
async function keptGateway(d: KeptSweepDeps, k: KeptResource): Promise<KeptSweepDeps["ec2"]> {
  if (!d.regions) return d.ec2;
  return d.regions.ec2(d.regions.of((await d.store.instances.get(k.instance))?.spec));
}

/** Delete every expired kept resource; returns the ids deleted in this pass. */
export async function sweepExpiredKept(d: KeptSweepDeps): Promise<string[]> {
  const due = await d.store.deletions.due(d.clock.now());
  if (due.length === 0) return [];
  const sorted = [...due].sort((a, b) => ORDER.indexOf(a.kind) - ORDER.indexOf(b.kind));
  const done: string[] = [];
  for (const k of sorted) {
    try {
      const others = (await d.store.deletions.claims(k.resourceId)).filter((c) => c.instance !== k.instance);
      const outcome = others.length
        ? `the store records it for ${others.map((c) => `stateful instance ${c.instance} (${c.as})`).join(", ")}`
        : await deleteKept(await keptGateway(d, k), k, () => d.store.deletions.markSweeping(k.resourceId));
      if (outcome !== "deleted") {
        // Said once per reason (the reason is in the message), at the first pass it applies to.
        const message = `${k.kind} ${k.resourceId} expired but ${outcome}; not deleted, retrying later`;
        if (!(await d.store.events.list(k.instance, 500)).some((e) => e.kind === "kept-expiry-deferred" && e.message === message))
          await d.store.events.add(k.instance, "kept-expiry-deferred", message);
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

/** The stateful instance's name a kept resource's tag should carry: the deleted instance's own (`NAME~<deletedAt>` archived). */
function ownerName(k: KeptResource): string {
  return k.instance.split("~")[0] ?? k.instance;
}

/** Why EC2 says another owner has it (a spotkeep:instance tag naming someone else), or null. */
function taggedElsewhere(k: KeptResource, tags: Record<string, string> | undefined): string | null {
  const owner = tags?.[TAG.instance];
  return owner !== undefined && owner !== ownerName(k) ? `it is tagged ${TAG.instance}=${owner}` : null;
}

/** "deleted" (or already gone), or why it cannot be deleted yet. `mark` runs right before the delete call. */
async function deleteKept(ec2: KeptSweepDeps["ec2"], k: KeptResource, mark: () => Promise<void>): Promise<"deleted" | string> {
  switch (k.kind) {
    case "image": {
      const i = await ec2.describeImage(k.resourceId);
      const other = taggedElsewhere(k, i?.tags);
      if (other) return other;
      await mark();
      await ec2.deregisterImage(k.resourceId);
      return "deleted";
    }
    case "snapshot": {
      const sn = await ec2.describeSnapshot(k.resourceId);
      const other = taggedElsewhere(k, sn?.tags);
      if (other) return other;
      await mark();
      try {
        await ec2.deleteSnapshot(k.resourceId);
      } catch (err) {
        if (errorCode(err) === "InvalidSnapshot.InUse") return "a registered image uses it";
        throw err;
      }
      return "deleted";
    }
    case "volume": {
      const v = await ec2.describeVolume(k.resourceId);
      if (v && v.attachments.length > 0) return `it is attached to ${v.attachments.map((a) => a.instanceId).join(", ")}`;
      const other = taggedElsewhere(k, v?.tags);
      if (other) return other;
      await mark();
      await ec2.deleteVolume(k.resourceId);
      return "deleted";
    }
    case "network-interface": {
      const e = await ec2.describeNetworkInterface(k.resourceId);
      if (e?.attachedTo) return `it is attached to ${e.attachedTo}`;
      const other = taggedElsewhere(k, e?.tags);
      if (other) return other;
      await mark();
      try {
        await ec2.deleteNetworkInterface(k.resourceId);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      return "deleted";
    }
  }
}
