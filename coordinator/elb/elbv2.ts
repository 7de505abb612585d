/**
 * The load-balancer gateway: the only code that imports `@aws-sdk/client-elastic-load-balancing-v2`,
 * narrowed to the four calls the target-group steps make. Mutations are safe to repeat:
 * registering a registered target changes nothing, and deregistering a target that is not (or no
 * longer) registered, or from a target group that is gone, is reported as done.
 * Errors are the EC2 gateway's `Ec2Error` shape (what was attempted, with ELBv2's code), so the
 * workflow engine classifies them the same way (throttling retried, the rest permanent).
 */
import {
  DeregisterTargetsCommand,
  DescribeTargetGroupsCommand,
  type DescribeTargetGroupsCommandOutput,
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
  RegisterTargetsCommand,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { errorCode, wrapEc2 } from "../cloud/errors.js";
import { ScaledRetryStrategy } from "../cloud/sdk-retry.js";

/** Every ELBv2 action this module calls: the coordinator's IAM policy grants exactly these. */
export const ELB_ACTIONS = ["DeregisterTargets", "DescribeTargetGroups", "DescribeTargetHealth", "RegisterTargets"] as const;

export interface TargetGroupInfo {
  arn: string;
  name: string;
  /** instance, ip, lambda or alb. */
  targetType: string;
  /** Model seconds a new target takes to turn healthy at best: interval × healthy threshold. */
  settleSeconds: number;
}

export interface TargetHealthInfo {
  id: string;
  port: number | null;
  /** initial, healthy, unhealthy, unused, draining, unavailable. */
  state: string;
  reason: string | null;
}

export interface ElbGateway {
  /** The target group, or null when it does not exist. */
  describeTargetGroup(arn: string): Promise<TargetGroupInfo | null>;
  registerTargets(targetGroupArn: string, instanceIds: string[]): Promise<void>;
  /** "gone" when the targets were not registered (or the group no longer exists): nothing left to do. */
  deregisterTargets(targetGroupArn: string, instanceIds: string[]): Promise<"deregistered" | "gone">;
  /** Health of these targets (every registration of each, on any port). */
  targetHealth(targetGroupArn: string, instanceIds: string[]): Promise<TargetHealthInfo[]>;
}

const AWS_HOST = /(^|\.)amazonaws\.com(\.cn)?$/;

/** The ELBv2 endpoint: the one configured, else an EC2 endpoint that is not AWS's (localcloud serves both), else AWS's own. */
export function elbEndpointFor(o: { elbEndpoint?: string; ec2Endpoint?: string }): string | undefined {
  if (o.elbEndpoint) return o.elbEndpoint;
  if (o.ec2Endpoint && !AWS_HOST.test(new URL(o.ec2Endpoint).hostname)) return o.ec2Endpoint;
  return undefined;
}

export function createElbGateway(o: {
  region: string;
  endpoint?: string;
  timeScale?: number;
  maxAttempts?: number;
  /** Called immediately before each attempt of every mutating (non-Describe) request; throwing refuses it (see the EC2 gateway). */
  beforeMutation?: (action: string) => void | Promise<void>;
}): ElbGateway {
  const local = o.endpoint !== undefined;
  const client = new ElasticLoadBalancingV2Client({
    region: o.region,
    endpoint: o.endpoint,
    retryStrategy: new ScaledRetryStrategy(o.maxAttempts ?? 6, o.timeScale ?? 1),
    // localcloud accepts any signature; real AWS uses the standard credential chain.
    ...(local && !process.env.AWS_ACCESS_KEY_ID ? { credentials: { accessKeyId: "spotkeep", secretAccessKey: "spotkeep" } } : {}),
  });
  const guard = o.beforeMutation;
  if (guard)
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const action = String(context.commandName ?? "").replace(/Command$/, "");
        if (!action.startsWith("Describe")) await guard(`ELB ${action}`);
        return next(args);
      },
      { step: "finalizeRequest", priority: "low", name: "spotkeepLeaderFence" },
    );
  const call = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw wrapEc2(what, err);
    }
  };
  const targets = (ids: string[]) => ids.map((Id) => ({ Id }));
  return {
    async describeTargetGroup(arn) {
      let out: DescribeTargetGroupsCommandOutput;
      try {
        out = await client.send(new DescribeTargetGroupsCommand({ TargetGroupArns: [arn] }));
      } catch (err) {
        if (errorCode(err) === "TargetGroupNotFound") return null;
        throw wrapEc2(`describing target group ${arn}`, err);
      }
      const g = out.TargetGroups?.find((x) => x.TargetGroupArn === arn);
      if (!g) return null;
      return {
        arn,
        name: g.TargetGroupName ?? arn,
        targetType: g.TargetType ?? "instance",
        settleSeconds: (g.HealthCheckIntervalSeconds ?? 30) * (g.HealthyThresholdCount ?? 5),
      };
    },
    async registerTargets(arn, ids) {
      await call(`registering ${ids.join(", ")} in ${arn}`, () =>
        client.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: targets(ids) })),
      );
    },
    async deregisterTargets(arn, ids) {
      try {
        await client.send(new DeregisterTargetsCommand({ TargetGroupArn: arn, Targets: targets(ids) }));
        return "deregistered";
      } catch (err) {
        const code = errorCode(err);
        if (code === "InvalidTarget" || code === "TargetGroupNotFound") return "gone";
        throw wrapEc2(`deregistering ${ids.join(", ")} from ${arn}`, err);
      }
    },
    async targetHealth(arn, ids) {
      const out = await call(`describing the health of ${ids.join(", ")} in ${arn}`, () =>
        client.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn, Targets: targets(ids) })),
      );
      return (out.TargetHealthDescriptions ?? []).map((d) => ({
        id: d.Target?.Id ?? "",
        port: d.Target?.Port ?? null,
        state: d.TargetHealth?.State ?? "unavailable",
        reason: d.TargetHealth?.Reason ?? null,
      }));
    },
  };
}
