/**
 * What a workflow works on: a stateful instance or a group. The store keeps it as one text key in
 * the workflow's `instance` column (and timeline events of a group under the same key): an
 * instance's name as it is, a group as `group:NAME`. No instance name has a colon, so the two never
 * meet. This module alone writes and reads that encoding; stores written by earlier versions hold
 * the same keys.
 */
export type WorkflowOwner = { kind: "instance"; name: string } | { kind: "group"; name: string };

const GROUP_PREFIX = "group:";

/** The key an owner is stored under. */
export function ownerKey(owner: WorkflowOwner): string {
  return owner.kind === "group" ? `${GROUP_PREFIX}${owner.name}` : owner.name;
}

/** The owner a stored key names. */
export function ownerOf(key: string): WorkflowOwner {
  return key.startsWith(GROUP_PREFIX) ? { kind: "group", name: key.slice(GROUP_PREFIX.length) } : { kind: "instance", name: key };
}

/** The key a group's workflows and timeline events are stored under. */
export const groupKey = (group: string): string => ownerKey({ kind: "group", name: group });
