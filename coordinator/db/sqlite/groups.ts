/** Stateful groups and their members (the pool addresses they own). */
import type { GroupSpec } from "../../../shared/group-spec.js";
import type { GroupMember, GroupQueries, GroupState, StatefulGroup } from "../store.js";
import type { Sql } from "./statements.js";

interface GroupRow {
  name: string;
  spec: string;
  state: string;
  state_reason: string | null;
  created_at: number;
  updated_at: number;
}

interface MemberRow {
  group_name: string;
  ordinal: number;
  instance: string;
  private_ip: string;
  subnet_id: string;
  availability_zone: string;
  status: string;
  created_at: number;
}

const toGroup = (r: GroupRow): StatefulGroup => ({
  name: r.name,
  spec: JSON.parse(r.spec) as GroupSpec,
  state: r.state as GroupState,
  stateReason: r.state_reason,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const toMember = (r: MemberRow): GroupMember => ({
  group: r.group_name,
  ordinal: r.ordinal,
  instance: r.instance,
  privateIp: r.private_ip,
  subnetId: r.subnet_id,
  availabilityZone: r.availability_zone,
  status: r.status as GroupMember["status"],
  createdAt: r.created_at,
});

export function groupQueries(sql: Sql, now: () => number): GroupQueries {
  return {
    insert(name, spec, state) {
      const t = now();
      sql("INSERT INTO stateful_groups (name, spec, state, state_reason, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)").run(
        name,
        JSON.stringify(spec),
        state,
        t,
        t,
      );
    },
    get(name) {
      const r = sql("SELECT * FROM stateful_groups WHERE name = ?").get(name) as GroupRow | undefined;
      return r ? toGroup(r) : null;
    },
    list() {
      return (sql("SELECT * FROM stateful_groups ORDER BY name").all() as GroupRow[]).map(toGroup);
    },
    setSpec(name, spec) {
      sql("UPDATE stateful_groups SET spec = ?, updated_at = ? WHERE name = ?").run(JSON.stringify(spec), now(), name);
    },
    setState(name, state, reason = null) {
      sql("UPDATE stateful_groups SET state = ?, state_reason = ?, updated_at = ? WHERE name = ?").run(state, reason, now(), name);
    },
    remove(name) {
      sql("DELETE FROM stateful_groups WHERE name = ?").run(name);
    },
    addMember(m) {
      const existing = sql("SELECT 1 FROM stateful_group_members WHERE group_name = ? AND ordinal = ?").get(m.group, m.ordinal);
      if (existing) return;
      sql(
        `INSERT INTO stateful_group_members (group_name, ordinal, instance, private_ip, subnet_id, availability_zone, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?, 'active', ?)`,
      ).run(m.group, m.ordinal, m.instance, m.privateIp, m.subnetId, m.availabilityZone, now());
    },
    members(group) {
      return (sql("SELECT * FROM stateful_group_members WHERE group_name = ? ORDER BY ordinal").all(group) as MemberRow[]).map(toMember);
    },
    memberOf(instance) {
      const r = sql("SELECT * FROM stateful_group_members WHERE instance = ?").get(instance) as MemberRow | undefined;
      return r ? toMember(r) : null;
    },
    setMemberStatus(group, ordinal, status) {
      sql("UPDATE stateful_group_members SET status = ? WHERE group_name = ? AND ordinal = ?").run(status, group, ordinal);
    },
    removeMember(group, ordinal) {
      sql("DELETE FROM stateful_group_members WHERE group_name = ? AND ordinal = ?").run(group, ordinal);
    },
  };
}
