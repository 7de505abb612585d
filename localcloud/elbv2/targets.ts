/**
 * ELBv2 target groups and their targets, as far as spotkeep needs them: create and describe target
 * groups, register and deregister targets, target health. Health follows the EC2 instance: a
 * registered target is `initial` for its group's interval × healthy threshold (model time) after it
 * registered while its instance runs, then `healthy`; `unused` (Target.InvalidState) while its
 * instance does not run. A deregistered target is `draining` for the group's deregistration delay
 * (300 s by default), then gone. No traffic is routed and no health check is sent.
 */
import { randomBytes } from "node:crypto";
import { ACCOUNT_ID } from "../world/catalog.js";
import type { World } from "../world/world.js";
import { ElbError } from "./errors.js";

export type TargetType = "instance" | "ip";

export interface TargetGroup {
  arn: string;
  name: string;
  protocol: string;
  port: number;
  vpcId: string;
  targetType: TargetType;
  healthCheck: {
    protocol: string;
    port: string;
    path: string;
    intervalSeconds: number;
    timeoutSeconds: number;
    healthyThreshold: number;
    unhealthyThreshold: number;
  };
  /** deregistration_delay.timeout_seconds */
  deregistrationDelaySeconds: number;
  /** By target key (`id:port`). */
  targets: Map<string, Target>;
}

export interface Target {
  id: string;
  port: number;
  /** Model time (world clock) of the registration. */
  registeredAt: number;
  /** Model time of the deregistration: draining until the delay has passed. */
  deregisteredAt: number | null;
}

export interface TargetHealth {
  target: { id: string; port: number };
  state: "initial" | "healthy" | "unhealthy" | "unused" | "draining";
  reason?: string;
  description?: string;
}

const PROTOCOLS = ["HTTP", "HTTPS", "TCP", "TLS", "UDP", "TCP_UDP", "GENEVE"];
const NAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?$/;
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** AWS's quota of targets per target group (application load balancers). */
export const MAX_TARGETS_PER_GROUP = 1000;
export const MAX_TARGET_GROUPS = 3000;

export class Elbv2Service {
  readonly groups = new Map<string, TargetGroup>();

  constructor(private readonly world: World) {}

  createTargetGroup(o: {
    name: string;
    protocol: string;
    port: number;
    vpcId: string;
    targetType: TargetType;
    healthCheck: Partial<TargetGroup["healthCheck"]>;
  }): TargetGroup {
    if (!NAME_RE.test(o.name))
      throw new ElbError(
        "ValidationError",
        `Target group name '${o.name}' can have a maximum of 32 characters, can contain only alphanumeric characters or hyphens, ` +
          `and cannot begin or end with a hyphen`,
      );
    if (!PROTOCOLS.includes(o.protocol)) throw new ElbError("ValidationError", `Protocol '${o.protocol}' is not supported`);
    if (!this.world.vpcs.has(o.vpcId)) throw new ElbError("ValidationError", `The VPC ID '${o.vpcId}' is not found`);
    const http = o.protocol === "HTTP" || o.protocol === "HTTPS";
    const healthCheck: TargetGroup["healthCheck"] = {
      protocol: o.healthCheck.protocol ?? (http ? o.protocol : "TCP"),
      port: o.healthCheck.port ?? "traffic-port",
      path: o.healthCheck.path ?? (http ? "/" : ""),
      intervalSeconds: o.healthCheck.intervalSeconds ?? 30,
      timeoutSeconds: o.healthCheck.timeoutSeconds ?? (http ? 5 : 10),
      healthyThreshold: o.healthCheck.healthyThreshold ?? 5,
      unhealthyThreshold: o.healthCheck.unhealthyThreshold ?? 2,
    };
    const existing = [...this.groups.values()].find((g) => g.name === o.name);
    if (existing) {
      // Creating a group that exists with the same settings returns it; different settings are refused.
      const same =
        existing.protocol === o.protocol && existing.port === o.port && existing.vpcId === o.vpcId && existing.targetType === o.targetType;
      if (!same)
        throw new ElbError("DuplicateTargetGroupName", `A target group with the same name '${o.name}' exists, but with different settings`);
      return existing;
    }
    if (this.groups.size >= MAX_TARGET_GROUPS)
      throw new ElbError("TooManyTargetGroups", `You have reached the limit of ${MAX_TARGET_GROUPS} target groups`);
    const arn = `arn:aws:elasticloadbalancing:${this.world.region}:${ACCOUNT_ID}:targetgroup/${o.name}/${randomBytes(8).toString("hex")}`;
    const group: TargetGroup = {
      arn,
      name: o.name,
      protocol: o.protocol,
      port: o.port,
      vpcId: o.vpcId,
      targetType: o.targetType,
      healthCheck,
      deregistrationDelaySeconds: 300,
      targets: new Map(),
    };
    this.groups.set(arn, group);
    return group;
  }

  group(arn: string): TargetGroup {
    const g = this.groups.get(arn);
    if (!g) throw new ElbError("TargetGroupNotFound", `Target groups '${arn}' not found`);
    return g;
  }

  /** Check every target before changing anything (a request with one bad target registers none). */
  private checkTargets(g: TargetGroup, targets: Array<{ id: string; port?: number }>, registering: boolean) {
    if (targets.length === 0) throw new ElbError("ValidationError", "Targets must contain at least one target");
    const out: Array<{ id: string; port: number }> = [];
    const notInstances: string[] = [];
    const notRunning: string[] = [];
    const otherVpc: string[] = [];
    for (const t of targets) {
      if (g.targetType === "instance") {
        const inst = this.world.instances.get(t.id);
        if (!inst) notInstances.push(t.id);
        else if (registering && inst.state !== "running") notRunning.push(t.id);
        else if (inst.vpcId !== g.vpcId) otherVpc.push(t.id);
      } else if (!IPV4_RE.test(t.id)) {
        throw new ElbError("ValidationError", `The IP address '${t.id}' is not a valid IPv4 address`);
      }
      out.push({ id: t.id, port: t.port ?? g.port });
    }
    const list = (ids: string[]) => ids.map((id) => `'${id}'`).join(", ");
    if (notInstances.length) throw new ElbError("InvalidTarget", `The following targets are not valid instances: ${list(notInstances)}`);
    if (notRunning.length)
      throw new ElbError("InvalidTarget", `The following targets are not in a running state and cannot be registered: ${list(notRunning)}`);
    if (otherVpc.length)
      throw new ElbError("InvalidTarget", `The following targets are not in the target group's VPC '${g.vpcId}': ${list(otherVpc)}`);
    return out;
  }

  registerTargets(arn: string, targets: Array<{ id: string; port?: number }>): void {
    const g = this.group(arn);
    const checked = this.checkTargets(g, targets, true);
    const added = checked.filter((t) => !g.targets.has(`${t.id}:${t.port}`)).length;
    if (this.live(g).length + added > MAX_TARGETS_PER_GROUP)
      throw new ElbError("TooManyTargets", `You have reached the limit of ${MAX_TARGETS_PER_GROUP} targets per target group`);
    const now = this.world.clock.now();
    for (const t of checked) {
      const key = `${t.id}:${t.port}`;
      const cur = g.targets.get(key);
      // Registering a registered target again changes nothing; a draining one registers anew.
      if (cur && cur.deregisteredAt === null) continue;
      g.targets.set(key, { id: t.id, port: t.port, registeredAt: now, deregisteredAt: null });
    }
  }

  deregisterTargets(arn: string, targets: Array<{ id: string; port?: number }>): void {
    const g = this.group(arn);
    this.sweep(g);
    const checked = this.checkTargets(g, targets, false);
    const missing = checked.filter((t) => !g.targets.has(`${t.id}:${t.port}`));
    if (missing.length)
      throw new ElbError(
        "InvalidTarget",
        `The following targets are not registered in target group '${g.name}': ${missing.map((t) => `'${t.id}'`).join(", ")}`,
      );
    const now = this.world.clock.now();
    for (const t of checked) {
      const cur = g.targets.get(`${t.id}:${t.port}`)!;
      if (cur.deregisteredAt === null) cur.deregisteredAt = now;
    }
  }

  /** Targets still registered (not draining). */
  private live(g: TargetGroup): Target[] {
    return [...g.targets.values()].filter((t) => t.deregisteredAt === null);
  }

  /** Drop targets whose draining has finished. */
  private sweep(g: TargetGroup): void {
    const now = this.world.clock.now();
    for (const [key, t] of g.targets)
      if (t.deregisteredAt !== null && now - t.deregisteredAt >= g.deregistrationDelaySeconds * 1000) g.targets.delete(key);
  }

  describeTargetHealth(arn: string, only?: Array<{ id: string; port?: number }>): TargetHealth[] {
    const g = this.group(arn);
    this.sweep(g);
    if (only && only.length > 0) {
      const checked = this.checkTargets(g, only, false);
      return checked.map((t, i) => {
        // Without a port, the target's registration on any port answers.
        const cur = only[i]?.port === undefined ? [...g.targets.values()].find((x) => x.id === t.id) : g.targets.get(`${t.id}:${t.port}`);
        return cur
          ? this.health(g, cur)
          : { target: t, state: "unused", reason: "Target.NotRegistered", description: "Target is not registered to the target group" };
      });
    }
    return [...g.targets.values()].map((t) => this.health(g, t));
  }

  private health(g: TargetGroup, t: Target): TargetHealth {
    const target = { id: t.id, port: t.port };
    if (t.deregisteredAt !== null)
      return { target, state: "draining", reason: "Target.DeregistrationInProgress", description: "Target deregistration is in progress" };
    const running =
      g.targetType === "instance"
        ? this.world.instances.get(t.id)?.state === "running"
        : [...this.world.instances.values()].some((i) => i.privateIp === t.id && i.state === "running");
    if (!running)
      return { target, state: "unused", reason: "Target.InvalidState", description: "Target is in the stopped or terminated state" };
    const settleMs = g.healthCheck.intervalSeconds * g.healthCheck.healthyThreshold * 1000;
    if (this.world.clock.now() - t.registeredAt < settleMs)
      return { target, state: "initial", reason: "Elb.RegistrationInProgress", description: "Target registration is in progress" };
    return { target, state: "healthy" };
  }
}
