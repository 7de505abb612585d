/** Helpers every action uses: DryRun, filters, pagination, tags, id checks. */
import type { Filter, Tag, TagSpecification } from "@aws-sdk/client-ec2";
import type { World } from "../world/world.js";
import type { Tags } from "../world/types.js";
import { wellFormed } from "../world/ids.js";
import { Ec2Error, invalidValue, missing } from "./errors.js";

export interface Ctx {
  world: World;
  action: string;
  /** Set when an IAM policy is enforced: throws UnauthorizedOperation when the request is not allowed. */
  authorize?: (input: Record<string, unknown>) => void;
  /** The handler reached its authorisation point. */
  authorized?: boolean;
}

/**
 * Every handler calls this once it has validated the request and before it changes anything: the
 * request is authorised here (after validation, like EC2), then a DryRun that would have succeeded
 * is reported as an error (DryRunOperation, HTTP 412) and changes nothing.
 */
export function dryRun(ctx: Ctx, input: { DryRun?: boolean }): void {
  ctx.authorize?.(input as Record<string, unknown>);
  ctx.authorized = true;
  if (input.DryRun === true) throw new Ec2Error("DryRunOperation", "Request would have succeeded, but DryRun flag is set.");
}

export function required<T>(value: T | undefined | null, param: string): T {
  if (value === undefined || value === null || (typeof value === "string" && value === "")) throw missing(param);
  return value;
}

/** Check an id's form (prefix + 17 hex digits): `Invalid<Kind>ID.Malformed` naming the value. */
export function checkId(id: string, prefix: string, malformedCode: string): void {
  if (!wellFormed(id, prefix)) throw new Ec2Error(malformedCode, `Invalid id: "${id}" (expecting "${prefix}-...")`);
}

export function integer(value: number | undefined, param: string, min?: number, max?: number): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value)) throw invalidValue(param, value, "Expected an integer");
  if (min !== undefined && value < min) throw invalidValue(param, value, `Must be at least ${min}`);
  if (max !== undefined && value > max) throw invalidValue(param, value, `Must be at most ${max}`);
  return value;
}

export function oneOf<T extends string>(value: string | undefined, param: string, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw invalidValue(param, value, `Valid values: ${allowed.join(", ")}`);
  return value as T;
}

// ---- tags ---------------------------------------------------------------------------------

export function tagList(tags: Tags): Tag[] {
  return [...tags].map(([Key, Value]) => ({ Key, Value }));
}

export function checkTag(key: string | undefined, value: string | undefined, where: string): void {
  if (key === undefined || key === "") throw missing(`${where}.Key`);
  if (key.length > 128) throw invalidValue(`${where}.Key`, key, "Tag keys are at most 128 characters");
  if ((value ?? "").length > 256) throw invalidValue(`${where}.Value`, value, "Tag values are at most 256 characters");
  if (key.toLowerCase().startsWith("aws:"))
    throw invalidValue(`${where}.Key`, key, "Tag keys starting with 'aws:' are reserved for AWS use");
}

/** Validate TagSpecification.N against the resource types an action can tag; returns type -> tags. */
export function tagSpecs(specs: TagSpecification[] | undefined, allowed: readonly string[]): Map<string, Tags> {
  const out = new Map<string, Tags>();
  (specs ?? []).forEach((spec, i) => {
    const where = `TagSpecification.${i + 1}`;
    const type = required(spec.ResourceType, `${where}.ResourceType`);
    if (!allowed.includes(type)) throw invalidValue(`${where}.ResourceType`, type, `This action can tag: ${allowed.join(", ")}`);
    if (!spec.Tags || spec.Tags.length === 0) throw new Ec2Error("InvalidParameterValue", "Tag specification must have at least one tag");
    if (out.has(type))
      throw new Ec2Error(
        "InvalidParameterValue",
        `The same resource type may not be specified more than once in tag specifications: ${type}`,
      );
    const tags: Tags = new Map();
    spec.Tags.forEach((t, j) => {
      checkTag(t.Key, t.Value, `${where}.Tag.${j + 1}`);
      tags.set(t.Key!, t.Value ?? "");
    });
    if (tags.size > 50) throw new Ec2Error("TagLimitExceeded", "The maximum number of tags per resource is 50");
    out.set(type, tags);
  });
  return out;
}

// ---- filters ------------------------------------------------------------------------------

export type FilterFn<T> = (r: T) => ReadonlyArray<string | number | boolean | undefined> | string | number | boolean | undefined;

function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "\\" && i + 1 < glob.length) re += glob[++i]!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    else if (c === "*") re += ".*";
    else if (c === "?") re += ".";
    else re += c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`, "s");
}

/** OR within a filter's values, AND across filters; `*`/`?` wildcards; unknown name -> error. */
export function applyFilters<T>(items: T[], filters: Filter[] | undefined, fns: Record<string, FilterFn<T>>, tagsOf?: (r: T) => Tags): T[] {
  if (!filters || filters.length === 0) return items;
  const preds = filters.map((f, i) => {
    const name = required(f.Name, `Filter.${i + 1}.Name`);
    const values = f.Values ?? [];
    if (values.length === 0) throw new Ec2Error("InvalidParameterValue", `The filter '${name}' requires at least one value`);
    const res = values.map(globToRegExp);
    let get: FilterFn<T> | undefined = fns[name];
    if (!get && tagsOf) {
      if (name.startsWith("tag:")) {
        const key = name.slice(4);
        get = (r) => tagsOf(r).get(key);
      } else if (name === "tag-key") get = (r) => [...tagsOf(r).keys()];
      else if (name === "tag-value") get = (r) => [...tagsOf(r).values()];
    }
    if (!get) throw new Ec2Error("InvalidParameterValue", `The filter '${name}' is invalid`);
    const g = get;
    return (r: T) => {
      const v = g(r);
      const vals = (Array.isArray(v) ? v : [v]).filter((x) => x !== undefined).map(String);
      return vals.some((x) => res.some((re) => re.test(x)));
    };
  });
  return items.filter((r) => preds.every((p) => p(r)));
}

// ---- pagination ---------------------------------------------------------------------------

export interface PageInput {
  MaxResults?: number;
  NextToken?: string;
}

/**
 * One page of `items` (stable order). Tokens are opaque to clients but bound to the action and
 * position; anything else is InvalidPaginationToken.
 */
export function paginate<T>(items: T[], input: PageInput, action: string, range: [number, number]): { page: T[]; nextToken?: string } {
  let offset = 0;
  if (input.NextToken !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(input.NextToken, "base64url").toString("utf8"));
    } catch {
      parsed = null;
    }
    const p = parsed as { a?: unknown; o?: unknown } | null;
    if (!p || p.a !== action || typeof p.o !== "number" || !Number.isInteger(p.o) || p.o < 0) {
      throw new Ec2Error("InvalidPaginationToken", `The specified pagination token is not valid or is expired: ${input.NextToken}`);
    }
    offset = p.o;
  }
  if (input.MaxResults === undefined) return { page: items.slice(offset) };
  const max = input.MaxResults;
  if (!Number.isInteger(max) || max < range[0] || max > range[1]) {
    throw new Ec2Error(
      "InvalidParameterValue",
      `Value ( ${max} ) for parameter maxResults is invalid. Expecting a value between ${range[0]} and ${range[1]}.`,
    );
  }
  const page = items.slice(offset, offset + max);
  const next = offset + max < items.length ? Buffer.from(JSON.stringify({ a: action, o: offset + max })).toString("base64url") : undefined;
  return { page, nextToken: next };
}

/** IDs and MaxResults can't be combined on the big Describe actions (InvalidParameterCombination). */
export function noIdsWithMaxResults(ids: unknown[] | undefined, input: PageInput, idsName: string): void {
  if (ids && ids.length > 0 && input.MaxResults !== undefined) {
    throw new Ec2Error("InvalidParameterCombination", `The parameter ${idsName} cannot be used with the parameter maxResults`);
  }
}
