/** CreateTags / DeleteTags / DescribeTags over every taggable resource. */
import type { CreateTagsRequest, DeleteTagsRequest, DescribeTagsRequest } from "@aws-sdk/client-ec2";
import type { Ctx } from "../common.js";
import { applyFilters, checkTag, dryRun, paginate } from "../common.js";
import { Ec2Error, missing } from "../errors.js";
import type { Tags } from "../../world/types.js";
import type { World } from "../../world/world.js";

interface Taggable {
  id: string;
  type: string;
  tags: Tags;
}

/** prefix -> [resource type, NotFound code, where it lives] */
const KINDS: Array<[string, string, string, (w: World) => Map<string, { tags: Tags }>]> = [
  ["i", "instance", "InvalidInstanceID.NotFound", (w) => w.instances],
  ["vol", "volume", "InvalidVolume.NotFound", (w) => w.volumes],
  ["snap", "snapshot", "InvalidSnapshot.NotFound", (w) => w.snapshots],
  ["ami", "image", "InvalidAMIID.NotFound", (w) => w.images],
  ["eni", "network-interface", "InvalidNetworkInterfaceID.NotFound", (w) => w.enis],
  ["sir", "spot-instances-request", "InvalidSpotInstanceRequestID.NotFound", (w) => w.spotRequests],
  ["subnet", "subnet", "InvalidSubnetID.NotFound", (w) => w.subnets],
  ["sg", "security-group", "InvalidGroup.NotFound", (w) => w.securityGroups],
];

function resolve(w: World, id: string): Taggable {
  const m = /^([a-z]+)-[0-9a-f]+$/.exec(id);
  const kind = m ? KINDS.find((k) => k[0] === m[1]) : undefined;
  if (!kind || !/^[a-z]+-([0-9a-f]{8}|[0-9a-f]{17})$/.test(id)) throw new Ec2Error("InvalidID", `The ID '${id}' is not valid`);
  const r = kind[3](w).get(id);
  if (!r) throw new Ec2Error(kind[2], `The ID '${id}' does not exist`);
  return { id, type: kind[1], tags: r.tags };
}

export function createTags(ctx: Ctx, input: CreateTagsRequest) {
  const ids = input.Resources ?? [];
  if (ids.length === 0) throw missing("ResourceId.1");
  const tags = input.Tags ?? [];
  if (tags.length === 0) throw missing("Tag.1.Key");
  const targets = ids.map((id) => resolve(ctx.world, id));
  for (const [i, t] of tags.entries()) checkTag(t.Key, t.Value, `Tag.${i + 1}`);
  for (const r of targets) {
    const keys = new Set([...r.tags.keys(), ...tags.map((t) => t.Key!)]);
    if (keys.size > 50)
      throw new Ec2Error("TagLimitExceeded", `The maximum number of tags per resource is 50 (${r.id} would have ${keys.size})`);
  }
  dryRun(ctx, input);
  for (const r of targets) for (const t of tags) r.tags.set(t.Key!, t.Value ?? "");
  return {};
}

export function deleteTags(ctx: Ctx, input: DeleteTagsRequest) {
  const ids = input.Resources ?? [];
  if (ids.length === 0) throw missing("ResourceId.1");
  const targets = ids.map((id) => resolve(ctx.world, id));
  (input.Tags ?? []).forEach((t, i) => {
    if (t.Key === undefined || t.Key === "") throw missing(`Tag.${i + 1}.Key`);
    if (t.Key.toLowerCase().startsWith("aws:"))
      throw new Ec2Error("InvalidParameterValue", `Tag keys starting with 'aws:' are reserved for AWS use (Tag.${i + 1}.Key)`);
  });
  dryRun(ctx, input);
  for (const r of targets) {
    if (!input.Tags || input.Tags.length === 0) r.tags.clear();
    else for (const t of input.Tags) if (t.Value === undefined || r.tags.get(t.Key!) === t.Value) r.tags.delete(t.Key!);
  }
  return {};
}

export function describeTags(ctx: Ctx, input: DescribeTagsRequest) {
  const w = ctx.world;
  const rows: Array<{ id: string; type: string; key: string; value: string }> = [];
  for (const [, type, , where] of KINDS) {
    for (const [id, r] of where(w)) for (const [key, value] of r.tags) rows.push({ id, type, key, value });
  }
  const out = applyFilters(rows, input.Filters, {
    "resource-id": (r) => r.id,
    "resource-type": (r) => r.type,
    key: (r) => r.key,
    value: (r) => r.value,
  });
  const { page, nextToken } = paginate(out, input, "DescribeTags", [5, 1000]);
  dryRun(ctx, input);
  return { Tags: page.map((r) => ({ ResourceId: r.id, ResourceType: r.type as never, Key: r.key, Value: r.value })), NextToken: nextToken };
}
