/**
 * What each ELBv2 action is authorised against, in the style of the EC2 table
 * (localcloud/ec2/authz.ts): the Service Authorization Reference's resource for the action (a
 * target group's ARN for RegisterTargets and DeregisterTargets, `*` for the Describe actions, which
 * have no resource-level permissions). A refusal is ELBv2's `AccessDenied`.
 */
import { PRINCIPAL } from "../iam/message.js";
import { contextOf, evaluate, type Policy } from "../iam/policy.js";
import { ACCOUNT_ID } from "../world/catalog.js";
import { ElbError } from "./errors.js";

type Row = (params: Map<string, string>, region: string) => string[];

const targetGroup: Row = (p) => [p.get("TargetGroupArn") ?? "*"];

/** One row per action localcloud implements (a test keeps this equal to ELBV2_ACTIONS). */
export const ELB_AUTHORIZATION: Record<string, Row> = {
  CreateTargetGroup: (p, region) => [`arn:aws:elasticloadbalancing:${region}:${ACCOUNT_ID}:targetgroup/${p.get("Name") ?? ""}/*`],
  DescribeTargetGroups: () => ["*"],
  DescribeTargetHealth: () => ["*"],
  RegisterTargets: targetGroup,
  DeregisterTargets: targetGroup,
};

/** Throws AccessDenied for the first resource the policy does not allow the action on (a request for `region`). */
export function authorizeElb(policy: Policy, action: string, params: Map<string, string>, region: string): void {
  const row = ELB_AUTHORIZATION[action];
  if (!row) throw new Error(`localcloud bug: no ELBv2 authorization row for ${action}`);
  const iamAction = `elasticloadbalancing:${action}`;
  const context = contextOf({
    "aws:RequestedRegion": region,
    "aws:PrincipalAccount": ACCOUNT_ID,
    "aws:PrincipalArn": PRINCIPAL.arn,
  });
  for (const resource of row(params, region)) {
    const d = evaluate(policy, { action: iamAction, resource, context });
    if (d.allowed) continue;
    const why = d.explicitDeny
      ? "with an explicit deny in an identity-based policy"
      : `because no identity-based policy allows the ${iamAction} action`;
    throw new ElbError("AccessDenied", `User: ${PRINCIPAL.arn} is not authorized to perform: ${iamAction} on resource: ${resource} ${why}`);
  }
}
