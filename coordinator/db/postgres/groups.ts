import type { Async, GroupQueries } from "../store.js";
import type { Sql } from "./sql.js";
import { type GroupRow, type MemberRow, toGroup, toMember } from "../rows.js";

export function groupQueries(sql: Sql, now: () => number): Async<GroupQueries> {
  return {
    async insert(name, spec, state) {
      const t = now();
      await sql.run(
        "INSERT INTO stateful_groups (name, spec, state, state_reason, created_at, updated_at) VALUES ($1, $2, $3, NULL, $4, $5)",
        [name, JSON.stringify(spec), state, t, t],
      );
    },
    async get(name) {
      const r = await sql.row<GroupRow>("SELECT * FROM stateful_groups WHERE name = $1", [name]);
      return r ? toGroup(r) : null;
    },
    async list() {
      return (await sql.rows<GroupRow>('SELECT * FROM stateful_groups ORDER BY name COLLATE "C"')).map(toGroup);
    },
    async setSpec(name, spec) {
      await sql.run("UPDATE stateful_groups SET spec = $1, updated_at = $2 WHERE name = $3", [JSON.stringify(spec), now(), name]);
    },
    async setState(name, state, reason = null) {
      await sql.run("UPDATE stateful_groups SET state = $1, state_reason = $2, updated_at = $3 WHERE name = $4", [
        state,
        reason,
        now(),
        name,
      ]);
    },
    async remove(name) {
      await sql.run("DELETE FROM stateful_groups WHERE name = $1", [name]);
    },
    async addMember(m) {
      // The first claim of an ordinal wins; an address or instance another member holds is refused
      // by the unique indexes (an error, as in the SQLite store).
      await sql.run(
        "INSERT INTO stateful_group_members (group_name, ordinal, instance, private_ip, subnet_id, availability_zone, status, created_at) " +
          "VALUES ($1, $2, $3, $4, $5, $6, 'active', $7) ON CONFLICT (group_name, ordinal) DO NOTHING",
        [m.group, m.ordinal, m.instance, m.privateIp, m.subnetId, m.availabilityZone, now()],
      );
    },
    async members(group) {
      return (await sql.rows<MemberRow>("SELECT * FROM stateful_group_members WHERE group_name = $1 ORDER BY ordinal", [group])).map(
        toMember,
      );
    },
    async memberOf(instance) {
      const r = await sql.row<MemberRow>("SELECT * FROM stateful_group_members WHERE instance = $1", [instance]);
      return r ? toMember(r) : null;
    },
    async setMemberStatus(group, ordinal, status) {
      await sql.run("UPDATE stateful_group_members SET status = $1 WHERE group_name = $2 AND ordinal = $3", [status, group, ordinal]);
    },
    async removeMember(group, ordinal) {
      await sql.run("DELETE FROM stateful_group_members WHERE group_name = $1 AND ordinal = $2", [group, ordinal]);
    },
  };
}
