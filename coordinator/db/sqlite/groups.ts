import type { GroupQueries } from "../store.js";
import type { Sql } from "./statements.js";
import { type GroupRow, type MemberRow, toGroup, toMember } from "../rows.js";

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
