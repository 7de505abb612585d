/**
 * The ELBv2 endpoint in the AWS Query protocol `@aws-sdk/client-elastic-load-balancing-v2` speaks
 * (POST /, form-encoded, `Version=2015-12-01`, lists as `Name.member.N`, XML answers wrapped in
 * `<ActionResult>`, errors as `<ErrorResponse><Error><Type/><Code/><Message/>`). It shares the
 * port with the EC2 Query API: a request is ELBv2's when its SigV4 credential scope names the
 * `elasticloadbalancing` service. Every parameter is checked (unknown ones are a ValidationError),
 * bodies are bounded, and with an IAM policy each action is authorised like EC2's.
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { enforcerFor } from "../iam/enforcer.js";
import { xmlEscape } from "../ec2/codec.js";
import { Ec2Error } from "../ec2/errors.js";
import { parseForm } from "../ec2/query.js";
import type { World } from "../world/world.js";
import { authorizeElb } from "./authz.js";
import { ElbError } from "./errors.js";
import type { Elbv2Service, TargetGroup, TargetHealth, TargetType } from "./targets.js";

export const ELBV2_VERSION = "2015-12-01";
const XMLNS = `http://elasticloadbalancing.amazonaws.com/doc/${ELBV2_VERSION}/`;
const MAX_BODY_BYTES = 256 * 1024;
/** Targets per RegisterTargets/DeregisterTargets/DescribeTargetHealth request (AWS allows many; this bounds the work). */
const MAX_TARGETS_PER_REQUEST = 500;

export function isElbv2Request(req: IncomingMessage): boolean {
  const auth = req.headers.authorization;
  return typeof auth === "string" && /Credential=[^/,\s]+\/\d{8}\/[a-z0-9-]+\/elasticloadbalancing\/aws4_request/.test(auth);
}

export interface Elbv2Deps {
  world: World;
  elb: Elbv2Service;
}

/** The parameters of one request; each read marks its keys used, and `done()` refuses the rest. */
class Params {
  private readonly used = new Set<string>();
  constructor(private readonly p: Map<string, string>) {}

  str(name: string, required: true): string;
  str(name: string, required?: false): string | undefined;
  str(name: string, required = false): string | undefined {
    this.used.add(name);
    const v = this.p.get(name);
    if (v === undefined && required)
      throw new ElbError(
        "ValidationError",
        `1 validation error detected: Value null at '${lower(name)}' failed to satisfy constraint: Member must not be null`,
      );
    return v;
  }

  int(name: string, min: number, max: number, required: true): number;
  int(name: string, min: number, max: number, required?: false): number | undefined;
  int(name: string, min: number, max: number, required = false): number | undefined {
    const v = required ? this.str(name, true) : this.str(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^-?\d+$/.test(v) || n < min || n > max)
      throw new ElbError(
        "ValidationError",
        `1 validation error detected: Value '${v}' at '${lower(name)}' failed to satisfy constraint: Member must have value between ${min} and ${max}`,
      );
    return n;
  }

  bool(name: string): boolean | undefined {
    const v = this.str(name);
    if (v === undefined) return undefined;
    if (v !== "true" && v !== "false") throw new ElbError("ValidationError", `Value '${v}' at '${lower(name)}' must be true or false`);
    return v === "true";
  }

  /** `Name.member.1`, `Name.member.2`, … (no gaps), as the prefixes of each member. */
  members(name: string, max: number): string[] {
    const prefix = `${name}.member.`;
    const indices = new Set<number>();
    for (const k of this.p.keys()) {
      if (!k.startsWith(prefix)) continue;
      const idx = k.slice(prefix.length).split(".")[0] ?? "";
      if (!/^[1-9]\d{0,5}$/.test(idx)) throw new ElbError("ValidationError", `Malformed list parameter '${k}'`);
      indices.add(Number(idx));
    }
    const n = indices.size;
    if (n > max) throw new ElbError("ValidationError", `${name} has ${n} members; at most ${max} are allowed`);
    for (let i = 1; i <= n; i++)
      if (!indices.has(i))
        throw new ElbError("ValidationError", `${name} is missing member ${i} (list members are numbered from 1 without gaps)`);
    return Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);
  }

  /** A list of strings `Name.member.N`. */
  strings(name: string, max: number): string[] {
    return this.members(name, max).map((m) => this.str(m, true));
  }

  /** Every key the action did not read is an error (the SDK only sends modelled members). */
  done(): void {
    const extra = [...this.p.keys()].filter((k) => !this.used.has(k));
    if (extra.length)
      throw new ElbError(
        "ValidationError",
        `Unknown or unsupported parameter${extra.length > 1 ? "s" : ""}: ${extra.slice(0, 5).join(", ")}`,
      );
  }
}

function lower(name: string): string {
  return name.replace(/^[A-Z]/, (c) => c.toLowerCase());
}

function targets(p: Params, required: boolean): Array<{ id: string; port?: number }> {
  const members = p.members("Targets", MAX_TARGETS_PER_REQUEST);
  if (required && members.length === 0)
    throw new ElbError(
      "ValidationError",
      "1 validation error detected: Value null at 'targets' failed to satisfy constraint: Member must not be null",
    );
  return members.map((m) => {
    const id = p.str(`${m}.Id`, true);
    if (id.length === 0 || id.length > 255) throw new ElbError("ValidationError", `Target id '${id.slice(0, 64)}' is not valid`);
    const port = p.int(`${m}.Port`, 1, 65535);
    p.str(`${m}.AvailabilityZone`);
    return port === undefined ? { id } : { id, port };
  });
}

function tg(xml: Xml, g: TargetGroup): void {
  xml.open("member");
  xml.leaf("TargetGroupArn", g.arn);
  xml.leaf("TargetGroupName", g.name);
  xml.leaf("Protocol", g.protocol);
  xml.leaf("Port", g.port);
  xml.leaf("VpcId", g.vpcId);
  xml.leaf("HealthCheckProtocol", g.healthCheck.protocol);
  xml.leaf("HealthCheckPort", g.healthCheck.port);
  xml.leaf("HealthCheckEnabled", true);
  xml.leaf("HealthCheckIntervalSeconds", g.healthCheck.intervalSeconds);
  xml.leaf("HealthCheckTimeoutSeconds", g.healthCheck.timeoutSeconds);
  xml.leaf("HealthyThresholdCount", g.healthCheck.healthyThreshold);
  xml.leaf("UnhealthyThresholdCount", g.healthCheck.unhealthyThreshold);
  if (g.healthCheck.path) xml.leaf("HealthCheckPath", g.healthCheck.path);
  xml.open("LoadBalancerArns");
  xml.close("LoadBalancerArns");
  xml.leaf("TargetType", g.targetType);
  xml.leaf("IpAddressType", "ipv4");
  xml.close("member");
}

class Xml {
  readonly out: string[] = [];
  open(tag: string) {
    this.out.push(`<${tag}>`);
  }
  close(tag: string) {
    this.out.push(`</${tag}>`);
  }
  leaf(tag: string, v: string | number | boolean) {
    this.out.push(`<${tag}>${xmlEscape(String(v))}</${tag}>`);
  }
}

type Action = (deps: Elbv2Deps, p: Params, xml: Xml) => void;

const ACTIONS: Record<string, Action> = {
  CreateTargetGroup({ elb }, p, xml) {
    const name = p.str("Name", true);
    const targetType = (p.str("TargetType") ?? "instance") as TargetType;
    if (targetType !== "instance" && targetType !== "ip")
      throw new ElbError("ValidationError", `Target type '${targetType}' is not supported by localcloud (instance or ip)`);
    const protocol = p.str("Protocol", true);
    const port = p.int("Port", 1, 65535, true);
    const vpcId = p.str("VpcId", true);
    const healthCheck = {
      protocol: p.str("HealthCheckProtocol"),
      port: p.str("HealthCheckPort"),
      path: p.str("HealthCheckPath"),
      intervalSeconds: p.int("HealthCheckIntervalSeconds", 5, 300),
      timeoutSeconds: p.int("HealthCheckTimeoutSeconds", 2, 120),
      healthyThreshold: p.int("HealthyThresholdCount", 2, 10),
      unhealthyThreshold: p.int("UnhealthyThresholdCount", 2, 10),
    };
    p.bool("HealthCheckEnabled");
    p.done();
    const g = elb.createTargetGroup({
      name,
      protocol,
      port,
      vpcId,
      targetType,
      healthCheck: Object.fromEntries(Object.entries(healthCheck).filter(([, v]) => v !== undefined)),
    });
    xml.open("TargetGroups");
    tg(xml, g);
    xml.close("TargetGroups");
  },
  DescribeTargetGroups({ elb }, p, xml) {
    const arns = p.strings("TargetGroupArns", 20);
    const names = p.strings("Names", 20);
    const lb = p.str("LoadBalancerArn");
    const marker = p.str("Marker");
    const pageSize = p.int("PageSize", 1, 400) ?? 400;
    p.done();
    if ([arns.length > 0, names.length > 0, lb !== undefined].filter(Boolean).length > 1)
      throw new ElbError("ValidationError", "Target group ARNs, target group names and a load balancer ARN cannot be specified together");
    // localcloud has no load balancers: none of its target groups is attached to one.
    if (lb !== undefined) throw new ElbError("LoadBalancerNotFound", `Load balancers '${lb}' not found`);
    let groups: TargetGroup[];
    if (arns.length) groups = arns.map((a) => elb.group(a));
    else if (names.length) {
      const byName = new Map([...elb.groups.values()].map((g) => [g.name, g]));
      const missing = names.filter((n) => !byName.has(n));
      if (missing.length) throw new ElbError("TargetGroupNotFound", `One or more target groups not found: ${missing.join(", ")}`);
      groups = names.map((n) => byName.get(n)!);
    } else groups = [...elb.groups.values()].sort((a, b) => a.name.localeCompare(b.name));
    const start = marker === undefined ? 0 : Number(marker);
    if (!Number.isInteger(start) || start < 0 || start > groups.length) throw new ElbError("ValidationError", `Invalid marker '${marker}'`);
    const page = groups.slice(start, start + pageSize);
    xml.open("TargetGroups");
    for (const g of page) tg(xml, g);
    xml.close("TargetGroups");
    if (start + pageSize < groups.length) xml.leaf("NextMarker", String(start + pageSize));
  },
  RegisterTargets({ elb }, p) {
    const arn = p.str("TargetGroupArn", true);
    const list = targets(p, true);
    p.done();
    elb.registerTargets(arn, list);
  },
  DeregisterTargets({ elb }, p) {
    const arn = p.str("TargetGroupArn", true);
    const list = targets(p, true);
    p.done();
    elb.deregisterTargets(arn, list);
  },
  DescribeTargetHealth({ elb }, p, xml) {
    const arn = p.str("TargetGroupArn", true);
    const list = targets(p, false);
    p.strings("Include", 5);
    p.done();
    const health = elb.describeTargetHealth(arn, list);
    const port = elb.group(arn).healthCheck.port;
    xml.open("TargetHealthDescriptions");
    for (const h of health) writeHealth(xml, h, port);
    xml.close("TargetHealthDescriptions");
  },
};

/** The actions localcloud's ELBv2 implements (a test keeps the authz table equal to it). */
export const ELBV2_ACTIONS = Object.keys(ACTIONS).sort();

function writeHealth(xml: Xml, h: TargetHealth, healthCheckPort: string): void {
  xml.open("member");
  xml.open("Target");
  xml.leaf("Id", h.target.id);
  xml.leaf("Port", h.target.port);
  xml.close("Target");
  xml.leaf("HealthCheckPort", healthCheckPort === "traffic-port" ? String(h.target.port) : healthCheckPort);
  xml.open("TargetHealth");
  xml.leaf("State", h.state);
  if (h.reason) xml.leaf("Reason", h.reason);
  if (h.description) xml.leaf("Description", h.description);
  xml.close("TargetHealth");
  xml.close("member");
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers["content-length"] ?? "0") > MAX_BODY_BYTES) {
      req.resume();
      return reject(new ElbError("ValidationError", `The request body is larger than ${MAX_BODY_BYTES} bytes`, 413));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on("data", (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        failed = true;
        req.resume();
        reject(new ElbError("ValidationError", `The request body is larger than ${MAX_BODY_BYTES} bytes`, 413));
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (!failed) resolve(Buffer.concat(chunks).toString("utf8"));
    });
    req.on("error", (e) => {
      if (!failed) reject(e);
    });
  });
}

export async function handleElbv2(req: IncomingMessage, res: ServerResponse, deps: Elbv2Deps): Promise<void> {
  const requestId = randomUUID();
  let action = "";
  const send = (status: number, body: string) => {
    if (res.headersSent) return;
    res.writeHead(status, { "content-type": "text/xml", "x-amzn-requestid": requestId, "content-length": Buffer.byteLength(body) });
    res.end(body);
  };
  try {
    if (req.method !== "POST") {
      req.resume();
      throw new ElbError("ValidationError", `The HTTP method ${req.method} is not supported: use POST on /`, 405);
    }
    const ctype = String(req.headers["content-type"] ?? "");
    if (!/^application\/x-www-form-urlencoded\b/i.test(ctype)) {
      req.resume();
      throw new ElbError("ValidationError", `Unsupported content type '${ctype}': send application/x-www-form-urlencoded`);
    }
    let form: Map<string, string>;
    try {
      form = parseForm(await readBody(req));
    } catch (err) {
      if (err instanceof Ec2Error) throw new ElbError("ValidationError", err.message);
      throw err;
    }
    action = form.get("Action") ?? "";
    form.delete("Action");
    const version = form.get("Version");
    form.delete("Version");
    if (!action) throw new ElbError("ValidationError", "The request must contain the parameter Action");
    if (version !== ELBV2_VERSION) throw new ElbError("ValidationError", `Version '${version ?? ""}' is not ${ELBV2_VERSION}`);
    const handler = ACTIONS[action];
    if (!handler)
      throw new ElbError(
        "InvalidAction",
        `The action ${action} is not valid for this web service (localcloud implements ${ELBV2_ACTIONS.join(", ")})`,
      );
    const fault = deps.world.takeFault(action);
    const injected = fault && new ElbError(fault.code, fault.message ?? `localcloud injected fault: ${fault.code}`);
    if (injected && fault.when !== "after") throw injected;
    const policy = enforcerFor(deps.world).policy;
    if (policy) authorizeElb(policy, action, form, deps.world.region);
    const xml = new Xml();
    handler(deps, new Params(form), xml);
    // An "after" fault: the action took effect, the caller is told it failed.
    if (injected) throw injected;
    send(
      200,
      `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${XMLNS}"><${action}Result>${xml.out.join("")}</${action}Result>` +
        `<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></${action}Response>`,
    );
  } catch (err) {
    if (err instanceof ElbError) {
      send(
        err.status,
        `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="${XMLNS}"><Error><Type>Sender</Type><Code>${xmlEscape(err.code)}</Code>` +
          `<Message>${xmlEscape(err.message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
      );
      return;
    }
    deps.world.log(`internal error in ELBv2 ${action || "request"}: ${(err as Error)?.stack ?? String(err)}`);
    send(
      500,
      `<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse xmlns="${XMLNS}"><Error><Type>Receiver</Type><Code>InternalFailure</Code>` +
        `<Message>${xmlEscape((err as Error)?.message ?? String(err))}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
    );
  }
}
