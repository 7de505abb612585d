/**
 * /api/v1/groups: stateful groups. Bodies are bounded and checked before anything is handed to
 * the group operations; a refused request changes nothing.
 *
 *   GET    /api/v1/groups                 list
 *   POST   /api/v1/groups                 create (a group spec, JSON or YAML)
 *   GET    /api/v1/groups/NAME            describe
 *   PUT    /api/v1/groups/NAME            update (template roll-out, maxUnavailable, ipPool)
 *   DELETE /api/v1/groups/NAME            delete (?keep=…&ttlHours=… as for an instance)
 *   POST   /api/v1/groups/NAME/scale      {"size": N, "keep": [...], "ttlHours": H}
 *   GET    /api/v1/groups/NAME/events     the group's timeline
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { type KeepSet, parseKeep, parseTtlHours } from "../../shared/deletion.js";
import { type GroupSpec, parseGroupSpec } from "../../shared/group-spec.js";
import { ValidationError } from "../../shared/errors.js";
import { MAX_YAML_BYTES, bodyFormat, parseBody } from "./bodies.js";
import type { GroupApi } from "./types.js";
import { HttpError } from "./http-error.js";

export interface RouteKit {
  readBody(req: IncomingMessage, limit: number): Promise<string>;
  sendJson(res: ServerResponse, status: number, body: unknown): void;
  deleteOptions(url: URL, body: string): { keep: KeepSet; ttlHours: number | null };
  methodNotAllowed(method: string, allowed: string[]): Error;
  maxBodyBytes: number;
}

export async function handleGroups(
  groups: GroupApi,
  kit: RouteKit,
  parts: string[],
  method: string,
  url: URL,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const specBody = async (): Promise<GroupSpec> => {
    const format = bodyFormat(req.headers["content-type"]);
    const body = await kit.readBody(req, format === "yaml" ? MAX_YAML_BYTES : kit.maxBodyBytes);
    const data = parseBody(body, format, "body");
    try {
      return parseGroupSpec(data, "body");
    } catch (err) {
      if (err instanceof ValidationError) throw new HttpError(400, "invalid", err.message);
      throw err;
    }
  };
  if (parts.length === 1) {
    if (method === "GET") return kit.sendJson(res, 200, { groups: await groups.list() });
    if (method === "POST") {
      const spec = await specBody();
      const { workflowId } = await groups.create(spec);
      return kit.sendJson(res, 201, { name: spec.name, workflowId });
    }
    throw kit.methodNotAllowed(method, ["GET", "POST"]);
  }
  const name = parts[1] as string;
  const known = async () => {
    if (!(await groups.describe(name))) throw new HttpError(404, "not-found", `no group named ${JSON.stringify(name.slice(0, 80))}`);
  };
  if (parts.length === 2) {
    if (method === "GET") {
      const d = await groups.describe(name);
      if (!d) throw new HttpError(404, "not-found", `no group named ${JSON.stringify(name.slice(0, 80))}`);
      return kit.sendJson(res, 200, d);
    }
    if (method === "PUT") {
      await known();
      const spec = await specBody();
      const { workflowId } = await groups.update(name, spec);
      return kit.sendJson(res, 200, { name, workflowId });
    }
    if (method === "DELETE") {
      const what = kit.deleteOptions(url, await kit.readBody(req, kit.maxBodyBytes));
      await known();
      const { workflowId } = await groups.delete(name, what);
      return kit.sendJson(res, 202, { name, workflowId });
    }
    throw kit.methodNotAllowed(method, ["GET", "PUT", "DELETE"]);
  }
  if (parts.length === 3 && parts[2] === "scale") {
    if (method !== "POST") throw kit.methodNotAllowed(method, ["POST"]);
    const req2 = scaleRequest(await kit.readBody(req, kit.maxBodyBytes));
    await known();
    const { workflowId } = await groups.scale(name, req2.size, req2);
    return kit.sendJson(res, 202, { name, workflowId });
  }
  if (parts.length === 3 && parts[2] === "events") {
    if (method !== "GET") throw kit.methodNotAllowed(method, ["GET"]);
    await known();
    return kit.sendJson(res, 200, { events: await groups.events(name) });
  }
  throw new HttpError(404, "not-found", `no route for ${method} /api/v1/groups/${parts.slice(1).join("/").slice(0, 120)}`);
}

/** `{"size": 5, "keep": ["volumes"], "ttlHours": 24}`: size required, keep/ttlHours as for a delete, nothing else. */
function scaleRequest(body: string): { size: number; keep: KeepSet; ttlHours: number | null } {
  const data = parseBody(body, "json", "body");
  if (typeof data !== "object" || data === null || Array.isArray(data))
    throw new HttpError(400, "invalid", 'body: must be an object such as {"size": 5}');
  const o = data as Record<string, unknown>;
  const extra = Object.keys(o).find((k) => !["size", "keep", "ttlHours"].includes(k));
  if (extra) throw new HttpError(400, "invalid", `body.${extra.slice(0, 40)}: unknown field (allowed: size, keep, ttlHours)`);
  if (typeof o.size !== "number" || !Number.isInteger(o.size) || o.size < 0)
    throw new HttpError(400, "invalid", `body.size: must be a whole number of members, got ${JSON.stringify(o.size ?? null).slice(0, 40)}`);
  const keep = o.keep;
  if (keep !== undefined && typeof keep !== "string" && !(Array.isArray(keep) && keep.every((k) => typeof k === "string")))
    throw new HttpError(400, "invalid", "body.keep: must be a list of volumes, network, snapshots, images");
  const ttl = o.ttlHours;
  if (ttl !== undefined && ttl !== null && typeof ttl !== "number")
    throw new HttpError(400, "invalid", `body.ttlHours: must be a number of hours, got ${JSON.stringify(ttl).slice(0, 40)}`);
  return {
    size: o.size,
    keep: parseKeep(keep as string | string[] | undefined, "body.keep"),
    ttlHours: parseTtlHours(ttl as number | undefined, "body.ttlHours"),
  };
}
