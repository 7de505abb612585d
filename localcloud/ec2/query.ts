/**
 * The EC2 Query endpoint at `/`: body limits, strict form decoding, action dispatch, throttling,
 * injected faults, and EC2-shaped success/error documents. Never throws: every
 * failure becomes an EC2 error response.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { randomUUID } from "node:crypto";
import type { World } from "../world/world.js";
import type { Throttle } from "../throttle.js";
import { RESOURCE_BUCKETS } from "../throttle.js";
import { decodeRequest, encodeError, encodeResponse } from "./codec.js";
import { Ec2Error } from "./errors.js";
import type { Ctx } from "./common.js";
import { ACTIONS } from "./actions/index.js";
import { authorizeRequest, unauthorized } from "./authz.js";
import { enforcerFor } from "../iam/enforcer.js";
import { actionGranted, contextOf } from "../iam/policy.js";
import { type CallRecord, callerOf } from "../world/call-log.js";

/** Real EC2 rejects far smaller bodies than this; 1 MiB bounds memory per request. */
export const MAX_BODY_BYTES = 1024 * 1024;

export interface QueryDeps {
  world: World;
  throttle: Throttle;
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] ?? "0");
    if (declared > limit) {
      req.resume();
      return reject(new BodyTooLarge());
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on("data", (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        req.resume();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (!failed) resolve(Buffer.concat(chunks));
    });
    req.on("error", (e) => {
      if (!failed) reject(e);
    });
  });
}

/** Strict x-www-form-urlencoded: bad percent-escapes and duplicate keys are errors. */
export function parseForm(text: string): Map<string, string> {
  const out = new Map<string, string>();
  if (text === "") return out;
  for (const pair of text.split("&")) {
    if (pair === "") continue;
    const eq = pair.indexOf("=");
    const rawK = eq < 0 ? pair : pair.slice(0, eq);
    const rawV = eq < 0 ? "" : pair.slice(eq + 1);
    let k: string;
    let v: string;
    try {
      k = decodeURIComponent(rawK.replace(/\+/g, " "));
      v = decodeURIComponent(rawV.replace(/\+/g, " "));
    } catch {
      throw new Ec2Error(
        "MalformedQueryString",
        `The request body is not valid application/x-www-form-urlencoded: bad percent-encoding in '${pair.slice(0, 80)}'`,
      );
    }
    if (k === "") throw new Ec2Error("MalformedQueryString", "The request contains a parameter with an empty name");
    if (out.has(k)) throw new Ec2Error("InvalidParameterValue", `The parameter ${k} is given more than once`);
    out.set(k, v);
  }
  return out;
}

function isFiltered(input: Record<string, unknown>): boolean {
  return Object.entries(input).some(
    ([k, v]) =>
      (k === "Filters" || k.endsWith("Ids") || k === "MaxResults" || k === "NextToken") &&
      v !== undefined &&
      !(Array.isArray(v) && v.length === 0),
  );
}

function resourceCount(action: string, input: Record<string, unknown>): number {
  if (!RESOURCE_BUCKETS[action]) return 0;
  if (action === "RunInstances") return typeof input.MaxCount === "number" ? input.MaxCount : 0;
  return Array.isArray(input.InstanceIds) ? input.InstanceIds.length : 0;
}

export async function handleQuery(req: IncomingMessage, res: ServerResponse, deps: QueryDeps): Promise<void> {
  const requestId = randomUUID();
  let action = "";
  let call: CallRecord | null = null;
  const send = (status: number, body: string, code = "ok") => {
    if (call) call.outcome = code;
    if (res.headersSent) return;
    res.writeHead(status, {
      "content-type": "text/xml;charset=UTF-8",
      "x-amzn-requestid": requestId,
      "content-length": Buffer.byteLength(body),
    });
    res.end(body);
  };
  try {
    let params: Map<string, string>;
    const url = new URL(req.url ?? "/", "http://localcloud");
    if (req.method === "POST") {
      const ctype = String(req.headers["content-type"] ?? "application/x-www-form-urlencoded");
      if (!/^application\/x-www-form-urlencoded\b/i.test(ctype)) {
        req.resume();
        throw new Ec2Error("InvalidParameterValue", `Unsupported content type '${ctype}': send application/x-www-form-urlencoded`);
      }
      const body = await readBody(req, MAX_BODY_BYTES);
      params = parseForm(body.toString("utf8"));
      // Query-string parameters are allowed too; a key in both places is ambiguous.
      for (const [k, v] of parseForm(url.search.slice(1))) {
        if (params.has(k)) throw new Ec2Error("InvalidParameterValue", `The parameter ${k} is given more than once`);
        params.set(k, v);
      }
    } else if (req.method === "GET") {
      params = parseForm(url.search.slice(1));
    } else {
      req.resume();
      throw new Ec2Error("InvalidHttpRequest", `The HTTP method ${req.method} is not supported: use POST (or GET) on /`, 405);
    }
    action = params.get("Action") ?? "";
    params.delete("Action");
    if (!action) throw new Ec2Error("MissingAction", "The request must contain the parameter Action");
    call = deps.world.calls.start(action.slice(0, 64), callerOf(req), deps.world.region);
    const version = params.get("Version");
    params.delete("Version");
    if (version === undefined) throw new Ec2Error("MissingParameter", "The request must contain the parameter Version");
    if (!/^\d{4}-\d{2}-\d{2}$/.test(version)) throw new Ec2Error("InvalidParameterValue", `Invalid value '${version}' for Version`);
    const handler = ACTIONS[action];
    if (!handler) throw new Ec2Error("InvalidAction", `The action ${action} is not valid for this web service.`);
    const input = decodeRequest(action, params);
    if (!deps.throttle.takeRequest({ action, filtered: isFiltered(input) }, deps.world.region))
      throw new Ec2Error("RequestLimitExceeded", "Request limit exceeded.");
    const count = resourceCount(action, input);
    if (count > 0 && !deps.throttle.takeResources(action, count, deps.world.region)) {
      throw new Ec2Error(
        "RequestLimitExceeded",
        `Request limit exceeded. Account has been throttled on ec2:${action} because it exceeded its resource rate limit.`,
      );
    }
    const fault = input.DryRun === true ? null : deps.world.takeFault(action);
    const injected = fault && new Ec2Error(fault.code, fault.message ?? `localcloud injected fault: ${fault.code}`);
    if (injected && fault.when !== "after") throw injected;
    const ctx: Ctx = { world: deps.world, action };
    const policy = enforcerFor(deps.world).policy;
    if (policy) {
      // An action the policy grants on no resource is refused before anything is looked up; the
      // resource-level check runs at the handler's authorisation point (dryRun), after validation.
      const granted = actionGranted(policy, `ec2:${action}`);
      if (!granted.allowed) {
        const check = { action: `ec2:${action}`, resource: "*", context: contextOf({ "ec2:Region": deps.world.region }) };
        throw unauthorized(check, {
          allowed: false,
          explicitDeny: granted.explicitDeny,
          matched: granted.explicitDeny ? granted.sids.map((sid) => ({ sid, effect: "Deny" as const })) : [],
          failed: [],
        });
      }
      ctx.authorize = (req) => authorizeRequest(policy, action, deps.world, req);
    }
    const output = await handler(ctx, input);
    if (policy && !ctx.authorized) throw new Error(`localcloud bug: ${action} finished without reaching its authorisation point`);
    // An "after" fault: the action took effect, the caller is told it failed.
    if (injected) throw injected;
    send(200, encodeResponse(action, (output ?? {}) as Record<string, unknown>, requestId));
  } catch (err) {
    if (err instanceof BodyTooLarge) {
      send(
        413,
        encodeError("RequestEntityTooLarge", `The request body is larger than ${MAX_BODY_BYTES} bytes`, requestId),
        "RequestEntityTooLarge",
      );
    } else if (err instanceof Ec2Error) {
      send(err.status, encodeError(err.code, err.message, requestId), err.code);
    } else {
      deps.world.log(`internal error in ${action || "request"}: ${(err as Error)?.stack ?? String(err)}`);
      send(
        500,
        encodeError(
          "InternalError",
          `An internal error has occurred (${action || "request"}): ${(err as Error)?.message ?? String(err)}`,
          requestId,
        ),
        "InternalError",
      );
    }
  }
}
