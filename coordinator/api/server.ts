/**
 * The coordinator's HTTP surface: admin API under /api/v1 (bearer token), /metrics,
 * /healthz, the agent bundle download and the agent WebSocket upgrade. Plain node:http: the
 * route table is small and fixed, and the agent upgrade needs the raw server anyway.
 *
 * Every rejected request (bad token, bad body, unknown name, conflict) is answered before
 * anything is handed to the service, so it changes nothing. Bodies are bounded before they are
 * parsed (see bodies.ts). Connections that have not completed a request are capped in total and per
 * source and timed out promptly (connection-limits.ts). A handler that throws is answered 500 and the process carries on; the
 * store's disk-full and I/O errors are answered 507 and 503.
 */
import { OPERATIONS, type Operation } from "../../shared/operations.js";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createReadStream, statSync } from "node:fs";
import type { AddressInfo, Socket } from "node:net";
import { parseSpec } from "../../shared/spec.js";
import { type KeepSet, parseKeep, parseTtlHours } from "../../shared/deletion.js";
import { ValidationError } from "../../shared/errors.js";
import type { ApiServerDeps } from "./types.js";
import { HttpError } from "./http-error.js";
import { isRefusal, type RefusalKind } from "../refusal.js";
import { tokenMatches } from "./token.js";
import { BodyError, MAX_YAML_BYTES, bodyFormat, parseBody, type BodyFormat } from "./bodies.js";
import { descriptorPressure, openFiles } from "./process-limits.js";
import { ConnectionGate } from "./connection-limits.js";
import { Console, defaultConsoleDir } from "./console.js";
import { handleGroups } from "./groups.js";
import { NotLeaderError } from "../ha/lease.js";
import { agentBundleSha256 } from "../bootstrap.js";
import { BootReportRefused } from "../agents/hub.js";

export const MAX_BODY_BYTES = 1024 * 1024;

/** The status each kind of domain refusal is answered with; the body's `error.code` is the kind itself. */
const REFUSAL_STATUS: Record<RefusalKind, number> = { "not-found": 404, conflict: 409, invalid: 400, unavailable: 503 };

export interface ApiServer {
  server: Server;
  /** Listen and resolve the base URL (http://host:port). */
  listen(port: number, host?: string): Promise<string>;
  close(): Promise<void>;
}

export function createApiServer(deps: ApiServerDeps): ApiServer {
  const web = new Console(deps.consoleDir ?? defaultConsoleDir(), deps.views);
  const gate = new ConnectionGate(deps.connectionLimits, deps.onConnectionCut);
  const server = createServer((req, res) => {
    const { socket } = req;
    gate.done(socket);
    // A kept-alive connection waits for its next request under the same caps and timeouts.
    res.once("finish", () => gate.wait(socket));
    handle(deps, web, req, res).catch((err) => sendError(res, err));
  });
  server.on("connection", (socket: Socket) => gate.wait(socket));
  server.on("upgrade", (req, socket, head) => {
    gate.done(req.socket);
    socket.on("error", () => socket.destroy());
    try {
      const path = (req.url ?? "").split("?")[0];
      if (path === "/agent/v1/ws") return deps.onAgentUpgrade(req, socket, head);
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    } catch {
      socket.destroy();
    }
  });
  // Slow or stuck clients must not hold sockets forever (the gate closes idle ones much sooner).
  server.headersTimeout = 15_000;
  // The gate closes a kept-alive connection when its first-byte time is up; saying so in the
  // Keep-Alive header lets clients stop reusing it before then.
  server.keepAliveTimeout = gate.limits.firstByteMs;
  server.requestTimeout = 30_000;
  return {
    server,
    listen(port, host = "127.0.0.1") {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const addr = server.address() as AddressInfo;
          const h = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
          resolve(`http://${h}:${addr.port}`);
        });
      });
    },
    close() {
      web.closeStreams();
      gate.closeAll();
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      });
    },
  };
}

/** A boot report: the identity document (base64) and signature (~2 KB together) and a reason of at most 400 characters. */
const MAX_BOOT_REPORT_BYTES = 16 * 1024;

async function handle(deps: ApiServerDeps, web: Console, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", "http://localhost");
  const path = url.pathname.replace(/\/+$/, "") || "/";
  const method = req.method ?? "GET";

  if (path === "/healthz") {
    only(method, ["GET", "HEAD"]);
    const h = await deps.health();
    // `?role=leader` (a load balancer's health check) is healthy only on the coordinator that leads.
    const role = url.searchParams.get("role");
    if (role !== null && role !== "leader")
      throw new HttpError(400, "invalid", `role: the only role to ask for is leader, got ${JSON.stringify(role.slice(0, 40))}`);
    const files = (deps.openFiles ?? openFiles)();
    // Nearly out of descriptors, the coordinator is about to refuse agents and API clients: degraded.
    const pressure = descriptorPressure(files);
    const ok = h.ok && pressure === null && (role === null || !deps.standby?.());
    return sendJson(res, ok ? 200 : 503, {
      ok,
      ...(h.detail ?? {}),
      openFiles: { ...files, nearLimit: pressure !== null },
      ...(pressure ? { degraded: pressure } : {}),
    });
  }
  if (path === "/metrics") {
    only(method, ["GET"]);
    const text = await deps.metricsText();
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" });
    res.end(text);
    return;
  }
  if (path === "/agent/v1/agent.js") {
    only(method, ["GET", "HEAD"]);
    let size: number;
    let sha256: string;
    try {
      size = statSync(deps.agentBundlePath).size;
      sha256 = agentBundleSha256(deps.agentBundlePath);
    } catch {
      throw new HttpError(404, "not-found", "the agent bundle is not built (run npm run build)");
    }
    // The SHA-256 goes with the bundle: in hex as `spotkeep version` prints it and the bootstrap
    // checks it, and as RFC 9530's Repr-Digest. The hash is cached per size and mtime.
    res.writeHead(200, {
      "content-type": "application/javascript; charset=utf-8",
      "content-length": size,
      "x-spotkeep-agent-sha256": sha256,
      "repr-digest": `sha-256=:${Buffer.from(sha256, "hex").toString("base64")}:`,
    });
    if (method === "HEAD") return void res.end();
    // A bundle replaced or removed mid-download ends this response, not the process.
    createReadStream(deps.agentBundlePath)
      .on("error", () => res.destroy())
      .pipe(res);
    return;
  }
  const runtime = /^\/agent\/v1\/runtime\/node-linux-([a-z0-9]{1,10})\.gz$/.exec(path);
  if (runtime) {
    only(method, ["GET", "HEAD"]);
    const f = deps.agentRuntime?.file(runtime[1]!);
    if (!f)
      throw new HttpError(404, "not-found", `this coordinator serves no Node.js runtime for linux-${runtime[1]} (spotkeep runtime fetch)`);
    res.writeHead(200, {
      "content-type": "application/gzip",
      "content-length": f.entry.gzBytes,
      "x-spotkeep-runtime-sha256": f.entry.gzSha256,
      "repr-digest": `sha-256=:${Buffer.from(f.entry.gzSha256, "hex").toString("base64")}:`,
    });
    if (method === "HEAD") return void res.end();
    createReadStream(f.path)
      .on("error", () => res.destroy())
      .pipe(res);
    return;
  }
  if (path === "/agent/v1/boot-report") {
    only(method, ["POST"]);
    if (!deps.onBootReport) throw new HttpError(404, "not-found", "this coordinator takes no boot reports");
    const text = await readBody(req, MAX_BOOT_REPORT_BYTES);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new HttpError(400, "invalid", "body: must be JSON");
    }
    try {
      await deps.onBootReport(body, req);
    } catch (err) {
      if (err instanceof BootReportRefused) throw new HttpError(403, "forbidden", err.message);
      throw err;
    }
    return sendJson(res, 202, { ok: true });
  }
  if (web.serve(path, method, res)) return;
  if (path === "/agent/v1/ws") throw new HttpError(426, "upgrade-required", "the agent endpoint speaks WebSocket");
  if (!path.startsWith("/api/v1/") && path !== "/api/v1") throw new HttpError(404, "not-found", `no route for ${method} ${path}`);

  // Everything under /api/v1 needs the admin token.
  const auth = req.headers.authorization;
  const presented = auth?.startsWith("Bearer ") ? auth.slice(7).trim() : undefined;
  if (!tokenMatches(presented, deps.adminToken)) {
    res.setHeader("www-authenticate", 'Bearer realm="spotkeep"');
    throw new HttpError(
      401,
      "unauthorized",
      presented ? "the bearer token is not valid" : "missing bearer token (Authorization: Bearer <token>)",
    );
  }

  const standby = method === "GET" || method === "HEAD" ? null : (deps.standby?.() ?? null);
  if (standby) {
    res.setHeader("retry-after", "5");
    throw new HttpError(
      503,
      "not-leader",
      standby.leader
        ? `this coordinator is a standby: send ${method} requests to the leader at ${standby.leader}`
        : `this coordinator is a standby and no coordinator leads just now: retry ${method} shortly`,
      { leader: standby.leader },
    );
  }

  const parts = path.split("/").slice(3).map(decodeSegment); // after "", "api", "v1"
  const { views } = deps;
  if (parts[0] === "stream" && parts.length === 1) {
    only(method, ["GET"]);
    return web.stream(req, res);
  }

  if (parts[0] === "instances") {
    if (parts.length === 1) {
      if (method === "GET") return sendJson(res, 200, { instances: await views.listInstances({ includeDeleted: listAll(url) }) });
      if (method === "POST") {
        // ?dryRun=true: every check a create makes, nothing recorded (200 with the spec as the coordinator reads it).
        const dryRun = createDryRun(url);
        const format = bodyFormat(req.headers["content-type"]);
        const body = await readBody(req, format === "yaml" ? MAX_YAML_BYTES : MAX_BODY_BYTES);
        const spec = parseSpecBody(body, format, deps.specRegion);
        if (dryRun) {
          await views.checkCreate(spec);
          return sendJson(res, 200, { name: spec.name, dryRun: true, spec });
        }
        const { workflowId } = await views.createInstance(spec);
        return sendJson(res, 201, { name: spec.name, workflowId });
      }
      throw methodNotAllowed(method, ["GET", "POST"]);
    }
    const name = parts[1]!;
    if (parts.length === 2) {
      if (method === "GET") {
        const detail = await views.getInstance(name);
        if (!detail) throw notFoundInstance(name);
        return sendJson(res, 200, detail);
      }
      if (method === "DELETE") {
        const what = deleteOptions(url, await readBody(req, MAX_BODY_BYTES), { force: true });
        if (!(await views.getInstance(name))) throw notFoundInstance(name);
        const { workflowId, archivedAs } = await views.deleteInstance(name, what);
        return sendJson(res, 202, { name, workflowId, archivedAs });
      }
      if (method === "PUT") {
        const recycleText = new URL(req.url ?? "/", "http://localhost").searchParams.get("recycle");
        if (recycleText !== null && recycleText !== "true" && recycleText !== "false")
          throw new HttpError(400, "invalid", `recycle: must be true or false, got ${JSON.stringify(recycleText.slice(0, 40))}`);
        if (!(await views.getInstance(name))) throw notFoundInstance(name);
        const format = bodyFormat(req.headers["content-type"]);
        const body = await readBody(req, format === "yaml" ? MAX_YAML_BYTES : MAX_BODY_BYTES);
        const spec = parseSpecBody(body, format, deps.specRegion);
        if (spec.name !== name) throw new HttpError(400, "invalid", `name: cannot change (the URL names ${name}, the spec ${spec.name})`);
        const { workflowId } = await views.updateInstance(name, spec, { recycle: recycleText === "true" });
        return sendJson(res, 200, { name, workflowId });
      }
      throw methodNotAllowed(method, ["GET", "PUT", "DELETE"]);
    }
    if (parts.length === 3 && parts[2] === "events") {
      only(method, ["GET"]);
      const events = await views.getEvents(name);
      if (!events) throw notFoundInstance(name);
      return sendJson(res, 200, events);
    }
    if (parts.length === 3 && parts[2] === "restore") {
      only(method, ["POST"]);
      const body = relocateRequest(await readBody(req, MAX_BODY_BYTES));
      if (!(await views.getInstance(name))) throw notFoundInstance(name);
      try {
        const { workflowId } = await views.relocateInstance(name, body);
        return sendJson(res, 202, { name, workflowId });
      } catch (err) {
        if (err instanceof ValidationError) throw new HttpError(400, "invalid-spec", err.message);
        throw err;
      }
    }
    if (parts.length === 3 && (OPERATIONS as readonly string[]).includes(parts[2]!)) {
      only(method, ["POST"]);
      if (!(await views.getInstance(name))) throw notFoundInstance(name);
      const { workflowId } = await views.runOperation(name, parts[2] as Operation);
      return sendJson(res, 202, { name, workflowId });
    }
  }
  if (parts[0] === "groups") {
    const kit = {
      readBody,
      sendJson,
      deleteOptions: (u: URL, body: string) => deleteOptions(u, body, { force: false }),
      methodNotAllowed,
      maxBodyBytes: MAX_BODY_BYTES,
    };
    return handleGroups(deps.groups, kit, parts, method, url, req, res);
  }
  if (parts[0] === "savings" && parts.length === 1) {
    only(method, ["GET"]);
    return sendJson(res, 200, await views.savings());
  }
  if (parts[0] === "workflows" && parts.length === 2) {
    only(method, ["GET"]);
    const wf = await views.getWorkflow(parts[1]!);
    if (!wf) throw new HttpError(404, "not-found", `no workflow ${JSON.stringify(parts[1])}`);
    return sendJson(res, 200, wf);
  }
  if (parts[0] === "import" && parts.length === 1) {
    only(method, ["POST"]);
    const req2 = importRequest(await readBody(req, MAX_BODY_BYTES));
    try {
      const out = await views.importInstance(req2);
      if (req2.dryRun)
        return sendJson(res, 200, { dryRun: true, name: req2.name, instanceId: req2.instanceId, spec: out.spec, steps: out.steps });
      return sendJson(res, 202, {
        name: req2.name,
        instanceId: req2.instanceId,
        workflowId: out.workflowId,
        spec: out.spec,
        steps: out.steps,
      });
    } catch (err) {
      if (err instanceof ValidationError) throw new HttpError(400, "invalid-spec", err.message);
      throw err;
    }
  }
  throw new HttpError(404, "not-found", `no route for ${method} ${path}`);
}

/**
 * POST /api/v1/import: `{"instanceId": "i-…", "name": "…", "region": "us-west-2", "overrides": {partial spec}, "dryRun": false,
 * "adoptKept": false}` (region: where the instance is; default the coordinator's), every field checked.
 */
function importRequest(body: string): {
  instanceId: string;
  name: string;
  region?: string;
  overrides?: unknown;
  dryRun: boolean;
  adoptKept: boolean;
} {
  const data = parseBody(body, "json", "body");
  if (typeof data !== "object" || data === null || Array.isArray(data))
    throw new HttpError(400, "invalid", 'body: must be an object such as {"instanceId": "i-0123456789abcdef0", "name": "orders-db"}');
  const o = data as Record<string, unknown>;
  const extra = Object.keys(o).find((k) => !["instanceId", "name", "region", "overrides", "dryRun", "adoptKept"].includes(k));
  if (extra)
    throw new HttpError(
      400,
      "invalid",
      `body.${extra.slice(0, 40)}: unknown field (allowed: instanceId, name, region, overrides, dryRun, adoptKept)`,
    );
  if (o.region !== undefined && (typeof o.region !== "string" || !/^[a-z]{2}(-gov)?-[a-z]+-\d$/.test(o.region)))
    throw new HttpError(
      400,
      "invalid",
      `body.region: is not an AWS region (such as us-east-1), got ${JSON.stringify(o.region).slice(0, 40)}`,
    );
  if (typeof o.instanceId !== "string" || !/^i-[0-9a-f]{8,17}$/.test(o.instanceId))
    throw new HttpError(
      400,
      "invalid",
      `body.instanceId: must be an EC2 instance id (i-…), got ${JSON.stringify(o.instanceId ?? null).slice(0, 40)}`,
    );
  if (typeof o.name !== "string" || !/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(o.name))
    throw new HttpError(
      400,
      "invalid",
      "body.name: must be 1-63 lowercase letters, digits or dashes, starting and ending with a letter or digit, " +
        `got ${JSON.stringify(o.name ?? null).slice(0, 70)}`,
    );
  if (o.dryRun !== undefined && typeof o.dryRun !== "boolean") throw new HttpError(400, "invalid", "body.dryRun: must be true or false");
  if (o.adoptKept !== undefined && typeof o.adoptKept !== "boolean")
    throw new HttpError(400, "invalid", "body.adoptKept: must be true or false");
  if (o.overrides !== undefined && o.overrides !== null && (typeof o.overrides !== "object" || Array.isArray(o.overrides)))
    throw new HttpError(400, "invalid", "body.overrides: must be an object (a partial spec)");
  return {
    instanceId: o.instanceId,
    name: o.name,
    ...(typeof o.region === "string" ? { region: o.region } : {}),
    overrides: o.overrides ?? undefined,
    dryRun: o.dryRun === true,
    adoptKept: o.adoptKept === true,
  };
}

/** POST /api/v1/instances/NAME/restore: `{"region": "us-west-2", "overrides": {partial spec}}`, every field checked. */
function relocateRequest(body: string): { region: string; overrides?: unknown } {
  const data = parseBody(body, "json", "body");
  if (typeof data !== "object" || data === null || Array.isArray(data))
    throw new HttpError(
      400,
      "invalid",
      'body: must be an object such as {"region": "us-west-2", "overrides": {"launch": {"subnetIds": ["subnet-…"]}}}',
    );
  const o = data as Record<string, unknown>;
  const extra = Object.keys(o).find((k) => !["region", "overrides"].includes(k));
  if (extra) throw new HttpError(400, "invalid", `body.${extra.slice(0, 40)}: unknown field (allowed: region, overrides)`);
  if (typeof o.region !== "string" || !/^[a-z]{2}(-gov)?-[a-z]+-\d$/.test(o.region))
    throw new HttpError(
      400,
      "invalid",
      `body.region: must be an AWS region (such as us-west-2), got ${JSON.stringify(o.region ?? null).slice(0, 40)}`,
    );
  if (o.overrides !== undefined && o.overrides !== null && (typeof o.overrides !== "object" || Array.isArray(o.overrides)))
    throw new HttpError(400, "invalid", "body.overrides: must be an object (a partial spec)");
  return { region: o.region, ...(o.overrides ? { overrides: o.overrides } : {}) };
}

/** A create's query: `?dryRun=true` checks the spec and records nothing; any other parameter is refused by name. */
function createDryRun(url: URL): boolean {
  const unknown = [...url.searchParams.keys()].find((k) => k !== "dryRun");
  if (unknown) throw new HttpError(400, "invalid", `${unknown.slice(0, 40)}: unknown parameter (allowed: dryRun)`);
  const v = url.searchParams.get("dryRun");
  if (v !== null && v !== "true" && v !== "false")
    throw new HttpError(400, "invalid", `dryRun: must be true or false, got ${JSON.stringify(v.slice(0, 40))}`);
  return v === "true";
}

/** `?all=true` lists deleted instances too. */
function listAll(url: URL): boolean {
  const all = url.searchParams.get("all");
  if (all !== null && all !== "true" && all !== "false")
    throw new HttpError(400, "invalid", `all: must be true or false, got ${JSON.stringify(all.slice(0, 40))}`);
  return all === "true";
}

/**
 * What a DELETE keeps and for how long: `?keep=volumes,network&ttlHours=24`, or the same fields in
 * a JSON body (`{"keep": ["volumes"], "ttlHours": 24}`), not both. With `allow.force` (an
 * instance's delete), `force=true` (`"force": true`) terminates a running instance without
 * quiescing it. Anything else is refused by name: a misspelt parameter must not turn "keep the
 * volumes" into "delete everything".
 */
function deleteOptions(url: URL, body: string, allow: { force: boolean }): { keep: KeepSet; ttlHours: number | null; force?: boolean } {
  const names = allow.force ? ["keep", "ttlHours", "force"] : ["keep", "ttlHours"];
  const allowed = names.join(", ");
  const params = [...url.searchParams.keys()];
  const unknown = params.find((k) => !names.includes(k));
  if (unknown) throw new HttpError(400, "invalid", `${unknown.slice(0, 40)}: unknown parameter (allowed: ${allowed})`);
  if (body.trim() === "") {
    const force = url.searchParams.get("force");
    if (force !== null && force !== "true" && force !== "false")
      throw new HttpError(400, "invalid", `force: must be true or false, got ${JSON.stringify(force.slice(0, 40))}`);
    return {
      keep: parseKeep(url.searchParams.getAll("keep")),
      ttlHours: parseTtlHours(url.searchParams.get("ttlHours")),
      ...(force === "true" ? { force: true } : {}),
    };
  }
  if (params.length) throw new HttpError(400, "invalid", `give ${allowed} in the query or in the body, not both`);
  const data = parseBody(body, "json", "body");
  if (typeof data !== "object" || data === null || Array.isArray(data))
    throw new HttpError(400, "invalid", 'body: must be an object such as {"keep": ["volumes"], "ttlHours": 24}');
  const o = data as Record<string, unknown>;
  const extra = Object.keys(o).find((k) => !names.includes(k));
  if (extra) throw new HttpError(400, "invalid", `body.${extra.slice(0, 40)}: unknown field (allowed: ${allowed})`);
  const keep = o.keep;
  if (keep !== undefined && typeof keep !== "string" && !(Array.isArray(keep) && keep.every((k) => typeof k === "string")))
    throw new HttpError(400, "invalid", "body.keep: must be a list of volumes, network, snapshots, images");
  const ttl = o.ttlHours;
  if (ttl !== undefined && ttl !== null && typeof ttl !== "number")
    throw new HttpError(400, "invalid", `body.ttlHours: must be a number of hours, got ${JSON.stringify(ttl).slice(0, 40)}`);
  if (o.force !== undefined && typeof o.force !== "boolean")
    throw new HttpError(400, "invalid", `body.force: must be true or false, got ${JSON.stringify(o.force).slice(0, 40)}`);
  return {
    keep: parseKeep(keep as string | string[] | undefined, "body.keep"),
    ttlHours: parseTtlHours(ttl, "body.ttlHours"),
    ...(o.force === true ? { force: true } : {}),
  };
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, "bad-request", `bad URL encoding in ${JSON.stringify(s)}`);
  }
}

function parseSpecBody(body: string, format: BodyFormat, region: string | undefined): ReturnType<typeof parseSpec> {
  // Plain data only reaches parseSpec: it never sees text, so the YAML parser never sees JSON.
  const data = parseBody(body, format, "body");
  try {
    return parseSpec(data, "body", region === undefined ? {} : { region });
  } catch (err) {
    if (err instanceof ValidationError) throw new HttpError(400, "invalid-spec", err.message);
    throw err;
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > limit) {
      req.resume();
      return reject(new HttpError(413, "payload-too-large", `the body is ${declared} bytes; the limit is ${limit}`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners("data");
        req.resume();
        reject(new HttpError(413, "payload-too-large", `the body exceeds the ${limit}-byte limit`));
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function only(method: string, allowed: string[]): void {
  if (!allowed.includes(method)) throw methodNotAllowed(method, allowed);
}

function methodNotAllowed(method: string, allowed: string[]): HttpError {
  return new HttpError(405, "method-not-allowed", `${method} is not allowed here (allowed: ${allowed.join(", ")})`);
}

function notFoundInstance(name: string): HttpError {
  return new HttpError(404, "not-found", `no stateful instance named ${JSON.stringify(name)}`);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** Answer a failed request; never throws (a response that cannot be written is destroyed). */
function sendError(res: ServerResponse, err: unknown): void {
  try {
    if (res.headersSent) return void res.destroy();
    if (err instanceof HttpError) return sendJson(res, err.status, { error: { code: err.code, message: err.message }, ...err.extra });
    if (err instanceof BodyError) return sendJson(res, err.status, { error: { code: err.code, message: err.message } });
    if (isRefusal(err)) {
      if (err.kind === "unavailable") res.setHeader("retry-after", "5");
      return sendJson(res, REFUSAL_STATUS[err.kind], { error: { code: err.kind, message: err.message } });
    }
    if (err instanceof ValidationError) return sendJson(res, 400, { error: { code: "invalid", message: err.message } });
    // This coordinator stopped leading while the request was being carried out: its write was refused.
    const notLeader = causes(err).find((e) => e instanceof NotLeaderError);
    if (notLeader) {
      res.setHeader("retry-after", "5");
      return sendJson(res, 503, { error: { code: "not-leader", message: (notLeader as Error).message } });
    }
    const storage = storageFailure(err);
    if (storage) {
      if (storage.status === 503) res.setHeader("retry-after", "5");
      return sendJson(res, storage.status, { error: { code: storage.code, message: storage.message } });
    }
    sendJson(res, 500, { error: { code: "internal", message: (err as Error)?.message ?? String(err) } });
  } catch {
    res.destroy();
  }
}

/** An error and its causes, outermost first (at most 8). */
function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e = err; out.length < 8 && e && typeof e === "object"; e = (e as { cause?: unknown }).cause) out.push(e);
  return out;
}

/**
 * The store's SQLite failures, found by error code on the error or its causes: a full disk is
 * 507, I/O errors, a locked database and a damaged one are 503; so is a PostgreSQL store that
 * cannot be reached (STORE_UNAVAILABLE). Anything else is not a storage
 * failure (null).
 */
export function storageFailure(err: unknown): { status: 503 | 507; code: string; message: string } | null {
  let e: unknown = err;
  for (let i = 0; i < 8 && e && typeof e === "object"; i++, e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (code === "STORE_UNAVAILABLE")
      return {
        status: 503,
        code: "storage-unavailable",
        message:
          `the coordinator's database could not be used just now (${(e as Error).message}); ` +
          "retry shortly, and check the PostgreSQL server if this persists",
      };
    if (typeof code !== "string" || !code.startsWith("SQLITE_")) continue;
    const what = (e as Error).message ? `: ${(e as Error).message}` : "";
    if (code === "SQLITE_FULL")
      return {
        status: 507,
        code: "insufficient-storage",
        message:
          `the coordinator's database is out of disk space (${code}${what}); the request was not carried out — ` +
          "free space on the data directory's filesystem and retry",
      };
    if (code.startsWith("SQLITE_IOERR") || code.startsWith("SQLITE_BUSY"))
      return {
        status: 503,
        code: "storage-unavailable",
        message: `the coordinator's database could not be used just now (${code}${what}); retry shortly, and check the data directory's disk if this persists`,
      };
    if (code.startsWith("SQLITE_CORRUPT"))
      return {
        status: 503,
        code: "storage-damaged",
        message: `the coordinator's database reports damage (${code}${what}); stop the coordinator and restore the database from a backup`,
      };
  }
  return null;
}
