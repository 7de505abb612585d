/**
 * What the API and the CLI ask of stateful groups: create, scale, update, delete, describe, list.
 * Each check-and-start happens in one store transaction; a refused request changes nothing. One
 * group workflow at a time: a group busy with one answers 409 naming it.
 */
import { KEEP_ITEMS, KEEP_NOTHING, type KeepSet } from "../../shared/deletion.js";
import type { GroupDetail, GroupMemberView, GroupSummary } from "../../shared/group-api.js";
import { type GroupSpec, MAX_GROUP_SIZE, memberName, memberSpec } from "../../shared/group-spec.js";
import { Refusal } from "../refusal.js";
import type { Ec2Gateway } from "../cloud/gateway.js";
import type { GroupMember, GroupState, StatefulGroup, Store, StoreTx } from "../db/store.js";
import { immutableChanges } from "../operations.js";
import type { Engine } from "../workflow/kinds.js";
import type { Regions } from "../cloud/regions.js";
import { unsupportedFeatures } from "../workflow/runbooks/support.js";
import { type ArchitectureGateway, architectureRefusal, specImage } from "../architecture.js";
import { unavailableMembers } from "../planned-work.js";
import { spread } from "./pool.js";
import { sameSpec } from "./same-spec.js";
import { type GroupScaleInput, type GroupUpdateInput, groupKey } from "./runbooks.js";

export interface GroupOperationsDeps {
  store: Store;
  engine: Pick<Engine, "start">;
  ec2?: Pick<Ec2Gateway, "describeSubnets"> & ArchitectureGateway;
  /** The home region (unit tests without `regions`: the only one, and a template naming another is refused). */
  region?: string;
  /** The regions this coordinator manages: a template's EC2 checks go to its own region's gateway. */
  regions?: Regions;
  /** Where a skipped pre-check is noted (e.g. EC2 could not be asked about instance types). */
  log?: (line: string) => void;
}

/**
 * A pool address belongs to one group: refuses `spec` when its ipPool lists an address that the
 * ipPool of another group on one of the same subnets lists too (both would hand it out).
 */
async function refuseSharedAddresses(t: StoreTx, spec: GroupSpec): Promise<void> {
  const subnets = new Set(memberSpec(spec, 0).launch.subnetIds);
  for (const other of await t.groups.list()) {
    if (other.name === spec.name) continue;
    if (!memberSpec(other.spec, 0).launch.subnetIds.some((s) => subnets.has(s))) continue;
    const shared = spec.ipPool.filter((ip) => other.spec.ipPool.includes(ip));
    if (shared.length)
      throw new Refusal(
        "conflict",
        `ipPool: ${shared.join(", ")} ${shared.length === 1 ? "is" : "are"} in the ipPool of group ${other.name} (same subnets); ` +
          "a pool address belongs to one group",
      );
  }
}

export class GroupOperations {
  constructor(private readonly d: GroupOperationsDeps) {}

  async create(spec: GroupSpec): Promise<{ workflowId: string }> {
    refuseUnsupported(spec, this.regionList());
    await this.refuseArchitectureMismatch(spec);
    const workflowId = await this.d.store.tx(async (t) => {
      if (await t.groups.get(spec.name)) throw new Refusal("conflict", `group ${spec.name} already exists`);
      for (let k = 0; k < spec.size; k++) {
        const name = memberName(spec.name, k);
        if (await t.instances.get(name))
          throw new Refusal("conflict", `stateful instance ${name} already exists (a member name of group ${spec.name})`);
      }
      await refuseSharedAddresses(t, spec);
      await t.groups.insert(spec.name, spec, "creating");
      const input: GroupScaleInput = { group: spec.name, to: spec.size, keep: { ...KEEP_NOTHING }, ttlHours: null };
      const wf = await this.d.engine.start("group-scale", groupKey(spec.name), input, "create", t);
      await t.events.add(groupKey(spec.name), "group-created", `group of ${spec.size} requested (workflow ${wf})`, wf);
      return wf;
    });
    return { workflowId };
  }

  /** Scale to `size`: new members take the next free addresses; removed ones (highest ordinals) are deleted keeping `keep`. */
  async scale(name: string, size: number, o: { keep: KeepSet; ttlHours: number | null }): Promise<{ workflowId: string }> {
    if (!Number.isInteger(size) || size < 0 || size > MAX_GROUP_SIZE)
      throw new Refusal("invalid", `size: must be a whole number from 0 to ${MAX_GROUP_SIZE}`);
    checkKeep(o);
    const workflowId = await this.d.store.tx(async (t) => {
      const g = await this.admit(t, name);
      if (size > g.spec.ipPool.length)
        throw new Refusal(
          "invalid",
          `size: ${size} members need ${size} addresses; the ipPool of group ${name} lists ${g.spec.ipPool.length}`,
        );
      const members = await t.groups.members(name);
      for (let k = 0; k < size; k++) {
        const member = memberName(name, k);
        if (!members.some((m) => m.ordinal === k) && (await t.instances.get(member)))
          throw new Refusal("conflict", `stateful instance ${member} already exists (a member name of group ${name})`);
      }
      for (const m of members)
        if (m.status === "removing" && m.ordinal < size)
          throw new Refusal("conflict", `${m.instance} is being removed; scale to at most ${m.ordinal} until its delete has finished`);
      await t.groups.setSpec(name, { ...g.spec, size });
      await t.groups.setState(name, "scaling", `scaling from ${g.spec.size} to ${size}`);
      const input: GroupScaleInput = { group: name, to: size, keep: { ...o.keep }, ttlHours: o.ttlHours };
      const wf = await this.d.engine.start("group-scale", groupKey(name), input, "scale", t);
      await t.events.add(groupKey(name), "group-scaling", `scale from ${g.spec.size} to ${size} (workflow ${wf})`, wf);
      return wf;
    });
    return { workflowId };
  }

  /**
   * Store a new group spec. A changed template rolls out member by member (group-update); a change
   * of maxUnavailable or ipPool alone applies at once. The size changes only through scale.
   */
  async update(name: string, spec: GroupSpec): Promise<{ workflowId: string | null }> {
    if (spec.name !== name) throw new Refusal("invalid", `name: cannot change (the URL names ${name}, the spec ${spec.name})`);
    refuseUnsupported(spec, this.regionList());
    await this.refuseArchitectureMismatch(spec);
    return this.d.store.tx(async (t) => {
      const g = await this.admit(t, name);
      if (spec.size !== g.spec.size)
        throw new Refusal("invalid", `size: ${spec.size} differs from ${g.spec.size}; change it with spotkeep group scale`);
      const members = await t.groups.members(name);
      const lost = members.filter((m) => !spec.ipPool.includes(m.privateIp));
      if (lost.length)
        throw new Refusal(
          "invalid",
          `ipPool: cannot drop ${lost.map((m) => `${m.privateIp} (owned by ${m.instance})`).join(", ")}; an address leaves the pool only with its member`,
        );
      await refuseSharedAddresses(t, spec);
      const problems = immutableChanges(memberSpec(g.spec, 0), memberSpec(spec, 0)).map((p) => `template.${p}`);
      if (problems.length) throw new Refusal("invalid", problems.join("; "));
      await t.groups.setSpec(name, spec);
      // Members already on the template (an earlier roll-out that stopped got that far) are not recycled
      // again; a failed member is brought back.
      let behind = 0;
      for (const m of members) {
        const inst = await t.instances.get(m.instance);
        if (m.status === "active" && inst && (inst.state === "failed" || !sameSpec(inst.spec, memberSpec(spec, m.ordinal)))) behind++;
      }
      if (behind === 0) {
        await t.events.add(groupKey(name), "group-updated", "group spec updated (every member is on the template: nothing to roll out)");
        return { workflowId: null };
      }
      await t.groups.setState(name, "updating", `rolling the new template over ${members.length} member${members.length === 1 ? "" : "s"}`);
      const input: GroupUpdateInput = { group: name, template: spec.template };
      const wf = await this.d.engine.start("group-update", groupKey(name), input, "update", t);
      await t.events.add(groupKey(name), "group-updating", `template updated; rolling it member by member (workflow ${wf})`, wf);
      return { workflowId: wf };
    });
  }

  /** Delete every member (keeping `keep`), then the group; its addresses return to nobody. */
  async delete(name: string, o: { keep: KeepSet; ttlHours: number | null }): Promise<{ workflowId: string }> {
    checkKeep(o);
    const workflowId = await this.d.store.tx(async (t) => {
      const g = await this.admit(t, name);
      await t.groups.setState(name, "deleting", "deleting every member");
      const input: GroupScaleInput = { group: name, to: 0, keep: { ...o.keep }, ttlHours: o.ttlHours, removeGroup: true };
      const wf = await this.d.engine.start("group-scale", groupKey(name), input, "delete", t);
      await t.events.add(groupKey(name), "group-deleting", `delete of ${g.spec.size} members requested (workflow ${wf})`, wf);
      return wf;
    });
    return { workflowId };
  }

  /** A group workflow ended: the group is ready, or stopped where the workflow failed. */
  async finished(group: string, kind: string, ok: boolean, error: string | null): Promise<void> {
    await this.d.store.tx(async (t) => {
      const g = await t.groups.get(group);
      if (!g) return;
      if (ok) {
        await t.groups.setState(group, "ready", null);
        await t.events.add(groupKey(group), `${kind}-succeeded`, `${kind} finished`);
        return;
      }
      const where = g.stateReason ? ` (${g.stateReason})` : "";
      await t.groups.setState(group, "stopped", `${kind} stopped${where}: ${error ?? "no error recorded"}`);
      await t.events.add(groupKey(group), `${kind}-failed`, `${kind} stopped${where}: ${error ?? "no error recorded"}`);
    });
  }

  /** The group's timeline (scaling, addresses allocated, skipped and released, roll-out progress), oldest first. */
  async events(name: string): Promise<Array<{ at: string; kind: string; message: string; workflowId: string | null }>> {
    // A deleted group's timeline stays under its name; a new group of that name starts its own.
    const since = (await this.d.store.groups.get(name))?.createdAt ?? Number.NEGATIVE_INFINITY;
    const events = (await this.d.store.events.list(groupKey(name), 200)).filter((e) => e.at >= since);
    return events.map((e) => ({
      at: new Date(e.at).toISOString(),
      kind: e.kind,
      message: e.message,
      workflowId: e.workflowId,
    }));
  }

  async list(): Promise<GroupSummary[]> {
    const out: GroupSummary[] = [];
    for (const g of await this.d.store.groups.list()) out.push((await this.view(g)).summary);
    return out;
  }

  async describe(name: string): Promise<GroupDetail | null> {
    const g = await this.d.store.groups.get(name);
    if (!g) return null;
    const { summary, members } = await this.view(g);
    const ec2 = this.ec2(memberSpec(g.spec, 0).region);
    const subnets = ec2 ? await ec2.describeSubnets(g.spec.template.launch.subnetIds).catch(() => []) : [];
    const owned = new Set(members.map((m) => m.privateIp));
    return {
      ...summary,
      ipPool: g.spec.ipPool,
      freeAddresses: g.spec.ipPool.filter((ip) => !owned.has(ip)),
      spread: spread(subnets, members),
      memberList: members,
      spec: g.spec,
      createdAt: new Date(g.createdAt).toISOString(),
      updatedAt: new Date(g.updatedAt).toISOString(),
    };
  }

  private async view(g: StatefulGroup): Promise<{ summary: GroupSummary; members: GroupMemberView[] }> {
    const store = this.d.store;
    const rows = await store.groups.members(g.name);
    const { down } = await unavailableMembers(store, rows);
    const members: GroupMemberView[] = [];
    const byState: Record<string, number> = {};
    for (const m of rows) {
      const v = await memberView(store, m, down.includes(m.instance));
      if (v.state) byState[v.state] = (byState[v.state] ?? 0) + 1;
      members.push(v);
    }
    const wf = (await store.workflows.runningFor(groupKey(g.name)))[0];
    return {
      summary: {
        name: g.name,
        state: g.state,
        stateReason: g.stateReason,
        size: g.spec.size,
        maxUnavailable: g.spec.maxUnavailable,
        members: rows.length,
        memberNames: rows.map((m) => m.instance),
        byState,
        unavailable: down.length,
        workflowId: wf?.id ?? null,
      },
      members,
    };
  }

  /** The group, if no group workflow is running for it. */
  /** Refuses (invalid, naming each template field) instance types that cannot boot the template's image; changes nothing. */
  private async refuseArchitectureMismatch(spec: GroupSpec): Promise<void> {
    const member = memberSpec(spec, 0);
    const launch = member.launch;
    const ec2 = this.ec2(member.region);
    const why = await architectureRefusal(
      ec2,
      launch.instanceTypes,
      () => specImage(ec2, launch.imageId),
      "template.launch.instanceTypes",
      (l) => this.d.log?.(`group ${spec.name}: ${l}`),
    );
    if (why) throw new Refusal("invalid", why);
  }

  private regionList(): readonly string[] | undefined {
    return this.d.regions?.allowed ?? (this.d.region ? [this.d.region] : undefined);
  }

  /** The EC2 gateway of a template's region (a region not managed here was refused before). */
  private ec2(region: string): GroupOperationsDeps["ec2"] {
    return this.d.regions ? this.d.regions.ec2(this.d.regions.of({ region })) : this.d.ec2;
  }

  private async admit(t: StoreTx, name: string): Promise<StatefulGroup & { state: GroupState }> {
    const g = await t.groups.get(name);
    if (!g) throw new Refusal("not-found", `no group named ${name}`);
    const running = (await t.workflows.runningFor(groupKey(name)))[0];
    if (running) throw new Refusal("conflict", `group ${name} is busy with ${running.kind} ${running.id}`);
    if (g.state === "deleting") throw new Refusal("conflict", `group ${name} is being deleted`);
    return g;
  }
}

async function memberView(store: Store, m: GroupMember, unavailable: boolean): Promise<GroupMemberView> {
  const inst = await store.instances.get(m.instance);
  const g = inst && inst.generation > 0 ? await store.generations.get(m.instance, inst.generation) : null;
  const net = await store.network.get(m.instance);
  return {
    ordinal: m.ordinal,
    name: m.instance,
    privateIp: m.privateIp,
    subnetId: m.subnetId,
    availabilityZone: m.availabilityZone,
    membership: m.status,
    state: inst?.state ?? null,
    stateReason: inst?.stateReason ?? null,
    generation: inst?.generation ?? null,
    instanceId: g && g.status !== "ended" ? g.ec2InstanceId : null,
    eniId: net?.eniId ?? null,
    unavailable,
  };
}

function refuseUnsupported(spec: GroupSpec, regions: readonly string[] | undefined): void {
  const unsupported = unsupportedFeatures(memberSpec(spec, 0), { regions });
  if (unsupported.length) throw new Refusal("invalid", unsupported.map((u) => `template.${u.path}: ${u.reason}`).join("; "));
}

function checkKeep(o: { keep: KeepSet; ttlHours: number | null }): void {
  if (o.ttlHours !== null && !KEEP_ITEMS.some((k) => o.keep[k]))
    throw new Refusal("invalid", "ttlHours: nothing is kept, so there is nothing for a TTL to expire (name what to keep with keep)");
}
