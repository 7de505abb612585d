/**
 * Launching a generation and bringing it to `ready`: the part the create and replace runbooks
 * share. Each function here is ONE step body and safe to re-run.
 */
import { STEP_OF } from "../../../shared/steps.js";
import { createHash } from "node:crypto";
import type { StatefulInstanceSpec } from "../../../shared/spec.js";
import { canonicalDevice, encryptionOf } from "../../../shared/spec.js";
import { classify, errorCode, isRetryable } from "../../cloud/errors.js";
import { TAG, type BlockDeviceRequest, type EncryptionRequest, type InstanceInfo } from "../../cloud/gateway.js";
import type { CarriedSecret, DataVolume } from "../../db/store.js";
import { type StepDef, type StepPolicy, step, type WorkflowContext } from "../engine.js";
import { Failure, isPermanent } from "../failure.js";
import { agentReportWake, type RunbookDeps, waitUntil } from "./deps.js";

export interface Candidate {
  instanceType: string;
  subnetId: string;
  availabilityZone: string;
  market: "spot" | "on-demand";
  /** From the spec's ipPool (privateIp: pool). */
  privateIp?: string;
}

export interface LaunchResult {
  instanceId: string;
  instanceType: string;
  availabilityZone: string;
  market: "spot" | "on-demand";
  tried: string[];
}

/** ENI still attached to the old instance, volumes still detaching, throttling: try again. */
export const LAUNCH_POLICY: StepPolicy = {
  initialMs: 1000,
  factor: 1.5,
  maxMs: 5000,
  attempts: 60,
  jitter: "equal",
  retryable: (err) => isRetryable(err),
};
export const MUTATE_POLICY: StepPolicy = {
  initialMs: 500,
  factor: 2,
  maxMs: 8000,
  attempts: 30,
  jitter: "equal",
  retryable: (err) => isRetryable(err) || (!errorCode(err) && !isPermanent(err)),
};

/**
 * Launch fallback order: instance types, then subnets/AZs (only when nothing pins the AZ: reattached
 * volumes pin it), then on-demand if the spec allows.
 */
export function candidates(
  spec: StatefulInstanceSpec,
  subnets: Array<{ subnetId: string; availabilityZone: string; cidr?: string }>,
  pinnedAz: string | null,
  preferredIp: string | null = null,
): Candidate[] {
  const m = spec.launch.market;
  const markets: Array<"spot" | "on-demand"> =
    m.type === "spot" ? (m.fallbackToOnDemand ? ["spot", "on-demand"] : ["spot"]) : ["on-demand"];
  const usable = pinnedAz ? subnets.filter((s) => s.availabilityZone === pinnedAz) : subnets;
  const pool = spec.persistence.network.privateIp === "pool" ? spec.persistence.network.ipPool : null;
  const out: Candidate[] = [];
  for (const market of markets)
    for (const s of usable) {
      // The pool keeps the address stable: the one used before if this subnet holds it, then the
      // others that fit in pool order (launchGeneration skips an address EC2 says is in use).
      let addresses: Array<string | undefined> = [undefined];
      if (pool) {
        const fits = pool.filter((ip) => s.cidr && ipInCidr(ip, s.cidr));
        addresses = preferredIp && fits.includes(preferredIp) ? [preferredIp, ...fits.filter((ip) => ip !== preferredIp)] : fits;
      }
      for (const privateIp of addresses)
        for (const t of spec.launch.instanceTypes)
          out.push({ instanceType: t, subnetId: s.subnetId, availabilityZone: s.availabilityZone, market, privateIp });
    }
  return out;
}

export function ipInCidr(ip: string, cidr: string): boolean {
  const [base, bitsText] = cidr.split("/");
  const bits = Number(bitsText);
  const toInt = (a: string) => a.split(".").reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
  if (!base || !(bits >= 0 && bits <= 32)) return false;
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (toInt(ip) & mask) === (toInt(base) & mask);
}

export function clientToken(...parts: Array<string | number>): string {
  return createHash("sha256").update(parts.join("\u0000")).digest("hex").slice(0, 64);
}

/**
 * The spec's EBS encryption for a volume EC2 creates: nothing when it asks for none (the account's
 * default encryption still applies, and a volume made from an encrypted snapshot is encrypted with
 * the snapshot's key), else Encrypted with the spec's key (absent: the account's default key).
 * EC2 encrypts snapshots of an encrypted volume, and images from those snapshots, with the same key.
 */
export function volumeEncryption(spec: StatefulInstanceSpec): EncryptionRequest {
  const e = encryptionOf(spec);
  if (!e.encrypted) return {};
  return e.kmsKeyId ? { encrypted: true, kmsKeyId: e.kmsKeyId } : { encrypted: true };
}

/**
 * The root volume's mapping: kept after the instance ends, the spec's size, type, IOPS and
 * throughput, and its encryption. EC2 refuses a root smaller than the image's root snapshot
 * (InvalidBlockDeviceMapping); create and update refuse such a spec naming the field, and a
 * generation booting a persisted root that has grown past it since gets the root's own size
 * (`raisedFrom` says so) rather than a failed launch.
 */
export function rootMapping(
  spec: StatefulInstanceSpec,
  image: { rootDeviceName: string; rootSizeGiB?: number | null },
): { mapping: BlockDeviceRequest; raisedFrom: number | null } {
  const r = spec.launch.rootVolume ?? {};
  const floor = image.rootSizeGiB ?? 0;
  const raised = r.sizeGiB !== undefined && r.sizeGiB < floor;
  const mapping: BlockDeviceRequest = {
    deviceName: image.rootDeviceName,
    deleteOnTermination: false,
    ...(r.sizeGiB !== undefined ? { sizeGiB: Math.max(r.sizeGiB, floor) } : {}),
    ...(r.type !== undefined ? { volumeType: r.type } : {}),
    ...(r.iops !== undefined ? { iops: r.iops } : {}),
    ...(r.throughput !== undefined ? { throughput: r.throughput } : {}),
    ...volumeEncryption(spec),
  };
  return { mapping, raisedFrom: raised ? (r.sizeGiB ?? null) : null };
}

export async function launchGeneration(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: {
    name: string;
    spec: StatefulInstanceSpec;
    generation: number;
    imageId: string;
    cands: Candidate[];
    eniId: string | null;
    blockDevices: BlockDeviceRequest[];
    /** Distinguishes the ClientTokens of a second launch of the same generation in one workflow (make-before-break's fallback). */
    tokenSalt?: string;
  },
): Promise<LaunchResult> {
  const genTags = { [TAG.managed]: "true", [TAG.instance]: o.name, [TAG.generation]: String(o.generation), [TAG.workflow]: ctx.workflowId };
  const carried = await carriedSecret(deps, o.name, o.imageId);
  // Tag-then-find: an earlier attempt of this step may have launched on a candidate we would now skip.
  const earlier = (await deps.ec2.findInstances({ [TAG.workflow]: ctx.workflowId, [TAG.generation]: String(o.generation) })).find(
    (i) => i.state === "pending" || i.state === "running",
  );
  if (earlier) return record(deps, o, earlier, [], carried);
  // The root volume outlives its instance, so a generation lost without notice can still be
  // captured; the runbook that ends the generation deletes it.
  // Volumes made from snapshots at launch (snapshot mode, a move to another AZ) get the spec's
  // encryption too: EC2 re-encrypts a snapshot's data under the key a mapping names.
  const image = await deps.ec2.describeImage(o.imageId);
  const enc = volumeEncryption(o.spec);
  const rootDeviceName = image?.rootDeviceName;
  const root = image ? rootMapping(o.spec, image) : null;
  if (root?.raisedFrom != null)
    await ctx.event(
      "root-size",
      `launch.rootVolume.sizeGiB is ${root.raisedFrom} GiB but ${o.imageId}'s root is ${image?.rootSizeGiB} GiB: the root keeps its size`,
    );
  const blockDevices: BlockDeviceRequest[] = [
    ...(root ? [root.mapping] : []),
    ...o.blockDevices.filter((b) => b.deviceName !== rootDeviceName).map((b) => ({ ...b, ...enc })),
  ];
  const tried: string[] = [];
  let lastCapacity: unknown = null;
  const inUse = new Set<string>();
  for (const c of o.cands) {
    if (c.privateIp && inUse.has(c.privateIp)) continue;
    const label = `${c.market} ${c.instanceType} in ${c.availabilityZone}${c.privateIp ? ` at ${c.privateIp}` : ""}`;
    try {
      const inst = await deps.ec2.launchInstance({
        clientToken: clientToken(
          ctx.workflowId,
          o.generation,
          c.instanceType,
          c.subnetId,
          c.market,
          ...(o.tokenSalt ? [o.tokenSalt] : []),
          ...(c.privateIp ? [c.privateIp] : []),
        ),
        imageId: o.imageId,
        instanceType: c.instanceType,
        market: c.market,
        maxPrice: o.spec.launch.market.maxPrice,
        network: o.eniId
          ? { eniId: o.eniId }
          : { subnetId: c.subnetId, securityGroupIds: o.spec.launch.securityGroupIds, privateIp: c.privateIp },
        userData: deps.userData(o.spec),
        blockDevices,
        tags: { ...o.spec.launch.tags, Name: `${o.name}-g${o.generation}`, ...genTags },
        iamInstanceProfile: o.spec.launch.iamInstanceProfile,
        keyName: o.spec.launch.keyName,
      });
      if (tried.length) await ctx.event("fallback", `launched ${label} after: ${tried.join("; ")}`);
      return record(deps, o, inst, tried, carried);
    } catch (err) {
      // An ipPool address another ENI holds stays taken for a while: skip it rather than retry it.
      if (c.privateIp && errorCode(err) === "InvalidIPAddress.InUse") {
        inUse.add(c.privateIp);
        tried.push(`${label}: ${errorCode(err)}`);
        continue;
      }
      if (classify(err) !== "capacity") throw err;
      lastCapacity = err;
      tried.push(`${label}: ${errorCode(err)}`);
    }
  }
  const pool = o.spec.persistence.network.privateIp === "pool" ? o.spec.persistence.network.ipPool : [];
  if (pool.length && !lastCapacity && inUse.size)
    throw new Failure(
      "no-capacity",
      `persistence.network.ipPool: every address that fits the launch subnets is in use (${[...inUse].join(", ")}); ` +
        `the pool is ${pool.join(", ")}`,
    );
  throw new Failure(
    "no-capacity",
    `no capacity for ${o.name} generation ${o.generation}: ${
      tried.join("; ") || "no candidates (check launch.subnetIds, launch.instanceTypes and persistence.network.ipPool)"
    }`,
    { cause: lastCapacity },
  );
}

/**
 * The session secret a root booted from `imageId` carries: the one registered by the generation
 * whose root snapshot the image was made from (the agent keeps its secret on the root, so the
 * image holds that generation's secret file). Null for a fresh root: an image spotkeep did not
 * make from this instance's root (the spec's image; make-before-break always boots from it), an
 * imported instance's root (generation 0, which no agent of ours registered), or a source
 * generation whose agent never registered a secret. Works for a root restored from an older image
 * too: the lineage names that older generation.
 */
export async function carriedSecret(deps: RunbookDeps, name: string, imageId: string): Promise<CarriedSecret | null> {
  const image = (await deps.store.artifacts.list(name, "image")).find((a) => a.id === imageId);
  if (!image?.sourceId) return null;
  const snapshot = (await deps.store.artifacts.list(name, "root-snapshot")).find((a) => a.id === image.sourceId);
  if (!snapshot || snapshot.generation === null) return null;
  const source = await deps.store.generations.get(name, snapshot.generation);
  return source?.sessionSecretHash ? { hash: source.sessionSecretHash, generation: snapshot.generation } : null;
}

async function record(
  deps: RunbookDeps,
  o: { name: string; generation: number },
  inst: InstanceInfo,
  tried: string[],
  carried: CarriedSecret | null,
): Promise<LaunchResult> {
  await deps.store.generations.recordLaunch(o.name, o.generation, {
    ec2InstanceId: inst.instanceId,
    instanceType: inst.instanceType,
    availabilityZone: inst.availabilityZone,
    market: inst.lifecycle,
    privateIp: inst.privateIp,
    carriedSecret: carried,
  });
  return {
    instanceId: inst.instanceId,
    instanceType: inst.instanceType,
    availabilityZone: inst.availabilityZone,
    market: inst.lifecycle,
    tried,
  };
}

/**
 * EC2 checks the KMS keys of a launch's encrypted volumes only as the instance starts: a key it
 * cannot use terminates it with Client.InvalidKMSKey.InvalidState (disabled or pending deletion) or
 * Client.InternalError (missing, or the caller's role does not let EC2 use it).
 */
function kmsHint(reason: string | null | undefined): string {
  if (!reason) return "";
  if (reason.includes("InvalidKMSKey")) return "; the KMS key of an encrypted volume is disabled or pending deletion";
  if (reason.startsWith("Client.InternalError"))
    return (
      "; with encrypted volumes this is how EC2 reports a KMS key it cannot use: one that is gone, or that the coordinator's role does not " +
      "let EC2 use (kms:CreateGrant, kms:Decrypt, kms:GenerateDataKeyWithoutPlaintext, kms:ReEncrypt* through EC2)"
    );
  return "";
}

/**
 * Wait for `running`; record the private IP, and (snapshot mode) the volumes EC2 created from the
 * block device mappings for `devices`. Returns the new volume id per device.
 */
export async function waitRunning(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: { name: string; generation: number; instanceId: string; volumesFromSnapshots: string[]; keepsOwnEni: boolean },
): Promise<{ privateIp: string | null; volumes: Record<string, string> }> {
  const inst = await waitUntil(
    deps.clock,
    `${o.instanceId} to be running`,
    async () => {
      const [i] = await deps.ec2.describeInstances([o.instanceId]);
      if (!i) return null;
      if (i.state === "shutting-down" || i.state === "terminated")
        throw new Failure(
          "resource-lost",
          `${o.instanceId} went ${i.state} while starting (${i.stateReason ?? "no reason given"})${kmsHint(i.stateReason)}`,
        );
      return i.state === "running" ? i : null;
    },
    { intervalMs: deps.pollMs / 2, timeoutMs: 15 * 60_000, signal: ctx.signal, grid: true },
  );
  const volumes: Record<string, string> = {};
  const byDevice = new Map(inst.volumes.map((v) => [canonicalDevice(v.deviceName), v.volumeId]));
  for (const device of o.volumesFromSnapshots) {
    const id = byDevice.get(canonicalDevice(device));
    if (!id) throw new Failure("resource-lost", `${o.instanceId} came up without a volume at ${device}`);
    volumes[device] = id;
  }
  // Mark the root volume so the runbook that ends this generation finds it even after the instance is gone.
  const rootVolume = inst.volumes.find((v) => v.deviceName === inst.rootDeviceName)?.volumeId;
  if (rootVolume) await deps.ec2.tagResources([rootVolume], { [TAG.root]: "true" });
  await deps.store.tx(async (t) => {
    for (const [device, id] of Object.entries(volumes)) await t.volumes.setCurrent(o.name, device, id, inst.availabilityZone);
    await t.generations.recordLaunch(o.name, o.generation, {
      ec2InstanceId: o.instanceId,
      instanceType: inst.instanceType,
      availabilityZone: inst.availabilityZone,
      market: inst.lifecycle,
      privateIp: inst.privateIp,
    });
    // Without a persisted ENI, the address is whatever this generation got.
    if (!o.keepsOwnEni)
      await t.network.set({
        instance: o.name,
        eniId: null,
        privateIp: inst.privateIp,
        subnetId: inst.subnetId,
        availabilityZone: inst.availabilityZone,
      });
  });
  return { privateIp: inst.privateIp, volumes };
}

/** One `attach DEVICE` step per data volume, for `ctx.all`: each waits for its volume to be free, then attaches it. */
export function attachSteps(deps: RunbookDeps, ctx: WorkflowContext, volumes: DataVolume[], instanceId: string): StepDef<void>[] {
  return volumes.map((v) =>
    step(STEP_OF.attach(v.device), () => attachVolume(deps, ctx, requireVolumeId(v), instanceId, v.device), MUTATE_POLICY),
  );
}

/** Attach one data volume once it is free (the old instance may still be releasing it). */
export async function attachVolume(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  volumeId: string,
  instanceId: string,
  device: string,
): Promise<void> {
  const ready = await waitUntil(
    deps.clock,
    `${volumeId} to be available or attached to ${instanceId}`,
    async () => {
      const v = await deps.ec2.describeVolume(volumeId);
      if (!v) throw new Failure("resource-lost", `${volumeId} no longer exists`);
      if (v.attachments.some((a) => a.instanceId === instanceId)) return "mine";
      return v.state === "available" ? "free" : null;
    },
    { intervalMs: deps.pollMs / 2, timeoutMs: 10 * 60_000, signal: ctx.signal, grid: true },
  );
  if (ready === "free") await deps.ec2.attachVolume(volumeId, instanceId, device);
  await waitUntil(
    deps.clock,
    `${volumeId} to attach to ${instanceId}`,
    async () => {
      const v = await deps.ec2.describeVolume(volumeId);
      return v?.attachments.some((a) => a.instanceId === instanceId && a.state === "attached") ? true : null;
    },
    { intervalMs: deps.pollMs / 2, timeoutMs: 5 * 60_000, signal: ctx.signal, grid: true },
  );
}

/** A data volume as the restore plan needs it: the logical device and the EBS volume that now holds it. */
export interface PlannedVolume {
  device: string;
  volumeId: string;
  /** null: attach only (an adopted volume without a mount point); the agent reports it unmounted. */
  mountPoint: string | null;
  fsType: string;
}

export function plannedVolumes(vols: DataVolume[], current: Record<string, string> = {}): PlannedVolume[] {
  return vols.map((v) => {
    const volumeId = current[v.device] ?? v.volumeId;
    if (!volumeId) throw new Failure("resource-lost", `${v.instance} ${v.device} has no EBS volume to restore`);
    return { device: v.device, volumeId, mountPoint: v.mountPoint, fsType: v.fsType };
  });
}

/**
 * Send the restore plan (same id every time, so a re-run is deduplicated by the agent) and wait
 * for the agent to report `ready`.
 */
export async function restoreAndWaitReady(
  deps: RunbookDeps,
  ctx: WorkflowContext,
  o: {
    name: string;
    spec: StatefulInstanceSpec;
    generation: number;
    instanceId: string;
    previousClean: boolean;
    volumes: PlannedVolume[];
    /** attach: secondary: the stable ENI the agent configures before mounting. */
    eni?: { eniId: string; privateIp: string };
  },
): Promise<{ readyAt: number }> {
  const planId = `plan-${ctx.workflowId}-${o.generation}`;
  deps.sendToAgent(
    o.instanceId,
    {
      type: "restore-plan",
      statefulInstance: o.name,
      generation: o.generation,
      previousClean: o.previousClean,
      // A volume spotkeep created for generation 1 is blank: the agent makes its filesystem (only if
      // it finds no signature at all). Imported volumes (spec volumeId) are never formatted.
      volumes: o.volumes.map((v) => ({
        volumeId: v.volumeId,
        device: v.device,
        ...(v.mountPoint ? { mountPoint: v.mountPoint } : {}),
        fsType: v.fsType,
        ...(o.generation === 1 && !importedDevice(o.spec, v.device) ? { formatIfBlank: true } : {}),
      })),
      ...(o.eni ? { eni: o.eni } : {}),
      hooks: { preStop: o.spec.hooks.preStop, postRestore: o.spec.hooks.postRestore, timeoutSeconds: o.spec.hooks.timeoutSeconds },
      deviceTimeoutMs: 120_000,
    },
    planId,
  );
  const ready = await waitUntil(
    deps.clock,
    `${o.instanceId} to report ready`,
    async () => {
      const restored = await deps.store.agentReports.latest(o.instanceId, "restored");
      const r = restored?.data as { ok?: boolean; reason?: string } | undefined;
      if (r && r.ok === false) throw new Failure("agent-failed", `restore on ${o.instanceId} failed: ${r.reason ?? "no reason given"}`);
      const boot = await bootFailure(deps, o.instanceId);
      if (boot) throw new Failure("agent-failed", boot);
      return deps.store.agentReports.latest(o.instanceId, "ready");
    },
    // Woken when the report is recorded; without a signal, poll often.
    {
      intervalMs: deps.onAgentReport ? deps.pollMs : Math.max(50, deps.pollMs / 5),
      timeoutMs: 20 * 60_000,
      signal: ctx.signal,
      wake: agentReportWake(deps, o.instanceId),
    },
  );
  // A volume attached without a mount point is the workload's to mount: say where it is.
  const unmounted = o.volumes.filter((v) => !v.mountPoint);
  if (unmounted.length) {
    const restored = (await deps.store.agentReports.latest(o.instanceId, "restored"))?.data as
      | { volumes?: Array<{ volumeId?: string; device?: string }> }
      | undefined;
    for (const v of unmounted) {
      const dev = restored?.volumes?.find((x) => x.volumeId === v.volumeId)?.device;
      await ctx.event(
        "not-mounted",
        `${v.volumeId} (${v.device}) is attached to ${o.instanceId}${dev ? ` as ${dev}` : ""} but not mounted: ` +
          "its spec entry has no mountPoint (set one with spotkeep update and the agent mounts it from the next generation on)",
      );
    }
  }
  return { readyAt: ready.at };
}

/**
 * What the instance's bootstrap reported when it could not start the agent (POST
 * /agent/v1/boot-report), as a failure message; null while it has reported nothing.
 */
export async function bootFailure(deps: Pick<RunbookDeps, "store">, instanceId: string): Promise<string | null> {
  const r = (await deps.store.agentReports.latest(instanceId, "boot-failed"))?.data as { stage?: string; reason?: string } | undefined;
  return r ? `${instanceId} could not start the agent (${r.stage ?? "boot"}): ${r.reason ?? "no reason given"}` : null;
}

function importedDevice(spec: StatefulInstanceSpec, device: string): boolean {
  return spec.persistence.volumes.some((sv) => canonicalDevice(sv.device) === canonicalDevice(device) && sv.volumeId !== undefined);
}

/**
 * The spec's subnets in the spec's order (the fallback order), with their AZ and CIDR. A subnet
 * that no longer exists is refused at create and skipped by a replacement (the others may do).
 */
export async function describeLaunchSubnets(
  deps: RunbookDeps,
  spec: StatefulInstanceSpec,
  missing: "refuse" | "skip" = "skip",
): Promise<Array<{ subnetId: string; availabilityZone: string; cidr: string }>> {
  const found = await deps.ec2.describeSubnets(spec.launch.subnetIds);
  const out: Array<{ subnetId: string; availabilityZone: string; cidr: string }> = [];
  for (const id of spec.launch.subnetIds) {
    const s = found.find((x) => x.subnetId === id);
    if (s) out.push({ subnetId: s.subnetId, availabilityZone: s.availabilityZone, cidr: s.cidr });
    else if (missing === "refuse") throw new Failure("invalid-spec", `launch.subnetIds: ${id} does not exist`);
  }
  return out;
}

/**
 * Block device mappings that make each data volume from a snapshot at launch, with the spec's type,
 * IOPS and throughput (the launch adds the spec's encryption), kept after the instance ends. The
 * size is the snapshot's: it is that of the volume it was taken of, which may be larger than the
 * spec says when the volume was grown outside spotkeep, and EC2 refuses a smaller one.
 */
export function volumesFromSnapshots(
  spec: StatefulInstanceSpec,
  taken: ReadonlyArray<{ device: string; snapshotId: string }>,
): BlockDeviceRequest[] {
  return taken.map((c) => {
    const vs = spec.persistence.volumes.find((x) => x.device === c.device);
    return {
      deviceName: c.device,
      snapshotId: c.snapshotId,
      volumeType: vs?.type,
      iops: vs?.iops,
      throughput: vs?.throughput,
      deleteOnTermination: false,
    };
  });
}

export function requireVolumeId(v: DataVolume): string {
  if (!v.volumeId) throw new Failure("resource-lost", `${v.instance} ${v.device} has no EBS volume`);
  return v.volumeId;
}
