/**
 * What can be started for a stateful instance, and when: the admission rules for every workflow
 * (one replacement at a time, only the live generation is replaced, a snapshot never holds up a
 * replacement) and the operations the HTTP API and the CLI ask for. Check-and-start happens in one
 * store transaction, so two triggers at the same moment start one workflow.
 */
import type { StatefulInstanceSpec } from "../shared/spec.js";
import { ApiFault } from "./api/types.js";
import type { Store } from "./db/store.js";
import type { WorkflowEngine } from "./workflow/engine.js";
import type { ReplaceInput } from "./workflow/runbooks/replace.js";
import type { SnapshotInput } from "./workflow/runbooks/snapshot.js";
import { unsupportedFeatures } from "./workflow/runbooks/support.js";

export type Operation = "pause" | "resume" | "recycle" | "snapshot";

export interface OperationsDeps {
  store: Store;
  engine: WorkflowEngine;
  log: (line: string) => void;
}

export class Operations {
  constructor(private readonly d: OperationsDeps) {}

  /** Start a replacement unless one is already running or `input.instanceId` is not the live generation. */
  async startReplace(input: ReplaceInput, why: string): Promise<string | null> {
    const id = await this.d.store.tx(async (t) => {
      const inst = await t.instances.get(input.name);
      if (!inst || inst.state !== "running") return null;
      const g = await t.generations.get(input.name, inst.generation);
      if (!g || g.status !== "live" || g.ec2InstanceId !== input.instanceId) return null;
      // A snapshot in flight does not hold up a replacement (it fails on its own when the instance goes).
      if ((await t.workflows.runningFor(input.name)).some((w) => w.kind !== "snapshot")) return null;
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
      const inst = await t.instances.get(name);
      if (!inst || inst.state !== "running") return null;
      const g = await t.generations.get(name, inst.generation);
      if (!g?.ec2InstanceId || g.status !== "live") return null;
      if ((await t.workflows.runningFor(name)).length > 0) return null;
      if ((await t.volumes.list(name)).length === 0) return null;
      const input: SnapshotInput = { name, instanceId: g.ec2InstanceId, generation: g.generation, reason };
      const wf = await this.d.engine.start("snapshot", name, input, reason, t);
      await t.events.add(name, "snapshot-started", `${reason}: snapshotting the data volumes of ${g.ec2InstanceId}`, wf);
      return wf;
    });
  }

  /** Create a stateful instance from a validated spec; changes nothing when refused. */
  async createInstance(spec: StatefulInstanceSpec): Promise<{ workflowId: string }> {
    const unsupported = unsupportedFeatures(spec);
    if (unsupported.length) throw new ApiFault("invalid", unsupported.map((u) => `${u.path}: ${u.reason}`).join("; "));
    const workflowId = await this.d.store.tx(async (t) => {
      if (await t.instances.get(spec.name)) throw new ApiFault("conflict", `stateful instance ${spec.name} already exists`);
      await t.instances.insert(spec.name, spec, "creating");
      for (const v of spec.persistence.volumes) await t.volumes.declare(spec.name, v.device, v.mountPoint, v.fsType);
      const wf = await this.d.engine.start("create", spec.name, { name: spec.name }, "create", t);
      await t.events.add(spec.name, "created", `create requested (workflow ${wf})`, wf);
      return wf;
    });
    return { workflowId };
  }

  /** An operation asked for through the API or the CLI. */
  async run(name: string, op: Operation): Promise<{ workflowId: string }> {
    const inst = await this.d.store.instances.get(name);
    if (!inst) throw new ApiFault("not-found", `no stateful instance named ${name}`);
    if (op !== "snapshot") throw new ApiFault("conflict", `${op} is not supported by this coordinator yet`);
    if ((await this.d.store.volumes.list(name)).length === 0) throw new ApiFault("conflict", `${name} has no data volumes to snapshot`);
    const running = (await this.d.store.workflows.runningFor(name))[0];
    if (running) throw new ApiFault("conflict", `${name} is busy with ${running.kind} ${running.id}`);
    const id = await this.startSnapshot(name, "requested");
    if (!id) throw new ApiFault("conflict", `${name} is ${inst.state}; only a running instance can be snapshotted`);
    return { workflowId: id };
  }
}
