/**
 * What can be started for a stateful instance, and when: the admission rules for every workflow
 * (one replacement at a time, only the live generation is replaced, a snapshot never holds up a
 * replacement) and the operations the HTTP API and the CLI ask for. Check-and-start happens in one
 * store transaction, so two triggers at the same moment start one workflow.
 */
import { KEEP_ITEMS, type KeepSet, keptList } from "../shared/deletion.js";
import type { Operation } from "../shared/operations.js";
import { encryptionOf, type StatefulInstanceSpec } from "../shared/spec.js";
import { Refusal } from "./refusal.js";
import type { KmsGateway } from "./kms/kms.js";
import { describeBootImage, storageProblems } from "./storage-checks.js";
import { type ArchitectureGateway, type BootImage, architectureRefusal, specImage } from "./architecture.js";
import type { Ec2Gateway } from "./cloud/gateway.js";
import { isNotFound } from "./cloud/errors.js";
import type { Store, StoreTx } from "./db/store.js";
import { admission, insertedAs, moveState, refusalOf, type StartName, scheduledStart } from "./lifecycle.js";
import type { Engine } from "./workflow/kinds.js";
import type { DeleteInput } from "./workflow/runbooks/delete.js";
import type { PauseInput } from "./workflow/runbooks/pause.js";
import type { ReplaceInput } from "./workflow/runbooks/replace.js";
import type { RelocateInput } from "./workflow/runbooks/relocate.js";
import type { ResumeInput } from "./workflow/runbooks/resume.js";
import { latestCopies, relocatedSpec, relocateImage } from "./relocate.js";
import type { SnapshotInput } from "./workflow/runbooks/snapshot.js";
import type { Regions } from "./cloud/regions.js";
import { unsupportedFeatures } from "./workflow/runbooks/support.js";
import { type DiscoveryGateway, discoverInstance } from "./import/discover.js";
import { ImportRefused, planImport } from "./import/plan.js";
import { taskKey } from "./tasks.js";
import { admitPlannedWork, plannedWorkRefusal } from "./planned-work.js";
import { coolDownProblems, planVolumeChanges, type VolumeGrowth } from "./volume-changes.js";
import type { GrowInput } from "./workflow/runbooks/grow.js";

/** The trigger recorded on move-back-to-spot recycles (the schedule's backoff reads it). */
export const REVERT_TRIGGER = "revert-to-spot";

export interface OperationsDeps {
  store: Store;
  engine: Engine;
  /** Asked whether a failed generation's EC2 instance still runs (recycle of a failed instance), and what an import adopts. */
  ec2?: Pick<Ec2Gateway, "describeInstances"> &
    Partial<DiscoveryGateway> &
    ArchitectureGateway &
    Partial<Pick<Ec2Gateway, "describeVolumesModifications">>;
  /** Model ms elapsed since a wall-clock time (EC2's cool-down after a volume modification is 6 model hours). */
  modelMsSince?: (wallMs: number) => number;
  /** The home region: specs without one are there, and a stored spec may be corrected to it. */
  region?: string;
  /**
   * The regions this coordinator manages and their clients: each spec's EC2 and KMS checks go to
   * its own region's. Absent (unit tests): `ec2` and `kms` serve every spec, in `region`.
   */
  regions?: Regions;
  log: (line: string) => void;
  /** The wall clock scheduled tasks are read on (a new task's due times count from its creation). */
  calendar?: () => number;
  /** Render the spec's user-data as a launch would; throws saying why it cannot be launched (over EC2's 16 KB). */
  renderUserData?: (spec: StatefulInstanceSpec) => unknown;
  /** Asked whether a spec's KMS key exists and can encrypt EBS volumes; absent: not checked (the launch reports it). */
  kms?: KmsGateway;
  /** The Node.js runtime this coordinator serves for an architecture (x86_64, arm64), for an import's plan; null when none. */
  runtimeFor?: (architecture: string) => { version: string; gzBytes: number } | null;
}

/** What an import's plan says about the Node.js the agent will run on. */
export function runtimeStep(architecture: string, served: { version: string; gzBytes: number } | null): string {
  const arch = architecture === "arm64" ? "linux-arm64" : "linux-x64";
  const ownNode = "the agent runs on the image's own node when it is Node.js 20.19 or later";
  return served
    ? `${ownNode}; otherwise the bootstrap downloads Node.js ${served.version} for ${arch} from this coordinator ` +
        `(${(served.gzBytes / 1024 / 1024).toFixed(1)} MiB, checked by SHA-256, kept on the root for later generations)`
    : `${ownNode}; this coordinator serves no runtime for ${arch}, so an image without one cannot start the agent ` +
        "and the import fails at its first boot, saying so (spotkeep runtime fetch on the coordinator serves one)";
}

export class Operations {
  constructor(private readonly d: OperationsDeps) {}

  /** Start a replacement unless one is already running or `input.instanceId` is not the live generation. */
  async startReplace(input: ReplaceInput, why: string): Promise<string | null> {
    const id = await this.d.store.tx(async (t) => {
      const a = await admission(t, input.name);
      if (!a || refusalOf("replace", a.facts) || a.facts.liveInstanceId !== input.instanceId) return null;
      const { inst } = a;
      const wf = await this.d.engine.start("replace", input.name, { ...input, fromGeneration: inst.generation }, input.trigger, t);
      await t.events.add(input.name, "replace-started", `${why}: replacing ${input.instanceId} (generation ${inst.generation})`, wf);
      return wf;
    });
    if (id) this.d.log(`${input.name}: ${why}; replacing ${input.instanceId} as workflow ${id}`);
    return id;
  }

  /** Start a snapshot of the live generation's data volumes; null when not running, busy, or without data volumes. */
  async startSnapshot(name: string, reason: string): Promise<string | null> {
    return this.d.store.tx(async (t) => {
      const a = await admission(t, name);
      const instanceId = a?.facts.liveInstanceId;
      if (!a || !instanceId || refusalOf("periodic snapshot", a.facts)) return null;
      const input: SnapshotInput = { name, instanceId, generation: a.inst.generation, reason };
      const wf = await this.d.engine.start("snapshot", name, input, reason, t);
      await t.events.add(name, "snapshot-started", `${reason}: snapshotting the data volumes of ${instanceId}`, wf);
      return wf;
    });
  }

  /**
   * Refusals a spec gets before anything is recorded: a region other than this coordinator's,
   * features not supported, user-data that cannot be launched.
   */
  private checkSpec(spec: StatefulInstanceSpec): void {
    const regions = this.d.regions?.allowed ?? (this.d.region ? [this.d.region] : undefined);
    const unsupported = unsupportedFeatures(spec, { regions });
    if (unsupported.length) throw new Refusal("invalid", unsupported.map((u) => `${u.path}: ${u.reason}`).join("; "));
    try {
      this.d.renderUserData?.(spec);
    } catch (err) {
      throw new Refusal("invalid", (err as Error).message);
    }
  }

  /**
   * Everything a create checks before it records anything (the spec against this coordinator, the
   * image's architecture, the name not in use), as Refusals; changes nothing. `spotkeep create
   * --dry-run` asks this alone.
   */
  async checkCreate(spec: StatefulInstanceSpec): Promise<void> {
    this.checkSpec(spec);
    await this.refuseArchitectureMismatch(spec, () => specImage(this.ec2(spec.region), spec.launch.imageId));
    if (await this.d.store.instances.get(spec.name)) throw new Refusal("conflict", `stateful instance ${spec.name} already exists`);
  }

  /** Create a stateful instance from a validated spec; changes nothing when refused. */
  async createInstance(spec: StatefulInstanceSpec): Promise<{ workflowId: string }> {
    this.checkSpec(spec);
    await this.refuseArchitectureMismatch(spec, () => specImage(this.ec2(spec.region), spec.launch.imageId));
    await this.refuseStorage(spec, spec.launch.imageId);
    const workflowId = await this.d.store.tx(async (t) => {
      if (await t.instances.get(spec.name)) throw new Refusal("conflict", `stateful instance ${spec.name} already exists`);
      await t.instances.insert(spec.name, spec, insertedAs("create"));
      for (const v of spec.persistence.volumes) await t.volumes.declare(spec.name, v.device, v.mountPoint ?? null, v.fsType);
      await t.taskRuns.sync(spec.name, spec.schedule.map(taskKey), this.d.calendar?.() ?? Date.now());
      const wf = await this.d.engine.start("create", spec.name, { name: spec.name }, "create", t);
      await t.events.add(spec.name, "created", `create requested (workflow ${wf})`, wf);
      return wf;
    });
    return { workflowId };
  }

  /**
   * Import an existing EC2 instance as `name`: discover it, plan the spec (overrides laid over),
   * and unless `dryRun`, record the stateful instance (state importing, its volumes, ENI and root
   * device) and start the import runbook in one transaction. 404 for an unknown instance, 409 for
   * a name in use or an instance already managed, 400 naming the reason an instance cannot be
   * imported or the override field that is wrong. A dry run changes nothing anywhere.
   * A volume or ENI a deleted instance kept is refused (409, naming it) unless `adoptKept`: then
   * it becomes this instance's, in the same transaction, and its TTL no longer applies.
   */
  async importInstance(req: {
    instanceId: string;
    name: string;
    region?: string;
    overrides?: unknown;
    dryRun: boolean;
    adoptKept?: boolean;
  }): Promise<{ workflowId: string | null; spec: StatefulInstanceSpec; steps: string[] }> {
    // The instance is looked for in the region the request names (else the home region).
    const region = req.region ?? this.d.region ?? "us-east-1";
    if (this.d.regions && !this.d.regions.allows(region))
      throw new Refusal("invalid", `region: ${region} is not a region this coordinator manages (${this.d.regions.allowed.join(", ")})`);
    const ec2 = this.ec2(region);
    if (
      !ec2?.describeInstanceDetails ||
      !ec2.describeImage ||
      !ec2.describeVolume ||
      !ec2.describeNetworkInterface ||
      !ec2.instanceUserData
    )
      throw new Refusal("conflict", "import needs the coordinator's EC2 gateway");
    if (await this.d.store.instances.get(req.name)) throw new Refusal("conflict", `stateful instance ${req.name} already exists`);
    const facts = await discoverInstance(ec2 as DiscoveryGateway, this.d.store, req.instanceId, region);
    if (!facts) throw new Refusal("not-found", `EC2 has no instance ${req.instanceId}`);
    let plan: ReturnType<typeof planImport>;
    try {
      plan = planImport(req.name, facts, req.overrides);
    } catch (err) {
      if (err instanceof ImportRefused)
        throw new Refusal(err.code === "already-managed" ? "conflict" : "invalid", `cannot import ${req.instanceId}: ${err.message}`);
      throw err;
    }
    this.checkSpec(plan.spec);
    await this.refuseStorage(plan.spec, null);
    // The generations boot the instance's own root, so its architecture is the one the types must run.
    await this.refuseArchitectureMismatch(plan.spec, async () => ({
      architecture: plan.input.architecture,
      label: `the root of ${req.instanceId}`,
    }));
    const kept = facts.kept ?? [];
    if (kept.length && !req.adoptKept)
      throw new Refusal(
        "conflict",
        `cannot import ${req.instanceId}: ${kept.map((k) => `${k.kind} ${k.resourceId} is kept by deleted stateful instance ${k.instance}`).join("; ")}` +
          " (its TTL would delete it); to take it over, import with adoptKept (spotkeep import --adopt-kept)",
      );
    const steps = [
      ...kept.map(
        (k) =>
          `adopt ${k.kind} ${k.resourceId}, kept by deleted stateful instance ${k.instance}: it becomes ${req.name}'s, its TTL cancelled`,
      ),
      ...plan.steps,
      runtimeStep(plan.input.architecture, this.d.runtimeFor?.(plan.input.architecture) ?? null),
    ];
    if (req.dryRun) return { workflowId: null, spec: plan.spec, steps };
    const { spec } = plan;
    const input = { ...plan.input, ...(kept.length ? { adoptedKept: kept.map((k) => k.resourceId) } : {}) };
    const workflowId = await this.d.store.tx(async (t) => {
      if (await t.instances.get(spec.name)) throw new Refusal("conflict", `stateful instance ${spec.name} already exists`);
      const owner = await t.generations.byEc2InstanceId(input.instanceId);
      if (owner)
        throw new Refusal(
          "conflict",
          `cannot import ${input.instanceId}: it is already managed by spotkeep (stateful instance ${owner.instance})`,
        );
      // Ownership again, inside the transaction: nothing may have claimed a volume or the ENI since discovery.
      const adopted: string[] = [];
      for (const id of [...input.blockDevices.map((b) => b.volumeId), input.eni.eniId]) {
        for (const c of await t.deletions.claims(id)) {
          if (c.as !== "kept")
            throw new Refusal("conflict", `cannot import ${input.instanceId}: ${id} is ${c.as} of stateful instance ${c.instance}`);
          if (!req.adoptKept)
            throw new Refusal(
              "conflict",
              `cannot import ${input.instanceId}: ${id} is kept by deleted stateful instance ${c.instance}; import with adoptKept to take it over`,
            );
          if (await t.deletions.adopt(id, spec.name)) {
            adopted.push(id);
            await t.events.add(
              c.instance,
              "kept-adopted",
              `kept ${id} adopted by stateful instance ${spec.name} (import of ${input.instanceId}); its TTL no longer applies`,
            );
          }
        }
      }
      await t.instances.insert(spec.name, spec, insertedAs("import"));
      for (const v of spec.persistence.volumes) {
        await t.volumes.declare(spec.name, v.device, v.mountPoint ?? null, v.fsType);
        if (v.volumeId) await t.volumes.setCurrent(spec.name, v.device, v.volumeId, input.availabilityZone);
      }
      await t.network.set({
        instance: spec.name,
        eniId: input.eni.eniId,
        privateIp: input.eni.privateIp,
        subnetId: input.subnetId,
        availabilityZone: input.availabilityZone,
      });
      await t.root.set({
        instance: spec.name,
        imageId: null,
        snapshotId: null,
        rootDeviceName: input.rootDevice,
        architecture: input.architecture,
      });
      const wf = await this.d.engine.start("import", spec.name, input, "import", t);
      if (adopted.length)
        await t.events.add(
          spec.name,
          "kept-adopted",
          `adopted ${adopted.join(", ")}, kept by a deleted stateful instance; their TTL no longer applies`,
          wf,
        );
      await t.events.add(
        spec.name,
        "import-started",
        `import of ${input.instanceId} (${input.eni.privateIp}) requested (workflow ${wf})`,
        wf,
      );
      return wf;
    });
    return { workflowId, spec, steps: plan.steps };
  }

  /**
   * Bring a paused or failed instance back in `region` from its disaster-recovery copies there (a
   * relocate; spotkeep restore --region): 404 for an unknown name, 409 when its state or a running
   * workflow does not allow it, 400 naming the field when the region is not managed here or is its
   * own, when the overrides lack what is regional (subnets, security groups, a KMS key, an address
   * pool) or make a spec that does not parse, when the region has no completed copy of a data
   * volume (the device named) or, with persistence.root, no available root image copy and no
   * launch.imageId in the overrides. Changes nothing when refused.
   */
  async relocate(name: string, req: { region: string; overrides?: unknown }): Promise<{ workflowId: string }> {
    const regions = this.d.regions;
    if (!regions) throw new Refusal("unavailable", "restore needs the coordinator's regions");
    const region = req.region;
    if (!regions.allows(region))
      throw new Refusal("invalid", `region: ${region} is not a region this coordinator manages (${regions.allowed.join(", ")})`);
    const inst = await this.d.store.instances.get(name);
    if (!inst) throw new Refusal("not-found", `no stateful instance named ${name}`);
    await this.d.store.tx(async (t) => this.admit(t, name, "relocate"));
    const fromRegion = regions.of(inst.spec);
    if (region === fromRegion)
      throw new Refusal(
        "invalid",
        `region: ${name} is in ${region} already (restore brings it back in another region; resume brings it back here)`,
      );
    const spec = relocatedSpec(inst.spec, req.overrides, region);
    this.checkSpec(spec);
    const ec2 = regions.ec2(region);
    // EC2 refuses a DescribeSubnets naming a missing subnet as a whole: each is asked on its own.
    const absent: string[] = [];
    for (const id of spec.launch.subnetIds)
      try {
        if ((await ec2.describeSubnets([id])).length === 0) absent.push(id);
      } catch (err) {
        if (!isNotFound(err)) throw err;
        absent.push(id);
      }
    if (absent.length)
      throw new Refusal("invalid", `launch.subnetIds: ${absent.join(", ")} ${absent.length > 1 ? "do" : "does"} not exist in ${region}`);
    const snapshotState = async (id: string) => (await ec2.describeSnapshot(id))?.state ?? null;
    const imageState = async (id: string) => (await ec2.describeImage(id))?.state ?? null;
    const volumes = await latestCopies(spec, await this.d.store.artifacts.list(name, "snapshot-copy"), region, snapshotState);
    const image = await relocateImage(spec, req.overrides, await this.d.store.artifacts.list(name, "image-copy"), region, imageState);
    await this.refuseStorage(spec, image.fromCopy ? null : image.imageId);
    await this.refuseArchitectureMismatch(spec, () => this.nextBootImage(name, spec));
    const net = await this.d.store.network.get(name);
    const workflowId = await this.d.store.tx(async (t) => {
      const a = await this.admit(t, name, "relocate");
      if (a.inst.updatedAt !== inst.updatedAt) throw new Refusal("conflict", `${name} changed while the restore was checked; ask again`);
      const input: RelocateInput = {
        name,
        region,
        fromRegion,
        fromGeneration: a.inst.generation,
        from: a.inst.state === "paused" ? "paused" : "failed",
        spec,
        volumes,
        imageId: image.imageId,
        previousIp: net?.privateIp ?? null,
      };
      const wf = await this.d.engine.start("relocate", name, input, "restore", t);
      // A failed generation may have left its EC2 instance in the old region: nothing is done there (it may be down).
      const leftover = a.g && a.g.status !== "ended" ? a.g.ec2InstanceId : null;
      await t.events.add(
        name,
        "relocate-started",
        `restore in ${region} requested: generation ${a.inst.generation + 1} from the copies there, a new ENI and private IP; ` +
          `what ${name} has in ${fromRegion} is kept, untouched` +
          (leftover
            ? `; ${leftover} in ${fromRegion}, if it still runs, is not terminated (terminate it there once the region answers)`
            : ""),
        wf,
      );
      return wf;
    });
    this.d.log(`${name}: restoring in ${region} (workflow ${workflowId})`);
    return { workflowId };
  }

  /**
   * An operation asked for through the API or the CLI: 404 for an unknown name, 409 when another
   * workflow is moving the instance (with its id and kind) or the state does not allow it (with
   * the state and what is allowed). Check and start happen in one transaction.
   */
  async run(
    name: string,
    op: Operation,
    reason = "requested",
    o: { onStarted?: (t: StoreTx, workflowId: string) => Promise<void>; by?: "operator" | "schedule" } = {},
  ): Promise<{ workflowId: string }> {
    const id = await this.d.store.tx(async (t) => {
      const wf = await this.startOperation(t, name, op, o.by === "schedule" ? scheduledStart(op) : op, reason);
      await o.onStarted?.(t, wf);
      return wf;
    });
    return { workflowId: id };
  }

  private async startOperation(t: StoreTx, name: string, op: Operation, start: StartName, reason: string): Promise<string> {
    const { inst, g } = await this.admit(t, name, start);
    const liveId = g && g.status !== "ended" ? g.ec2InstanceId : null;
    switch (op) {
      case "snapshot": {
        if (!liveId) throw new Refusal("conflict", `${name} has no live generation to snapshot`);
        const input: SnapshotInput = { name, instanceId: liveId, generation: inst.generation, reason };
        const wf = await this.d.engine.start("snapshot", name, input, reason, t);
        await t.events.add(name, "snapshot-started", `${reason}: snapshotting the data volumes of ${liveId}`, wf);
        return wf;
      }
      case "pause": {
        if (!liveId) throw new Refusal("conflict", `${name} has no EC2 instance to pause`);
        await admitPlannedWork(t, name);
        const input: PauseInput = { name, generation: inst.generation, instanceId: liveId };
        const wf = await this.d.engine.start("pause", name, input, reason, t);
        await t.events.add(name, "pause-started", `${reason}: pausing ${liveId} (generation ${inst.generation})`, wf);
        return wf;
      }
      case "resume":
        return this.startResume(t, name, inst.generation, inst.state === "paused" ? "paused" : "failed", reason);
      case "recycle": {
        // A failed instance without a running EC2 instance has nothing to quiesce: it starts from what is kept.
        if (inst.state === "failed" && !(liveId && (await this.ec2Alive(inst.spec.region, liveId))))
          return this.startResume(t, name, inst.generation, "failed", `recycle of a failed instance (${reason})`);
        if (!liveId) throw new Refusal("conflict", `${name} has no EC2 instance to recycle`);
        await admitPlannedWork(t, name);
        const input: ReplaceInput = { name, instanceId: liveId, fromGeneration: inst.generation, trigger: "recycle", reason };
        const wf = await this.d.engine.start("recycle", name, input, "recycle", t);
        await t.events.add(name, "recycle-started", `${reason}: recycling ${liveId} (generation ${inst.generation})`, wf);
        return wf;
      }
    }
  }

  /**
   * A recycle the coordinator decides on its own (autohealing, scheduled maintenance) of the live
   * generation `instanceId`: null when the instance is not running, that is no longer its live
   * generation, or another workflow (a snapshot aside) moves it. `skipQuiesce` says why the agent
   * is not asked to quiesce (the capture is then crash-consistent).
   */
  async startHealing(
    name: string,
    instanceId: string,
    o: { trigger: "autohealing" | "maintenance"; reason: string; skipQuiesce?: string },
  ): Promise<string | null> {
    const id = await this.d.store.tx(async (t) => {
      const a = await admission(t, name);
      if (!a || refusalOf("heal", a.facts) || a.facts.liveInstanceId !== instanceId) return null;
      if (await plannedWorkRefusal(t, name)) return null;
      const { inst } = a;
      const input: ReplaceInput = {
        name,
        instanceId,
        fromGeneration: inst.generation,
        trigger: "recycle",
        reason: o.reason,
        ...(o.skipQuiesce ? { skipQuiesce: o.skipQuiesce } : {}),
      };
      const wf = await this.d.engine.start("recycle", name, input, o.trigger, t);
      await t.events.add(name, o.trigger, `${o.reason}: recycling ${instanceId} (generation ${inst.generation})`, wf);
      return wf;
    });
    if (id) this.d.log(`${name}: ${o.trigger}: ${o.reason}; recycling as workflow ${id}`);
    return id;
  }

  /**
   * A move back to spot for an instance whose live generation runs on-demand: a recycle that first
   * checks spot capacity and leaves the instance alone when there is none. Null when it does not apply now.
   */
  async startRevertToSpot(name: string): Promise<string | null> {
    return this.d.store.tx(async (t) => {
      const a = await admission(t, name);
      const instanceId = a?.facts.liveInstanceId;
      if (!a || !instanceId || refusalOf("revert-to-spot", a.facts) || a.g?.market !== "on-demand") return null;
      if (await plannedWorkRefusal(t, name)) return null;
      const { inst } = a;
      const input: ReplaceInput = {
        name,
        instanceId,
        fromGeneration: inst.generation,
        trigger: "recycle",
        reason: "move back to spot",
        revertToSpot: true,
      };
      const wf = await this.d.engine.start("recycle", name, input, REVERT_TRIGGER, t);
      await t.events.add(name, "revert-to-spot", `${instanceId} runs on-demand: checking for spot capacity`, wf);
      return wf;
    });
  }

  /**
   * Store a new spec for an instance, applied at its next generation; `recycle` applies it now. An
   * update that grows data volumes or adds new ones (coordinator/volume-changes.ts) instead starts
   * the `grow` runbook on the running instance, which stores the spec once the change is in place.
   */
  async update(name: string, spec: StatefulInstanceSpec, opts: { recycle: boolean }): Promise<{ workflowId: string | null }> {
    this.checkSpec(spec);
    await this.refuseArchitectureMismatch(spec, () => this.nextBootImage(name, spec));
    const root = spec.persistence.root ? await this.d.store.root.get(name) : null;
    await this.refuseStorage(spec, root?.imageId ?? spec.launch.imageId);
    const current = await this.d.store.instances.get(name);
    const plan = current ? planVolumeChanges(current.spec, spec) : null;
    const live = plan && (plan.grow.length || plan.add.length);
    if (live && plan.problems.length === 0) await this.refuseCoolDown(name, spec.region, plan.grow);
    const workflowId = await this.d.store.tx(async (t) => {
      const { inst, g, facts } = await this.admit(t, name, "update");
      const problems = immutableChanges(inst.spec, spec, { liveVolumes: true, coordinatorRegion: this.d.region ?? "us-east-1" });
      if (problems.length) throw new Refusal("invalid", problems.join("; "));
      const volumes = planVolumeChanges(inst.spec, spec);
      // Another update while a volume change runs would be overwritten when that change stores its spec.
      const growing = facts.running.find((w) => w.kind === "grow");
      if (growing)
        throw new Refusal(
          "conflict",
          `${name} is busy with grow ${growing.id}: its volume change stores the spec when done; update after it`,
        );
      if (volumes.grow.length || volumes.add.length) {
        if (opts.recycle)
          throw new Refusal(
            "invalid",
            "persistence.volumes: a volume change is made live on the running instance; update without --recycle",
          );
        const why = refusalOf("update volumes", facts);
        if (why) throw new Refusal("conflict", `persistence.volumes: ${why}`);
        const instanceId = g?.ec2InstanceId;
        if (!instanceId) throw new Refusal("conflict", `${name} has no live EC2 instance for its volumes to change on`);
        const input: GrowInput = { name, generation: inst.generation, instanceId, spec, grow: volumes.grow, add: volumes.add };
        const wf = await this.d.engine.start("grow", name, input, "spec update", t);
        const what = [
          ...volumes.grow.map((v) => `${v.device} to ${v.sizeGiB} GiB ${v.volumeType}`),
          ...volumes.add.map((d) => `new volume ${d}`),
        ].join(", ");
        await t.events.add(name, "update-started", `spec update: ${what} on ${instanceId}; the spec is stored once in place`, wf);
        return wf;
      }
      if (opts.recycle) {
        const why = refusalOf("recycle", facts);
        if (why) throw new Refusal("conflict", facts.running.length ? `${why}; update without --recycle, or retry` : why);
        await admitPlannedWork(t, name);
      }
      await t.instances.setSpec(name, spec);
      await t.taskRuns.sync(name, spec.schedule.map(taskKey), this.d.calendar?.() ?? Date.now());
      for (const v of spec.persistence.volumes) await t.volumes.setMountPoint(name, v.device, v.mountPoint ?? null);
      await t.events.add(
        name,
        "updated",
        `spec updated${opts.recycle ? "; recycling to apply it now" : "; applied at the next generation"}`,
      );
      return null;
    });
    if (workflowId) return { workflowId };
    if (!opts.recycle) return { workflowId: null };
    return this.run(name, "recycle", "spec update");
  }

  /** Refuses (invalid, naming the device) a growth EC2 would refuse for its cool-down; changes nothing. */
  private async refuseCoolDown(name: string, region: string, grow: VolumeGrowth[]): Promise<void> {
    const ec2 = this.ec2(region);
    const describe = ec2?.describeVolumesModifications;
    if (!describe || grow.length === 0) return;
    const volumes = await this.d.store.volumes.list(name);
    const volumeOf = (device: string) => volumes.find((v) => v.device === device)?.volumeId ?? null;
    const ids = grow.map((g) => volumeOf(g.device)).filter((id): id is string => id !== null);
    const mods = await describe.call(ec2, ids);
    const since = this.d.modelMsSince ?? ((wallMs: number) => Date.now() - wallMs);
    const problems = coolDownProblems(grow, volumeOf, mods, since);
    if (problems.length) throw new Refusal("invalid", problems.join("; "));
  }

  /**
   * Delete a stateful instance: terminate it and delete its resources except the kinds in `keep`,
   * which expire after `ttlHours` (model hours; null keeps them until deleted by hand). 400 for a
   * TTL with nothing to keep, 404/409 as for every operation. When the delete finishes the instance
   * is archived under `NAME~<its createdAt ISO>` (unique: a name is created again only after the
   * earlier instance of it was deleted), which frees the name. A running instance is quiesced first
   * (preStop hook, sync, unmount) unless `force`.
   */
  async deleteInstance(
    name: string,
    o: { keep: KeepSet; ttlHours: number | null; force?: boolean; byGroup?: string },
  ): Promise<{ workflowId: string; archivedAs: string }> {
    if (o.ttlHours !== null && !KEEP_ITEMS.some((k) => o.keep[k]))
      throw new Refusal("invalid", "ttlHours: nothing is kept, so there is nothing for a TTL to expire (name what to keep with keep)");
    return this.d.store.tx(async (t) => {
      const { inst, facts } = await this.admit(t, name, "delete", { byGroup: o.byGroup });
      const archivedAs = `${name}~${new Date(inst.createdAt).toISOString()}`;
      const live = inst.state === "running" ? facts.liveInstanceId : null;
      const input: DeleteInput = {
        name,
        keep: { ...o.keep },
        ttlHours: o.ttlHours,
        archiveAs: archivedAs,
        ...(live && !o.force ? { quiesce: { instanceId: live } } : {}),
      };
      const wf = await this.d.engine.start("delete", name, input, "requested", t);
      await moveState(t, "delete", name, "during", `delete (keep: ${keptList(o.keep)})`);
      const ttl = o.ttlHours === null ? "" : `, kept for ${o.ttlHours} h`;
      const stop = !live ? "" : o.force ? `; forced: ${live} is terminated without its preStop hook` : `; ${live} quiesces first`;
      await t.events.add(name, "delete-started", `delete requested from ${inst.state} (keep: ${keptList(o.keep)}${ttl})${stop}`, wf);
      return { workflowId: wf, archivedAs };
    });
  }

  /**
   * The instance, if `start` may begin now (the lifecycle table admits it); `byGroup`: the group
   * that owns the member asks (its scale-down), which a member's own rule otherwise refuses.
   */
  /** Refuses (invalid, naming each field) a spec whose instance types cannot boot `image`; changes nothing. */
  /** Refuses a spec whose KMS key, root size or adopted volumes' encryption AWS would not honour (`storageProblems`). */
  private async refuseStorage(spec: StatefulInstanceSpec, bootImageId: string | null): Promise<void> {
    const deps = { ec2: this.ec2(spec.region), kms: this.kms(spec.region), region: spec.region, log: this.d.log };
    const problems = await storageProblems(deps, spec, await describeBootImage(deps, bootImageId));
    if (problems.length) throw new Refusal("invalid", problems.join("; "));
  }

  private async refuseArchitectureMismatch(spec: StatefulInstanceSpec, image: () => Promise<BootImage | null>): Promise<void> {
    const why = await architectureRefusal(this.ec2(spec.region), spec.launch.instanceTypes, image, "launch.instanceTypes", (l) =>
      this.d.log(`${spec.name}: ${l}`),
    );
    if (why) throw new Refusal("invalid", why);
  }

  /**
   * What the instance's next generation boots: with a persisted root, its own root (the lineage
   * recorded the architecture of the image or instance it began from); else the spec's image.
   */
  private async nextBootImage(name: string, spec: StatefulInstanceSpec): Promise<BootImage | null> {
    if (spec.persistence.root) {
      const root = await this.d.store.root.get(name);
      if (root?.architecture)
        return { architecture: root.architecture, label: `the root of ${name} (${root.imageId ?? "its first image"})` };
    }
    return specImage(this.ec2(spec.region), spec.launch.imageId);
  }

  /** The EC2 gateway of a spec's region (a region not managed here was refused by checkSpec). */
  private ec2(region: string): OperationsDeps["ec2"] {
    return this.d.regions ? this.d.regions.ec2(this.d.regions.of({ region })) : this.d.ec2;
  }

  private kms(region: string): KmsGateway | undefined {
    return this.d.regions ? this.d.regions.for(this.d.regions.of({ region })).kms : this.d.kms;
  }

  private async admit(t: StoreTx, name: string, start: StartName, o: { byGroup?: string } = {}) {
    const a = await admission(t, name);
    if (!a) throw new Refusal("not-found", `no stateful instance named ${name}`);
    const facts = o.byGroup && a.facts.group?.group === o.byGroup ? { ...a.facts, group: null } : a.facts;
    const why = refusalOf(start, facts);
    if (why) throw new Refusal("conflict", why);
    return a;
  }

  private async startResume(t: StoreTx, name: string, generation: number, from: ResumeInput["from"], reason: string): Promise<string> {
    const input: ResumeInput = { name, fromGeneration: generation, from };
    const wf = await this.d.engine.start("resume", name, input, reason, t);
    await t.events.add(name, "resume-started", `${reason}: launching generation ${generation + 1} from what ${name} kept (${from})`, wf);
    return wf;
  }

  /** Whether EC2 still runs the instance (a failed generation may or may not have one). */
  private async ec2Alive(region: string, instanceId: string): Promise<boolean> {
    const ec2 = this.ec2(region);
    if (!ec2) return true;
    const [i] = await ec2.describeInstances([instanceId]);
    return !!i && (i.state === "pending" || i.state === "running");
  }
}

/**
 * Fields a stateful instance cannot change: each change found, with the field named. With
 * `liveVolumes` (an instance's own update) data volumes may grow, change type/IOPS/throughput
 * within EC2's limits, and be added (planVolumeChanges, applied by the grow runbook); without it (a
 * group's template) the data volumes cannot change at all.
 */
export function immutableChanges(
  before: StatefulInstanceSpec,
  after: StatefulInstanceSpec,
  o: { liveVolumes?: boolean; coordinatorRegion?: string } = {},
): string[] {
  const out: string[] = [];
  if (after.name !== before.name) out.push(`name: cannot change (${before.name})`);
  // A spec stored before specs had to name the coordinator's region may carry another (it was
  // ignored: the instance runs in the coordinator's region); correcting it to that region is allowed.
  const correctsRegion = o.coordinatorRegion !== undefined && after.region === o.coordinatorRegion && before.region !== o.coordinatorRegion;
  if (after.region !== before.region && !correctsRegion) out.push(`region: cannot change (${before.region})`);
  if (o.liveVolumes) out.push(...planVolumeChanges(before, after).problems);
  else {
    const devs = (s: StatefulInstanceSpec) => s.persistence.volumes.map((v) => v.device).join(",");
    if (devs(after) !== devs(before)) out.push(`persistence.volumes: the devices cannot change (${devs(before) || "none"})`);
    for (const [i, v] of after.persistence.volumes.entries()) {
      const old = before.persistence.volumes[i];
      if (!old) continue;
      for (const f of ["sizeGiB", "type", "iops", "throughput", "fsType", "volumeId"] as const)
        if (v[f] !== old[f]) out.push(`persistence.volumes[${i}].${f}: cannot change on an existing volume (${String(old[f])})`);
    }
  }
  if (after.persistence.root !== before.persistence.root) out.push("persistence.root: cannot change");
  if (after.persistence.dataMethod !== before.persistence.dataMethod) out.push("persistence.dataMethod: cannot change");
  const enc = (s: StatefulInstanceSpec) => JSON.stringify(encryptionOf(s));
  if (enc(after) !== enc(before))
    out.push(
      `persistence.encryption: cannot change (${enc(before)}): the volumes, snapshots and images made so far keep their encryption; ` +
        "a new key needs a new instance from re-encrypted snapshot copies",
    );
  if (JSON.stringify(after.persistence.network) !== JSON.stringify(before.persistence.network))
    out.push("persistence.network: cannot change (the ENI and address are kept across generations)");
  return out;
}
