/** The inputs of the group runbooks (coordinator/groups/scale.ts and update.ts), as recorded with their workflows. */
import type { KeepSet } from "../../shared/deletion.js";
import type { MemberTemplate } from "../../shared/group-spec.js";

export interface GroupScaleInput {
  group: string;
  to: number;
  keep: KeepSet;
  ttlHours: number | null;
  /** The group's delete: scale to 0, then remove the group. */
  removeGroup?: boolean;
}

export interface GroupUpdateInput {
  group: string;
  template: MemberTemplate;
}
