/**
 * grow: data volumes that grow and join a running stateful instance (a spec update accepted by
 * coordinator/volume-changes.ts). The instance keeps serving throughout; the spec the store holds
 * becomes the new one only in the last step, once every change is in place.
 *
 *   begin → { modify DEVICE each } → { wait-modified DEVICE each } → { grow-fs DEVICE each }
 *         → { create-volume DEVICE each new } → { attach DEVICE each new } → { mount DEVICE each new }
 *         → record
 *
 * - modify: ModifyVolume, unless the volume's latest modification already targets this size, type,
 *   IOPS and throughput (in progress or done) or the volume already is so: never asked twice.
 * - wait-modified: DescribeVolumesModifications until `optimizing` (the new size is usable) or
 *   `completed`; `failed` fails the workflow.
 * - grow-fs: the agent grows the filesystem online (resize2fs / xfs_growfs) once its device shows
 *   the new size, and reports the filesystem's size.
 * - create-volume / attach / mount: the create runbook's data-volume creation (tagged, found again
 *   on a re-run), AttachVolume, then the agent formats the blank volume and mounts it as a restore
 *   does.
 * - record: the new volumes become the instance's (the generation's volumes, so the next
 *   interruption keeps them) and the new spec is stored, in one transaction.
 *
 * An interruption while this runs: a replacement may start alongside (a notice is never delayed).
 * The steps that talk to the instance (grow-fs, attach, mount) act on whichever generation is live
 * when they run and wait while a replacement brings the next one up; a filesystem grown on disk
 * stays grown. A new volume the replacement did not know (it began before `record`) is unmounted
 * with the others by the replacement's quiesce and detached with the old instance; `record` then
 * attaches and mounts it on the new live generation first, and stores it only in a transaction that
 * sees no replacement running and the generation it is mounted on live. So the instance ends with
 * every volume of the stored spec attached and mounted, and nothing written to a new volume is
 * lost. A failure leaves the stored spec as it was (an event says why); a volume already created
 * stays, tagged with this workflow, and is never deleted by it.
 */
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { STEP, STEP_OF } from "../../../shared/steps.js";
import type { DataVolume } from "../../db/store.js";
import { taskKey } from "../../tasks.js";
import type { VolumeGrowth } from "../../volume-changes.js";
import { type Runbook, step, type WorkflowContext } from "../engine.js";
import { Failure } from "../failure.js";
import { createDataVolume } from "./create.js";
import { type RunbookDeps, waitUntil } from "./deps.js";
import { attachVolume, MUTATE_POLICY } from "./launch.js";
import { askAgent } from "./steps.js";

export interface GrowInput {
  name: string;
  /** The generation serving when the update was accepted. */
  generation: number;
  instanceId: string;
  /** The spec stored once every change is in place. */
  spec: StatefulInstanceSpec;
  /** Existing volumes modified in place. */
  grow: VolumeGrowth[];
  /** Devices of the new volumes. */
  add: string[];
}

/** Model ms the agent has to grow a filesystem or mount a new volume and answer. */
const AGENT_BUDGET_MS = 10 * 60_000;
/** Model ms a modification may take to become usable (EC2 gives no bound; large volumes take hours). */
const MODIFY_TIMEOUT_MS = 6 * 3_600_000;
const GiB = 2 ** 30;
/** Steps that wait on the agent: an agent that stays silent for three budgets fails the change. */
const AGENT_POLICY = { ...MUTATE_POLICY, attempts: 3 };
/** The record step: each attempt first waits for a replacement in progress to serve, so a few more tries. */
const RECORD_POLICY = { ...MUTATE_POLICY, attempts: 10 };

/** What the agent's `volume-changed` report carries. */
interface VolumeChanged {
  ok: boolean;
  reason?: string;
  filesystemBytes?: number;
  deviceBytes?: number;
  device?: string;
}

export function growRunbook(deps: RunbookDeps): Runbook<GrowInput> {
  return async (ctx, input) => {
    const { name, spec } = input;

    const begin = await ctx.step(STEP.begin, async () => {
      const volumes = await deps.store.volumes.list(name);
      const [live] = await deps.ec2.describeInstances([input.instanceId]);
      const network = await deps.store.network.get(name);
      const availabilityZone =
        live?.availabilityZone ?? network?.availabilityZone ?? volumes.find((v) => v.availabilityZone)?.availabilityZone;
      if (!availabilityZone) throw new Failure("resource-lost", `${name}: no availability zone known for ${input.instanceId}`);
      const ids: Record<string, string> = {};
      for (const g of input.grow) {
        const v = volumes.find((x) => x.device === g.device);
        if (!v?.volumeId) throw new Failure("resource-lost", `${name} ${g.device} has no EBS volume to modify`);
        ids[g.device] = v.volumeId;
      }
      return { availabilityZone, ids };
    });

    // 1. Existing volumes: ModifyVolume, usable from optimizing, then the filesystem grows online.
    await ctx.all(input.grow.map((g) => step(STEP_OF.modify(g.device), () => modifyOnce(deps, begin.ids[g.device]!, g), MUTATE_POLICY)));
    await ctx.all(
      input.grow.map((g) => step(STEP_OF.waitModified(g.device), () => waitModified(deps, ctx, begin.ids[g.device]!, g), MUTATE_POLICY)),
    );
    await ctx.all(
      input.grow
        .filter((g) => g.grows && g.mountPoint)
        .map((g) => step(STEP_OF.growFilesystem(g.device), () => growFilesystem(deps, ctx, name, begin.ids[g.device]!, g), AGENT_POLICY)),
    );

    // 2. New volumes: created like the create runbook's, attached to the live generation, mounted by its agent.
    const planned = input.add.map((device) => newVolume(spec, name, device));
    const created = await ctx.all(
      planned.map((v) =>
        step(
          STEP_OF.createVolume(v.device),
          () => createDataVolume(deps, ctx, spec, v, begin.availabilityZone, { record: false }),
          MUTATE_POLICY,
        ),
      ),
    );
    await ctx.all(created.map((v) => step(STEP_OF.attach(v.device), () => attachToLive(deps, ctx, name, v), MUTATE_POLICY)));
    await ctx.all(created.map((v) => step(STEP_OF.mount(v.device), () => mountOnLive(deps, ctx, name, v), AGENT_POLICY)));

    // 3. In place: the new volumes become the instance's and the spec is stored.
    await ctx.step(STEP.record, () => record(deps, ctx, input, created), RECORD_POLICY);
    await ctx.event(
      "volumes-changed",
      [
        ...input.grow.map((g) => `${g.device} now ${g.sizeGiB} GiB ${g.volumeType}`),
        ...created.map((v) => `${v.device} added (${v.volumeId} at ${v.mountPoint})`),
      ].join("; "),
    );
    return { grown: input.grow.map((g) => g.device), added: created.map((v) => ({ device: v.device, volumeId: v.volumeId })) };
  };
}

/** The data volume record a new device of the spec gets (its EBS volume is made by create-volume). */
function newVolume(spec: StatefulInstanceSpec, name: string, device: string): DataVolume {
  const v = spec.persistence.volumes.find((x) => x.device === device);
  if (!v) throw new Failure("invalid-spec", `persistence.volumes: ${device} is not in the new spec`);
  return {
    instance: name,
    device,
    mountPoint: v.mountPoint ?? null,
    fsType: v.fsType,
    volumeId: null,
    availabilityZone: null,
    latestSnapshotId: null,
  };
}

function sameTarget(
  t: { sizeGiB: number | null; volumeType: string | null; iops: number | null; throughput: number | null },
  g: VolumeGrowth,
): boolean {
  return (
    t.sizeGiB === g.sizeGiB &&
    t.volumeType === g.volumeType &&
    (g.iops === undefined || t.iops === g.iops) &&
    (g.throughput === undefined || t.throughput === g.throughput)
  );
}

/** ModifyVolume once: not when the latest modification already targets `g` (running or done), nor when the volume already is `g`. */
async function modifyOnce(deps: RunbookDeps, volumeId: string, g: VolumeGrowth): Promise<{ volumeId: string; asked: boolean }> {
  const [m] = await deps.ec2.describeVolumesModifications([volumeId]);
  if (
    m &&
    m.state !== "failed" &&
    sameTarget({ sizeGiB: m.targetSizeGiB, volumeType: m.targetVolumeType, iops: m.targetIops, throughput: m.targetThroughput }, g)
  )
    return { volumeId, asked: false };
  const v = await deps.ec2.describeVolume(volumeId);
  if (!v) throw new Failure("resource-lost", `${volumeId} (${g.device}) no longer exists`);
  if (sameTarget({ sizeGiB: v.sizeGiB, volumeType: v.volumeType, iops: v.iops, throughput: v.throughput }, g))
    return { volumeId, asked: false };
  await deps.ec2.modifyVolume({
    volumeId,
    sizeGiB: g.sizeGiB,
    volumeType: g.volumeType,
    ...(g.iops !== undefined ? { iops: g.iops } : {}),
    ...(g.throughput !== undefined ? { throughput: g.throughput } : {}),
  });
  return { volumeId, asked: true };
}

/** Until the modification is `optimizing` or `completed` (the volume is usable at its new size). */
async function waitModified(deps: RunbookDeps, ctx: WorkflowContext, volumeId: string, g: VolumeGrowth): Promise<true> {
  return waitUntil(
    deps.clock,
    `the modification of ${volumeId} (${g.device}) to be usable`,
    async () => {
      const [m] = await deps.ec2.describeVolumesModifications([volumeId]);
      if (m?.state === "failed")
        throw new Failure("resource-lost", `EC2 failed to modify ${volumeId} (${g.device}): ${m.statusMessage ?? "no reason given"}`);
      if (m && (m.state === "optimizing" || m.state === "completed")) return true;
      if (!m) {
        // No modification was needed (the volume already was so).
        const v = await deps.ec2.describeVolume(volumeId);
        if (v && sameTarget({ sizeGiB: v.sizeGiB, volumeType: v.volumeType, iops: v.iops, throughput: v.throughput }, g)) return true;
      }
      return null;
    },
    { intervalMs: deps.pollMs, timeoutMs: MODIFY_TIMEOUT_MS, signal: ctx.signal, grid: true },
  );
}

/**
 * The EC2 instance of the live generation once the instance is running (a replacement in progress
 * is waited for); a paused, failed or deleted instance fails the step, naming its state.
 */
async function liveInstance(deps: RunbookDeps, ctx: WorkflowContext, name: string): Promise<string> {
  return waitUntil(
    deps.clock,
    `${name} to run on a live generation`,
    async () => {
      const inst = await deps.store.instances.get(name);
      if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
      if (["paused", "pausing", "failed", "deleting", "deleted"].includes(inst.state))
        throw new Failure("resource-lost", `${name} is ${inst.state}: the volume change cannot complete on a running instance`);
      if (inst.state !== "running") return null;
      const g = await deps.store.generations.get(name, inst.generation);
      return g?.status === "live" && g.ec2InstanceId ? g.ec2InstanceId : null;
    },
    { intervalMs: deps.pollMs, timeoutMs: 60 * 60_000, signal: ctx.signal },
  );
}

/** Ask the live generation's agent for a volume change and wait for its report; a refusal or silence fails the step. */
async function askVolumeChange(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  instanceId: string,
  o: {
    action: "grow" | "mount";
    volume: { volumeId: string; device: string; mountPoint: string; fsType: string; formatIfBlank?: boolean };
    minSizeBytes?: number;
  },
): Promise<VolumeChanged> {
  const { volume } = o;
  const report = await askAgent<VolumeChanged>(deps, ctx, {
    instanceId,
    command: {
      type: "volume-change",
      action: o.action,
      volume: {
        volumeId: volume.volumeId,
        device: volume.device,
        mountPoint: volume.mountPoint,
        fsType: volume.fsType,
        ...(volume.formatIfBlank ? { formatIfBlank: true } : {}),
      },
      ...(o.minSizeBytes !== undefined ? { minSizeBytes: o.minSizeBytes } : {}),
      deviceTimeoutMs: 120_000,
    },
    // One command per workflow, volume, action and instance: a replacement's agent gets its own.
    commandId: `${o.action}-${ctx.workflowId}-${volume.volumeId}-${instanceId}`,
    reportKind: "volume-changed",
    budgetMs: AGENT_BUDGET_MS,
  });
  if (!report)
    throw new Failure(
      "timeout",
      `${instanceId} did not report the ${o.action} of ${volume.volumeId} within ${AGENT_BUDGET_MS / 60_000} min`,
    );
  if (!report.ok)
    throw new Failure(
      "agent-failed",
      `${o.action} of ${volume.volumeId} at ${volume.mountPoint} on ${instanceId} failed: ${report.reason ?? "no reason given"}`,
    );
  return report;
}

async function growFilesystem(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  name: string,
  volumeId: string,
  g: VolumeGrowth,
): Promise<{ instanceId: string; filesystemBytes: number | null }> {
  const instanceId = await liveInstance(deps, ctx, name);
  const r = await askVolumeChange(deps, ctx, instanceId, {
    action: "grow",
    volume: { volumeId, device: g.device, mountPoint: g.mountPoint!, fsType: g.fsType },
    minSizeBytes: g.sizeGiB * GiB,
  });
  return { instanceId, filesystemBytes: r.filesystemBytes ?? null };
}

/** Attach a new volume to the live generation (one attached there already counts). */
async function attachToLive(deps: RunbookDeps, ctx: WorkflowContext, name: string, v: DataVolume): Promise<string> {
  const instanceId = await liveInstance(deps, ctx, name);
  await attachVolume(deps, ctx, v.volumeId!, instanceId, v.device);
  return instanceId;
}

/** Mount a new volume on the live generation, attaching it there first when a replacement took over since. */
async function mountOnLive(deps: RunbookDeps, ctx: WorkflowContext, name: string, v: DataVolume): Promise<string> {
  const instanceId = await attachToLive(deps, ctx, name, v);
  await askVolumeChange(deps, ctx, instanceId, {
    action: "mount",
    // A volume this workflow created is blank until its first mount; one with any signature is never formatted.
    volume: { volumeId: v.volumeId!, device: v.device, mountPoint: v.mountPoint!, fsType: v.fsType, formatIfBlank: true },
  });
  return instanceId;
}

/**
 * Store the new volumes and the new spec in one transaction, once every new volume is attached and
 * mounted on the live generation and the instance is running on it (a replacement that began
 * without them would leave them out: they are brought to its generation first, and the step tries
 * again).
 */
async function record(deps: RunbookDeps, ctx: WorkflowContext, input: GrowInput, created: DataVolume[]): Promise<true> {
  const { name, spec } = input;
  const mountedOn = await Promise.all(created.map((v) => mountOnLive(deps, ctx, name, v)));
  await deps.store.tx(async (t) => {
    const inst = await t.instances.get(name);
    if (!inst) throw new Failure("resource-lost", `stateful instance ${name} no longer exists`);
    const g = inst.generation > 0 ? await t.generations.get(name, inst.generation) : null;
    // A replacement that began before this transaction holds the instance in `replacing` until its
    // generation serves (it read the volumes without the new ones); one that begins after it reads them.
    const live = inst.state === "running" && g?.status === "live" ? g.ec2InstanceId : null;
    const away = mountedOn.find((id) => id !== live);
    if (away)
      throw new Failure(
        "transient-in-use",
        `${name} moved while its volumes changed (mounted on ${away}; ${inst.state}, live generation on ${live ?? "none"}); trying again`,
      );
    for (const v of created) {
      await t.volumes.declare(name, v.device, v.mountPoint, v.fsType);
      await t.volumes.setCurrent(name, v.device, v.volumeId!, v.availabilityZone!);
    }
    await t.instances.setSpec(name, spec);
    await t.taskRuns.sync(name, spec.schedule.map(taskKey), deps.clock.now());
    for (const v of spec.persistence.volumes) await t.volumes.setMountPoint(name, v.device, v.mountPoint ?? null);
    await t.events.add(name, "updated", "spec updated: the volume changes are in place", ctx.workflowId);
  });
  return true;
}
