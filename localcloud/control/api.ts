/**
 * The control API under /_localcloud/v1/: what only AWS could do to an account
 * (interrupt, rebalance, lose, capacity, faults, throttling), plus state dump, reset, the identity
 * certificate and each instance's IMDS endpoint, EventBridge-style rules that send EC2's instance
 * events to an SQS queue (`PUT|DELETE events/rules/{name}`), and stopping or continuing an
 * instance's processes (`POST instances/{id}/agent {state: stopped|running}`: a hung agent), and an
 * instance's health (`health-routes.ts`: status checks, hang, scheduled maintenance events), and
 * the EC2 call log (`GET calls`: when each call arrived, its action, its caller, its outcome), and
 * the ids a spec needs (`GET ids`: default subnets per AZ, security group, base and stock images per architecture),
 * and a customer-managed KMS key (`POST kms/keys {description?, alias?}`).
 * Regions: a route that names an instance finds it in whichever region has it; a route that makes
 * something or reads one region (kms/keys, capacity, faults, events/rules, state, ids, calls) takes
 * `region` in its JSON body or `?region=` (default the home region; an unserved one is a 400 naming it).
 * JSON in and out; bad requests get 400 + reason.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import type { World } from "../world/world.js";
import type { Throttle } from "../throttle.js";
import { STATE_CODES } from "../world/types.js";
import { InterruptError, interrupt, lose, rebalance } from "../world/interruptions.js";
import { enforcerFor } from "../iam/enforcer.js";
import { decodeMessage, MessageError } from "../iam/message.js";
import { PolicyError } from "../iam/policy.js";
import type { EventBus } from "../events/bus.js";
import { ALL_DETAIL_TYPES, type DetailType } from "../world/events.js";
import { SqsError, type SqsService } from "../sqs/queues.js";
import { HealthError, setHung } from "../world/maintenance.js";
import { handleHealthRoute } from "./health-routes.js";
import { specIds } from "../world/spec-ids.js";
import type { Regions } from "../regions.js";

export const CONTROL_PREFIX = "/_localcloud/v1/";
const MAX_CONTROL_BODY = 64 * 1024;

export interface ControlDeps {
  /** The home region's world. */
  world: World;
  /** Every region's services. */
  regions: Regions;
  throttle: Throttle;
  certificatePem: () => string;
  imdsEndpoint: (instanceId: string) => Promise<string>;
  info: () => Record<string, unknown>;
  sqs: SqsService;
  events: EventBus;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const InterruptBody = z.strictObject({
  action: z.enum(["terminate", "stop", "hibernate"]).optional(),
  noticeSeconds: z.number().finite().min(0).max(3600).optional(),
});
const RuleBody = z.strictObject({
  queue: z.string().min(1).max(80),
  detailTypes: z
    .array(z.enum(ALL_DETAIL_TYPES as [DetailType, ...DetailType[]]))
    .max(ALL_DETAIL_TYPES.length)
    .optional(),
});
/** GET calls: `since` (wall-clock ms), `action`, `caller`, `mutations=true` (everything but Describe*), `limit` (the latest N). */
const CallsQuery = z.strictObject({
  since: z
    .string()
    .regex(/^\d{1,15}$/, { message: "must be wall-clock milliseconds" })
    .optional(),
  action: z
    .string()
    .regex(/^[A-Z][A-Za-z]{1,63}$/, { message: "must be an EC2 action name" })
    .optional(),
  caller: z.string().min(1).max(140).optional(),
  mutations: z.enum(["true", "false"]).optional(),
  limit: z
    .string()
    .regex(/^[1-9]\d{0,4}$/, { message: "must be 1 to 99999" })
    .optional(),
});
const AgentBody = z.strictObject({ state: z.enum(["stopped", "running"]) });
const CapacityBody = z.strictObject({
  instanceType: z.string().min(1),
  availabilityZone: z.string().min(1),
  market: z.enum(["spot", "on-demand"]),
  available: z.union([z.boolean(), z.number().int().min(0)]),
});
const FaultsBody = z.strictObject({
  failNext: z
    .array(
      z.strictObject({
        action: z.string().regex(/^[A-Z][A-Za-z]+$/),
        code: z.string().min(1),
        count: z.number().int().min(1).max(10_000).default(1),
        message: z.string().optional(),
        when: z.enum(["before", "after"]).default("before"),
      }),
    )
    .optional(),
  throttle: z.boolean().optional(),
  clear: z.boolean().optional(),
});

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_CONTROL_BODY) throw new HttpError(413, `request body is larger than ${MAX_CONTROL_BODY} bytes`);
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString("utf8").trim();
  if (text === "") return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`);
  }
}

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (!r.success) {
    const reason = r.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "body"}: ${i.message}`).join("; ");
    throw new HttpError(400, reason);
  }
  return r.data;
}

function instanceOr404(w: World, id: string) {
  const inst = w.instances.get(id);
  if (!inst) throw new HttpError(404, `instance ${id} does not exist`);
  return inst;
}

/** The world whose instance this is (any region), or the home world when none has it (the route then answers 404). */
function worldOfInstance(deps: ControlDeps, id: string): World {
  for (const { world } of deps.regions.byName.values()) if (world.instances.has(id)) return world;
  return deps.world;
}

/** The region a request names (`?region=` or a body's `region`), default home; 400 naming an unserved one. */
function regionOf(deps: ControlDeps, url: URL, body?: Record<string, unknown>) {
  const fromQuery = url.searchParams.get("region");
  const fromBody = body?.region;
  if (fromBody !== undefined && typeof fromBody !== "string") throw new HttpError(400, "region: must be a region name");
  if (fromQuery !== null && fromBody !== undefined && fromQuery !== fromBody)
    throw new HttpError(400, `region: ?region=${fromQuery} and the body's region ${fromBody} differ`);
  const name = fromBody ?? fromQuery;
  if (name === null) return deps.regions.home;
  const s = deps.regions.byName.get(name);
  if (!s) throw new HttpError(400, `region: ${deps.regions.unservedReason(name)}`);
  return s;
}

/** The body without its `region` (each route's schema is strict about the rest). */
function withoutRegion(body: unknown): unknown {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return body;
  const { region: _r, ...rest } = body as Record<string, unknown>;
  return rest;
}

function asObject(body: unknown): Record<string, unknown> | undefined {
  return typeof body === "object" && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : undefined;
}

/** A JSON view of one region's world (GET state; default the home region). */
export function dumpState(deps: ControlDeps, w: World = deps.world, sqs = deps.sqs, events = deps.events): Record<string, unknown> {
  const tags = (m: Map<string, string>) => Object.fromEntries(m);
  return {
    ...deps.info(),
    region: w.region,
    throttle: deps.throttle.enabled,
    capacity: Object.fromEntries(w.capacity),
    faults: w.faults,
    instances: [...w.instances.values()].map((i) => ({
      id: i.id,
      state: i.state,
      stateCode: STATE_CODES[i.state],
      stateReason: i.stateReason ?? null,
      instanceType: i.instanceType,
      availabilityZone: i.az,
      subnetId: i.subnetId,
      privateIp: i.privateIp,
      imageId: i.imageId,
      lifecycle: i.lifecycle,
      spotInstanceRequestId: i.spotRequestId ?? null,
      rootVolumeId: i.rootVolumeId,
      booted: i.booted,
      spotInstanceAction: i.spotAction,
      rebalanceNoticeTime: i.rebalanceNoticeTime,
      statusChecks: i.impaired ? { system: i.impaired.system, instance: i.impaired.instance, since: i.impaired.since } : null,
      hung: i.hung ?? false,
      maintenanceEvents: i.maintenanceEvents ?? [],
      imdsEndpoint: i.imdsEndpoint ?? null,
      logPath: w.runtime.logPath(i.id) || null,
      tags: tags(i.tags),
    })),
    volumes: [...w.volumes.values()].map((v) => ({
      id: v.id,
      state: v.state,
      size: v.size,
      availabilityZone: v.az,
      snapshotId: v.snapshotId || null,
      attachment: v.attachment ?? null,
      tags: tags(v.tags),
    })),
    snapshots: [...w.snapshots.values()].map((s) => ({
      id: s.id,
      state: s.state,
      progress: s.progress,
      volumeId: s.volumeId,
      volumeSize: s.volumeSize,
      ownerId: s.ownerId,
      tags: tags(s.tags),
    })),
    images: [...w.images.values()].map((i) => ({
      id: i.id,
      name: i.name,
      state: i.state,
      stateReason: i.stateReason ?? null,
      rootDeviceName: i.rootDeviceName,
      blockDeviceMappings: i.blockDeviceMappings,
      tags: tags(i.tags),
    })),
    networkInterfaces: [...w.enis.values()].map((e) => ({
      id: e.id,
      status: e.status,
      subnetId: e.subnetId,
      availabilityZone: e.az,
      privateIp: e.privateIp,
      mac: e.mac,
      attachment: e.attachment ?? null,
      tags: tags(e.tags),
    })),
    spotInstanceRequests: [...w.spotRequests.values()].map((r) => ({
      id: r.id,
      state: r.state,
      statusCode: r.statusCode,
      type: r.type,
      interruptionBehavior: r.interruptionBehavior,
      instanceId: r.instanceId ?? null,
    })),
    subnets: [...w.subnets.values()].map((s) => ({ id: s.id, vpcId: s.vpcId, availabilityZone: s.az, cidr: s.cidr })),
    securityGroups: [...w.securityGroups.values()].map((g) => ({ id: g.id, name: g.name, vpcId: g.vpcId })),
    baseImageId: w.baseImageId,
    queues: [...sqs.queues.values()].map((q) => ({ name: q.name, url: q.url, messages: q.messages.length })),
    eventRules: [...events.rules.values()],
  };
}

export async function handleControl(req: IncomingMessage, res: ServerResponse, deps: ControlDeps): Promise<void> {
  const send = (status: number, body: unknown, type = "application/json") => {
    const text = type === "application/json" ? `${JSON.stringify(body, null, 2)}\n` : String(body);
    res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(text) });
    res.end(text);
  };
  try {
    const url = new URL(req.url ?? "/", "http://localcloud");
    const route = url.pathname.slice(CONTROL_PREFIX.length).replace(/\/+$/, "");
    const method = req.method ?? "GET";
    const home = deps.world;
    const rule = /^events\/rules\/([A-Za-z0-9._-]{1,64})$/.exec(route);
    if (rule) {
      const name = rule[1]!;
      if (method === "PUT") {
        const raw = await readJson(req);
        const { events } = regionOf(deps, url, asObject(raw));
        const b = parse(RuleBody, withoutRegion(raw));
        try {
          events.putRule({ name, queue: b.queue, detailTypes: b.detailTypes ?? [...ALL_DETAIL_TYPES] });
        } catch (err) {
          if (err instanceof SqsError) throw new HttpError(400, `queue: no queue named ${b.queue} (create it first)`);
          if (err instanceof RangeError) throw new HttpError(400, err.message);
          throw err;
        }
        return send(200, { rule: events.rules.get(name) });
      }
      if (method === "DELETE") {
        if (!regionOf(deps, url).events.deleteRule(name)) throw new HttpError(404, `no event rule named ${name}`);
        return send(200, { deleted: name });
      }
      throw new HttpError(405, "use PUT or DELETE for events/rules/{name}");
    }
    const agent = /^instances\/([^/]+)\/agent$/.exec(route);
    if (agent) {
      if (method !== "POST") throw new HttpError(405, "use POST for instances/{id}/agent");
      const w = worldOfInstance(deps, agent[1]!);
      const inst = instanceOr404(w, agent[1]!);
      const b = parse(AgentBody, await readJson(req));
      if (!w.runtime.pauseInstance || !w.runtime.resumeInstance)
        throw new HttpError(501, `the ${w.runtime.kind} runtime cannot stop an instance's processes`);
      if (inst.state !== "running")
        throw new HttpError(400, `instance ${inst.id} is ${inst.state}: only a running instance's processes can be stopped`);
      await setHung(w, inst, b.state === "stopped");
      return send(200, { instanceId: inst.id, processes: b.state });
    }
    const healthIo = {
      body: () => readJson(req),
      parse,
      send: (status: number, body: unknown) => send(status, body),
      fail: (status: number, message: string): never => {
        throw new HttpError(status, message);
      },
    };
    const healthId = /^instances\/([^/]+)\//.exec(route)?.[1];
    if (await handleHealthRoute(healthId ? worldOfInstance(deps, healthId) : home, method, route, healthIo)) return;
    const m = /^instances\/([^/]+)\/(interrupt|rebalance|lose|imds)$/.exec(route);
    if (m) {
      const [, id, verb] = m;
      const w = worldOfInstance(deps, id!);
      const inst = instanceOr404(w, id!);
      if (verb === "imds") {
        if (method !== "GET") throw new HttpError(405, `use GET for instances/{id}/imds`);
        return send(200, { instanceId: inst.id, endpoint: inst.imdsEndpoint ?? (await deps.imdsEndpoint(inst.id)) });
      }
      if (method !== "POST") throw new HttpError(405, `use POST for instances/{id}/${verb}`);
      const body = await readJson(req);
      try {
        if (verb === "interrupt") {
          const b = parse(InterruptBody, body);
          const notice = interrupt(w, inst, b.action, b.noticeSeconds ?? 120);
          return send(200, { instanceId: inst.id, notice });
        }
        parse(z.strictObject({}), body);
        if (verb === "rebalance") return send(200, { instanceId: inst.id, noticeTime: rebalance(w, inst) });
        lose(w, inst);
        return send(200, { instanceId: inst.id, state: inst.state });
      } catch (err) {
        if (err instanceof InterruptError) throw new HttpError(400, err.message);
        throw err;
      }
    }
    switch (`${method} ${route}`) {
      case "PUT capacity": {
        // The AZ names its region.
        const b = parse(CapacityBody, await readJson(req));
        if (!home.instanceType(b.instanceType)) throw new HttpError(400, `instanceType: unknown instance type ${b.instanceType}`);
        const worlds = [...deps.regions.byName.values()].map((r) => r.world);
        const w = worlds.find((x) => x.catalog.azs.includes(b.availabilityZone));
        if (!w)
          throw new HttpError(
            400,
            `availabilityZone: unknown availability zone ${b.availabilityZone} (have ${worlds.flatMap((x) => x.catalog.azs).join(", ")})`,
          );
        w.capacity.set(`${b.instanceType}|${b.availabilityZone}|${b.market}`, b.available);
        return send(200, { region: w.region, capacity: Object.fromEntries(w.capacity) });
      }
      case "PUT faults": {
        const raw = await readJson(req);
        const { world: w } = regionOf(deps, url, asObject(raw));
        const b = parse(FaultsBody, withoutRegion(raw));
        if (b.clear) w.faults = [];
        for (const f of b.failNext ?? [])
          w.faults.push({ action: f.action, code: f.code, count: f.count, message: f.message, when: f.when });
        if (b.throttle !== undefined) {
          deps.throttle.enabled = b.throttle;
          deps.throttle.reset();
        }
        return send(200, { region: w.region, faults: w.faults, throttle: deps.throttle.enabled });
      }
      case "GET events/rules": {
        const { events } = regionOf(deps, url);
        return send(200, {
          region: events.region,
          rules: [...events.rules.values()],
          delivered: events.delivered,
          undeliverable: events.undeliverable,
        });
      }
      case "GET state": {
        const r = regionOf(deps, url);
        return send(200, dumpState(deps, r.world, r.sqs, r.events));
      }
      case "GET ids":
        return send(200, specIds(regionOf(deps, url).world));
      case "GET calls": {
        const { region: _r, ...query } = Object.fromEntries(url.searchParams);
        const region = url.searchParams.has("region") ? regionOf(deps, url).world.region : undefined;
        const q = parse(CallsQuery, query);
        const since = q.since === undefined ? undefined : Number(q.since);
        const limit = q.limit === undefined ? 10_000 : Number(q.limit);
        const list = home.calls.list({ since, action: q.action, caller: q.caller, region, limit });
        return send(200, { calls: q.mutations === "true" ? list.filter((c) => !c.action.startsWith("Describe")) : list });
      }
      case "POST reset":
        for (const r of deps.regions.byName.values()) await r.world.reset();
        deps.throttle.reset();
        return send(200, { reset: true, baseImageId: home.baseImageId });
      case "GET identity/certificate":
        return send(200, deps.certificatePem(), "application/x-pem-file");
      case "GET info":
        return send(200, deps.info());
      case "GET iam/policy": {
        const p = enforcerFor(home).policy;
        return send(200, { enforced: p !== null, policy: p?.document ?? null });
      }
      case "PUT iam/policy": {
        const body = await readJson(req);
        try {
          const p = enforcerFor(home).set(body);
          return send(200, { enforced: true, statements: p.statements.map((s) => s.sid) });
        } catch (err) {
          if (err instanceof PolicyError) throw new HttpError(400, `policy: ${err.message}`);
          throw err;
        }
      }
      case "DELETE iam/policy":
        enforcerFor(home).clear();
        return send(200, { enforced: false });
      case "POST kms/keys": {
        // A customer-managed key (as KMS CreateKey makes) in the region asked for, with an alias when one is asked for.
        const raw = await readJson(req);
        const { world: w } = regionOf(deps, url, asObject(raw));
        const b = parse(
          z.strictObject({
            description: z.string().max(8192).optional(),
            alias: z
              .string()
              .regex(/^alias\/[a-zA-Z0-9/_-]{1,250}$/, "an alias is alias/ followed by letters, digits, /, _ or -")
              .refine((a) => !a.startsWith("alias/aws/"), "alias/aws/ is reserved for AWS managed keys")
              .optional(),
          }),
          withoutRegion(raw),
        );
        if (b.alias !== undefined && w.kms.aliases.has(b.alias)) throw new HttpError(409, `alias: ${b.alias} already exists`);
        const key = w.kms.createKey({ description: b.description ?? "", manager: "CUSTOMER" });
        if (b.alias !== undefined) {
          const now = new Date();
          w.kms.aliases.set(b.alias, { name: b.alias, targetKeyId: key.id, creationDate: now, lastUpdatedDate: now });
        }
        return send(200, { keyId: key.id, arn: key.arn, alias: b.alias ?? null, region: w.region });
      }
      case "POST iam/decode-authorization-message": {
        const b = parse(z.strictObject({ encodedMessage: z.string().min(1) }), await readJson(req));
        try {
          const decoded = decodeMessage(b.encodedMessage);
          // DecodedMessage is a JSON string, as STS returns it; `message` is the same, parsed.
          return send(200, { decodedMessage: JSON.stringify(decoded), message: decoded });
        } catch (err) {
          if (err instanceof MessageError) throw new HttpError(400, `encodedMessage: ${err.message}`);
          throw err;
        }
      }
      default:
        throw new HttpError(404, `no control route ${method} ${CONTROL_PREFIX}${route}`);
    }
  } catch (err) {
    if (err instanceof HttpError || err instanceof HealthError) return send(err.status, { error: err.message });
    deps.world.log(`control API error: ${(err as Error)?.stack ?? String(err)}`);
    return send(500, { error: (err as Error)?.message ?? String(err) });
  }
}
