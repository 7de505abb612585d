/**
 * Step bodies more than one runbook uses. Each function is ONE step's work, safe to run again
 * (EC2 mutations are idempotent or tag-then-find), and takes everything it needs as arguments:
 * the runbook passes values from its input or from recorded step results.
 */
import { instanceWorkflowKind, moveState } from "../../lifecycle.js";
import type { CommandBody } from "../../agents/hub.js";
import { isNotFound } from "../../cloud/errors.js";
import { TAG, type Tags, type VolumeInfo } from "../../cloud/gateway.js";
import { STEP } from "../../../shared/steps.js";
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { ONCE, type WorkflowContext } from "../engine.js";
import { Failure } from "../failure.js";
import { agentReportWake, type RunbookDeps, waitUntil } from "./deps.js";
import { leaveTargetGroups } from "./targets.js";

/** The tags every resource a step creates carries, so a re-run can find what an earlier attempt made. */
export function resourceTags(ctx: WorkflowContext, name: string, step: string, extra: Tags = {}): Tags {
  return { [TAG.managed]: "true", [TAG.instance]: name, [TAG.workflow]: ctx.workflowId, [TAG.step]: step, ...extra };
}

/** A snapshot taken of a data volume, as recorded by the step that took it. */
export interface TakenSnapshot {
  device: string;
  snapshotId: string;
}

/** CreateSnapshot of one data volume (point in time when the call returns); recorded as an artifact. */
export async function snapshotDataVolume(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { name: string; device: string; volumeId: string; generation: number; why: string; step: string; userTags: Tags },
): Promise<TakenSnapshot> {
  const snap = await deps.ec2.createSnapshot(o.volumeId, `spotkeep ${o.name} ${o.device} (${o.why})`, {
    ...o.userTags,
    ...resourceTags(ctx, o.name, o.step, { [TAG.device]: o.device }),
  });
  await deps.store.artifacts.record({
    id: snap.snapshotId,
    instance: o.name,
    kind: "data-snapshot",
    device: o.device,
    sourceId: o.volumeId,
    generation: o.generation,
  });
  return { device: o.device, snapshotId: snap.snapshotId };
}

/** Wait until every snapshot is completed; only then does each become the one a restore would use. */
export async function waitForSnapshots(deps: RunbookDeps, ctx: WorkflowContext, name: string, snaps: TakenSnapshot[]): Promise<true> {
  for (const s of snaps) {
    await waitUntil(
      deps.clock,
      `snapshot ${s.snapshotId} of ${s.device} to complete`,
      async () => {
        const info = await deps.ec2.describeSnapshot(s.snapshotId);
        if (!info || info.state === "error")
          throw new Failure("resource-lost", `snapshot ${s.snapshotId} of ${s.device} failed or disappeared`);
        return info.state === "completed" ? true : null;
      },
      { intervalMs: deps.pollMs, timeoutMs: 60 * 60_000, signal: ctx.signal },
    );
    await deps.store.volumes.setLatestSnapshot(name, s.device, s.snapshotId);
  }
  return true;
}

/**
 * Send a command to an agent and wait for its report (`kind`, with `ref` = the command id) for at
 * most `budgetMs` of model time. Returns null when the agent did not answer in time: the caller
 * goes on crash-consistently and says so on the timeline.
 */
export async function askAgent<R>(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { instanceId: string; command: CommandBody; commandId: string; reportKind: string; budgetMs: number },
): Promise<R | null> {
  deps.sendToAgent(o.instanceId, o.command, o.commandId);
  try {
    const report = await waitUntil(
      deps.clock,
      `${o.instanceId} to report ${o.reportKind}`,
      () => deps.store.agentReports.get(o.instanceId, o.reportKind, o.commandId),
      // Woken when the report is recorded; without a signal, poll often.
      {
        intervalMs: deps.onAgentReport ? deps.pollMs : Math.max(20, deps.pollMs / 10),
        timeoutMs: o.budgetMs,
        signal: ctx.signal,
        wake: agentReportWake(deps, o.instanceId),
      },
    );
    return report.data as R;
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    return null;
  }
}

/** CreateSnapshot of the root volume of `ec2InstanceId`; null (with an event) when the root is already gone. */
export async function snapshotRoot(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { name: string; ec2InstanceId: string; rootDeviceName: string; generation: number; fallbackImage: string; userTags: Tags },
): Promise<string | null> {
  const [inst] = await deps.ec2.describeInstances([o.ec2InstanceId]);
  const rootVolume = inst?.volumes.find((v) => v.deviceName === (inst.rootDeviceName ?? o.rootDeviceName))?.volumeId;
  if (!rootVolume) {
    await ctx.event("root-lost", `the root volume of ${o.ec2InstanceId} is gone; the replacement boots from ${o.fallbackImage}`);
    return null;
  }
  try {
    const snap = await deps.ec2.createSnapshot(rootVolume, `spotkeep ${o.name} root, generation ${o.generation}`, {
      ...o.userTags,
      ...resourceTags(ctx, o.name, "snapshot-root", { [TAG.generation]: String(o.generation) }),
    });
    await deps.store.artifacts.record({
      id: snap.snapshotId,
      instance: o.name,
      kind: "root-snapshot",
      device: o.rootDeviceName,
      sourceId: rootVolume,
      generation: o.generation,
    });
    return snap.snapshotId;
  } catch (err) {
    // The notice window ran out and EC2 deleted the root with the instance.
    if (!isNotFound(err)) throw err;
    await ctx.event(
      "root-lost",
      `the root volume ${rootVolume} of ${o.ec2InstanceId} was deleted before it could be captured; the replacement boots from ${o.fallbackImage}`,
    );
    return null;
  }
}

/** Wait for the root snapshot, register it as the next generation's image and wait until the image is available. */
export async function registerRootImage(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { name: string; rootSnapshotId: string; rootDeviceName: string; architecture: string; generation: number; userTags: Tags },
): Promise<string> {
  await waitUntil(
    deps.clock,
    `root snapshot ${o.rootSnapshotId} to complete`,
    async () => {
      const s = await deps.ec2.describeSnapshot(o.rootSnapshotId);
      if (!s) throw new Failure("resource-lost", `root snapshot ${o.rootSnapshotId} disappeared`);
      if (s.state === "error") throw new Failure("resource-lost", `root snapshot ${o.rootSnapshotId} failed`);
      return s.state === "completed" ? true : null;
    },
    { intervalMs: deps.pollMs, timeoutMs: 60 * 60_000, signal: ctx.signal },
  );
  const imageId = await deps.ec2.registerImage({
    name: `spotkeep-${o.name}-g${o.generation}-${ctx.workflowId.slice(-8)}`,
    rootSnapshotId: o.rootSnapshotId,
    rootDeviceName: o.rootDeviceName,
    architecture: o.architecture,
    description: `spotkeep root image of ${o.name} for generation ${o.generation}`,
    tags: { ...o.userTags, ...resourceTags(ctx, o.name, "image", { [TAG.generation]: String(o.generation) }) },
  });
  await deps.store.artifacts.record({
    id: imageId,
    instance: o.name,
    kind: "image",
    device: null,
    sourceId: o.rootSnapshotId,
    generation: o.generation,
  });
  await waitUntil(
    deps.clock,
    `image ${imageId} to become available`,
    async () => {
      const i = await deps.ec2.describeImage(imageId);
      if (i?.state === "failed") throw new Failure("resource-lost", `image ${imageId} failed`);
      return i?.state === "available" ? true : null;
    },
    { intervalMs: deps.pollMs, timeoutMs: 60 * 60_000, signal: ctx.signal },
  );
  await deps.store.root.set({
    instance: o.name,
    imageId,
    snapshotId: o.rootSnapshotId,
    rootDeviceName: o.rootDeviceName,
    architecture: o.architecture,
  });
  return imageId;
}

/**
 * Keep the newest `keep` images and data snapshots per device; never the current image or a
 * volume's latest snapshot (the only copy a restore would use). `oldVolumes`: volumes whose data
 * now lives in newer volumes (snapshot mode), deleted unless a data volume still points at them.
 */
export async function applyRetention(deps: RunbookDeps, o: { name: string; keep: number; oldVolumes?: string[] }): Promise<true> {
  const volumes = await deps.store.volumes.list(o.name);
  for (const v of o.oldVolumes ?? []) if (!volumes.some((x) => x.volumeId === v)) await deps.ec2.deleteVolume(v);
  const current = await deps.store.root.get(o.name);
  for (const img of (await deps.store.artifacts.list(o.name, "image")).slice(o.keep)) {
    if (img.id === current?.imageId) continue;
    await deps.ec2.deregisterImage(img.id);
    if (img.sourceId) await deps.ec2.deleteSnapshot(img.sourceId);
    await deps.store.artifacts.markDeleted(img.id);
    if (img.sourceId) await deps.store.artifacts.markDeleted(img.sourceId);
  }
  for (const v of volumes) {
    for (const s of (await deps.store.artifacts.list(o.name, "data-snapshot", v.device)).slice(o.keep)) {
      if (s.id === v.latestSnapshotId) continue;
      await deps.ec2.deleteSnapshot(s.id);
      await deps.store.artifacts.markDeleted(s.id);
    }
  }
  return true;
}

/**
 * The new generation serves: it becomes the live, current one (the previous one ended, if any)
 * and the instance `running`, in one transaction; the timeline says where it runs.
 */
export async function markServing(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: {
    name: string;
    generation: number;
    launched: { instanceId: string; market: string; instanceType: string; availabilityZone: string };
    previous?: { generation: number; endReason: string };
    how: string;
  },
): Promise<true> {
  await deps.store.tx(async (t) => {
    if (o.previous) await t.generations.end(o.name, o.previous.generation, o.previous.endReason);
    await t.generations.markLive(o.name, o.generation);
    await t.instances.setCurrentGeneration(o.name, o.generation);
    await moveState(t, instanceWorkflowKind(ctx.kind), o.name, "succeeded", null);
  });
  const l = o.launched;
  await ctx.event("ready", `generation ${o.generation} (${l.instanceId}, ${l.market} ${l.instanceType} in ${l.availabilityZone}) ${o.how}`);
  return true;
}

/**
 * Ask the instance's agent to quiesce (preStop hook, sync, then freeze; or unmount with `unmount`,
 * for an instance that is going away for good) within `budgetMs` of model time. Returns whether it
 * reported clean; when it does not answer in time the caller goes on, and the timeline says so:
 * `unanswered` says what that means (by default a crash-consistent capture follows).
 */
export async function quiesceInstance(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { instanceId: string; reason: string; budgetMs: number; unmount?: boolean; unanswered?: string },
): Promise<boolean> {
  const report = await askAgent<{ clean: boolean }>(deps, ctx, {
    instanceId: o.instanceId,
    command: {
      type: "quiesce",
      reason: o.reason,
      deadline: new Date(deps.clock.wallAfter(o.budgetMs)).toISOString(),
      unmount: o.unmount ?? false,
    },
    commandId: `quiesce-${ctx.workflowId}`,
    reportKind: "quiesced",
    budgetMs: o.budgetMs,
  });
  if (report) return report.clean;
  await ctx.event(
    "quiesce-timeout",
    `${o.instanceId} did not report quiesced within ${Math.round(o.budgetMs / 1000)} s; ${o.unanswered ?? "continuing with a crash-consistent capture"}`,
  );
  return false;
}

/**
 * Model ms a quiesce without a notice deadline may take: the preStop hook's own timeout, plus 30 s
 * for sync, the freeze or unmount, and the agent's reply.
 */
export function plannedQuiesceBudgetMs(spec: StatefulInstanceSpec): number {
  return (spec.hooks.timeoutSeconds + 30) * 1000;
}

/**
 * The planned stop of a running instance that nothing replaces at once (pause, delete): out of its
 * load balancers first (`deregister-targets`, `drain-targets`: the workload gets no new requests
 * before its hook stops it), then step `quiesce` within plannedQuiesceBudgetMs. Whether the agent
 * reported clean; an agent that does not answer in time leaves a `quiesce-timeout` event saying
 * `unanswered`, and the runbook goes on.
 */
export async function leaveAndQuiesce(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { spec: StatefulInstanceSpec; instanceId: string; reason: string; unmount?: boolean; unanswered?: string },
): Promise<boolean> {
  if (o.spec.loadBalancers) await leaveTargetGroups(deps, ctx, { lb: o.spec.loadBalancers, instanceId: o.instanceId });
  const budgetMs = plannedQuiesceBudgetMs(o.spec);
  return ctx.step(
    STEP.quiesce,
    () =>
      quiesceInstance(deps, ctx, { instanceId: o.instanceId, reason: o.reason, budgetMs, unmount: o.unmount, unanswered: o.unanswered }),
    ONCE,
  );
}

/** The root volume a generation left behind (launched with DeleteOnTermination false); null when there is none. */
async function keptRootVolume(deps: RunbookDeps, name: string, generation: number): Promise<VolumeInfo | null> {
  const found = await deps.ec2.findVolumes({ [TAG.instance]: name, [TAG.generation]: String(generation), [TAG.root]: "true" });
  return found.find((v) => v.state !== "deleting" && v.state !== "deleted") ?? null;
}

/** Wait until the volume is free; false when it is gone (or failed) meanwhile. */
export async function waitDetached(deps: RunbookDeps, ctx: WorkflowContext, volumeId: string): Promise<boolean> {
  return waitUntil(
    deps.clock,
    `${volumeId} to be detached`,
    async () => {
      const v = await deps.ec2.describeVolume(volumeId);
      if (!v || v.state === "deleting" || v.state === "deleted" || v.state === "error") return false;
      return v.state === "available" ? true : null;
    },
    { intervalMs: deps.pollMs / 2, timeoutMs: 15 * 60_000, signal: ctx.signal },
  );
}

/**
 * After an instance was lost without notice: snapshot the root volume it left behind (kept because
 * every generation launches with the root's DeleteOnTermination false). Crash-consistent, like a
 * power cut. Null, with an event naming the image the replacement boots from and its age, when the
 * root volume is gone anyway.
 */
export async function snapshotLostRoot(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { name: string; ec2InstanceId: string; rootDeviceName: string; generation: number; fallbackImage: string; userTags: Tags },
): Promise<string | null> {
  const volume = await keptRootVolume(deps, o.name, o.generation);
  const rootLost = async () => {
    const image = (await deps.store.artifacts.list(o.name, "image")).find((i) => i.id === o.fallbackImage);
    const age = image ? `made ${Math.round(deps.clock.modelMsSince(image.createdAt) / 60_000)} min ago` : "the spec's original image";
    await ctx.event(
      "root-lost",
      `the root volume of lost ${o.ec2InstanceId} is gone; the replacement boots from ${o.fallbackImage} (${age}): ` +
        "what was written to the root since then is lost",
    );
    return null;
  };
  if (!volume || !(await waitDetached(deps, ctx, volume.volumeId))) return rootLost();
  try {
    const snap = await deps.ec2.createSnapshot(volume.volumeId, `spotkeep ${o.name} root of lost generation ${o.generation}`, {
      ...o.userTags,
      ...resourceTags(ctx, o.name, "snapshot-lost-root", { [TAG.generation]: String(o.generation) }),
    });
    await deps.store.artifacts.record({
      id: snap.snapshotId,
      instance: o.name,
      kind: "root-snapshot",
      device: o.rootDeviceName,
      sourceId: volume.volumeId,
      generation: o.generation,
    });
    await ctx.event(
      "root-captured",
      `captured the root volume ${volume.volumeId} of lost ${o.ec2InstanceId} after its termination (crash-consistent, like a power cut): ${snap.snapshotId}`,
    );
    return snap.snapshotId;
  } catch (err) {
    if (!isNotFound(err)) throw err;
    return rootLost();
  }
}

/**
 * Delete the root volumes ended generations left behind (kept past their instances' termination),
 * every one but `except`'s. A root still attached to an instance that is not going away is left
 * alone; one already gone is done.
 */
export async function deleteKeptRoots(deps: RunbookDeps, ctx: WorkflowContext, o: { name: string; except: number | null }): Promise<true> {
  const roots = (await deps.ec2.findVolumes({ [TAG.instance]: o.name, [TAG.root]: "true" })).filter(
    (v) => v.tags[TAG.generation] !== String(o.except) && v.state !== "deleting" && v.state !== "deleted",
  );
  const holders = [...new Set(roots.flatMap((v) => v.attachments.map((a) => a.instanceId)))];
  const staying = new Set(
    (holders.length ? await deps.ec2.describeInstances(holders) : [])
      .filter((i) => i.state !== "shutting-down" && i.state !== "terminated")
      .map((i) => i.instanceId),
  );
  for (const v of roots) {
    if (v.attachments.some((a) => staying.has(a.instanceId))) continue;
    if (await waitDetached(deps, ctx, v.volumeId)) await deps.ec2.deleteVolume(v.volumeId);
  }
  return true;
}

/** The unready replacement's root volume (kept past termination like every generation's): deleted once it is free. */
export async function deleteUnreadyRoot(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  instanceId: string,
  volumeId: string | null,
): Promise<true> {
  if (!volumeId) return true;
  const free = await waitUntil(
    deps.clock,
    `${volumeId} (root of ${instanceId}) to be released`,
    async () => {
      const v = await deps.ec2.describeVolume(volumeId);
      if (!v || v.state === "deleting" || v.state === "deleted") return "gone";
      return v.attachments.length === 0 && v.state === "available" ? "free" : null;
    },
    { intervalMs: deps.pollMs, timeoutMs: 15 * 60_000, signal: ctx.signal },
  );
  if (free === "free") await deps.ec2.deleteVolume(volumeId);
  return true;
}
