/**
 * Identity-based IAM policies: parsing (bad documents get an error naming the statement and
 * element) and evaluation of one (action, resource, context) request.
 *
 * Evaluation follows IAM's rules for a single identity policy: an explicit Deny wins, then any
 * Allow, else the request is implicitly denied. Action names match case-insensitively, resource
 * ARNs case-sensitively, both with `*` and `?` wildcards. Within a statement every condition
 * operator must hold; within an operator every key must hold; a key holds when any of the policy's
 * values matches. A key missing from the request context fails a positive operator and satisfies a
 * negated one (StringNotEquals, ...); `...IfExists` makes a missing key satisfy the operator.
 * `ForAnyValue:` needs one context value to match; `ForAllValues:` needs every context value to
 * match (and holds for a missing or empty key).
 */

export type Effect = "Allow" | "Deny";

export interface Condition {
  /** The operator as written, e.g. `ForAllValues:StringLike` or `StringEqualsIfExists`. */
  operator: string;
  key: string;
  values: string[];
}

export interface Statement {
  /** The statement's Sid, or `#<index>` (1-based) when it has none. */
  sid: string;
  effect: Effect;
  actions: string[];
  /** true: the statement lists NotAction. */
  notAction: boolean;
  resources: string[];
  notResource: boolean;
  conditions: Condition[];
}

export interface Policy {
  statements: Statement[];
  /** The document as given (returned by the control API). */
  document: unknown;
}

export class PolicyError extends Error {
  override name = "PolicyError";
}

const BASE_OPERATORS = new Set([
  "StringEquals",
  "StringNotEquals",
  "StringEqualsIgnoreCase",
  "StringNotEqualsIgnoreCase",
  "StringLike",
  "StringNotLike",
  "ArnEquals",
  "ArnNotEquals",
  "ArnLike",
  "ArnNotLike",
  "NumericEquals",
  "NumericNotEquals",
  "NumericLessThan",
  "NumericLessThanEquals",
  "NumericGreaterThan",
  "NumericGreaterThanEquals",
  "Bool",
  "Null",
]);
const NEGATED = new Set([
  "StringNotEquals",
  "StringNotEqualsIgnoreCase",
  "StringNotLike",
  "ArnNotEquals",
  "ArnNotLike",
  "NumericNotEquals",
]);
const MAX_POLICY_STATEMENTS = 200;

function splitOperator(op: string): { set: "" | "ForAnyValue" | "ForAllValues"; base: string; ifExists: boolean } {
  let rest = op;
  let set: "" | "ForAnyValue" | "ForAllValues" = "";
  for (const p of ["ForAnyValue", "ForAllValues"] as const) {
    if (rest.startsWith(`${p}:`)) {
      set = p;
      rest = rest.slice(p.length + 1);
    }
  }
  const ifExists = rest !== "Null" && rest.endsWith("IfExists");
  return { set, base: ifExists ? rest.slice(0, -"IfExists".length) : rest, ifExists };
}

function stringList(v: unknown, where: string): string[] {
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) throw new PolicyError(`${where} is an empty list`);
  return list.map((x, i) => {
    if (typeof x === "string") return x;
    if (typeof x === "boolean" || typeof x === "number") return String(x);
    throw new PolicyError(`${where}${Array.isArray(v) ? `[${i}]` : ""} must be a string, got ${JSON.stringify(x)}`);
  });
}

function pick(o: Record<string, unknown>, a: string, b: string, where: string, required: boolean): { values: string[]; not: boolean } {
  if (a in o && b in o) throw new PolicyError(`${where} has both ${a} and ${b}`);
  if (a in o) return { values: stringList(o[a], `${where}.${a}`), not: false };
  if (b in o) return { values: stringList(o[b], `${where}.${b}`), not: true };
  if (required) throw new PolicyError(`${where} needs ${a} or ${b}`);
  return { values: ["*"], not: false };
}

/** Parse a policy document (an object or its JSON text). Throws PolicyError naming what is wrong. */
export function parsePolicy(input: unknown): Policy {
  let doc = input;
  if (typeof input === "string") {
    try {
      doc = JSON.parse(input);
    } catch (err) {
      throw new PolicyError(`the policy is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new PolicyError("the policy must be a JSON object");
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d))
    if (k !== "Version" && k !== "Id" && k !== "Statement") throw new PolicyError(`the policy has an unknown element ${JSON.stringify(k)}`);
  if (d.Version !== undefined && d.Version !== "2012-10-17" && d.Version !== "2008-10-17")
    throw new PolicyError(`Version must be "2012-10-17", got ${JSON.stringify(d.Version)}`);
  if (d.Statement === undefined) throw new PolicyError("the policy has no Statement");
  const raw = Array.isArray(d.Statement) ? d.Statement : [d.Statement];
  if (raw.length === 0) throw new PolicyError("Statement is an empty list");
  if (raw.length > MAX_POLICY_STATEMENTS) throw new PolicyError(`the policy has more than ${MAX_POLICY_STATEMENTS} statements`);
  const sids = new Set<string>();
  const statements = raw.map((s, i): Statement => {
    let where = `Statement[${i}]`;
    if (!s || typeof s !== "object" || Array.isArray(s)) throw new PolicyError(`${where} must be an object`);
    const st = s as Record<string, unknown>;
    for (const k of Object.keys(st)) {
      if (k === "Principal" || k === "NotPrincipal")
        throw new PolicyError(`${where} has ${k}: an identity-based policy names no principal`);
      if (!["Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"].includes(k))
        throw new PolicyError(`${where} has an unknown element ${JSON.stringify(k)}`);
    }
    if (st.Sid !== undefined && (typeof st.Sid !== "string" || !/^[A-Za-z0-9]*$/.test(st.Sid)))
      throw new PolicyError(`${where}.Sid must be alphanumeric, got ${JSON.stringify(st.Sid)}`);
    const sid = typeof st.Sid === "string" && st.Sid !== "" ? st.Sid : `#${i + 1}`;
    if (sids.has(sid)) throw new PolicyError(`${where}: Sid ${sid} is used twice`);
    sids.add(sid);
    where = `Statement ${sid}`;
    if (st.Effect !== "Allow" && st.Effect !== "Deny")
      throw new PolicyError(`${where}: Effect must be Allow or Deny, got ${JSON.stringify(st.Effect)}`);
    const action = pick(st, "Action", "NotAction", where, true);
    for (const a of action.values)
      if (a !== "*" && !/^[a-zA-Z0-9-]+:[A-Za-z0-9*?]+$/.test(a))
        throw new PolicyError(`${where}: action ${JSON.stringify(a)} is not service:Action (e.g. ec2:RunInstances)`);
    const resource = pick(st, "Resource", "NotResource", where, true);
    for (const r of resource.values)
      if (r !== "*" && !r.startsWith("arn:")) throw new PolicyError(`${where}: resource ${JSON.stringify(r)} is not an ARN or *`);
    const conditions: Condition[] = [];
    if (st.Condition !== undefined) {
      if (!st.Condition || typeof st.Condition !== "object" || Array.isArray(st.Condition))
        throw new PolicyError(`${where}.Condition must be an object of operators`);
      for (const [operator, block] of Object.entries(st.Condition as Record<string, unknown>)) {
        const { base } = splitOperator(operator);
        if (!BASE_OPERATORS.has(base)) throw new PolicyError(`${where}: unsupported condition operator ${JSON.stringify(operator)}`);
        if (!block || typeof block !== "object" || Array.isArray(block))
          throw new PolicyError(`${where}.Condition.${operator} must be an object of condition keys`);
        for (const [key, v] of Object.entries(block as Record<string, unknown>)) {
          const values = stringList(v, `${where}.Condition.${operator}.${key}`);
          if ((base === "Null" || base === "Bool") && values.some((x) => x !== "true" && x !== "false"))
            throw new PolicyError(`${where}.Condition.${operator}.${key}: ${base} takes "true" or "false"`);
          if (base.startsWith("Numeric") && values.some((x) => !Number.isFinite(Number(x))))
            throw new PolicyError(`${where}.Condition.${operator}.${key}: ${base} takes numbers`);
          conditions.push({ operator, key, values });
        }
      }
    }
    return {
      sid,
      effect: st.Effect,
      actions: action.values,
      notAction: action.not,
      resources: resource.values,
      notResource: resource.not,
      conditions,
    };
  });
  return { statements, document: doc };
}

// ---- matching ---------------------------------------------------------------------------------

const globCache = new Map<string, RegExp>();
function glob(pattern: string, ignoreCase: boolean): RegExp {
  const key = `${ignoreCase ? "i" : "c"}${pattern}`;
  let re = globCache.get(key);
  if (!re) {
    const body = pattern
      .replace(/[.+^${}()|[\]\\]/g, "\\$&")
      .replace(/\*/g, ".*")
      .replace(/\?/g, ".");
    re = new RegExp(`^${body}$`, ignoreCase ? "is" : "s");
    if (globCache.size > 5000) globCache.clear();
    globCache.set(key, re);
  }
  return re;
}

export function actionMatches(pattern: string, action: string): boolean {
  return pattern === "*" || glob(pattern, true).test(action);
}

/** ARN matching: each of the six colon-separated parts on its own; the resource part may hold colons. */
export function arnMatches(pattern: string, arn: string): boolean {
  if (pattern === "*") return true;
  if (arn === "*") return false;
  const p = pattern.split(":");
  const a = arn.split(":");
  if (p.length < 6 || a.length < 6) return glob(pattern, false).test(arn);
  const pParts = [...p.slice(0, 5), p.slice(5).join(":")];
  const aParts = [...a.slice(0, 5), a.slice(5).join(":")];
  return pParts.every((x, i) => glob(x, false).test(aParts[i]!));
}

/** The request context: condition key (case-insensitive) -> values. */
export type Context = Map<string, string[]>;

export function contextOf(entries: Record<string, string | string[] | undefined>): Context {
  const out: Context = new Map();
  for (const [k, v] of Object.entries(entries)) if (v !== undefined) out.set(k.toLowerCase(), Array.isArray(v) ? v : [v]);
  return out;
}

function valueMatches(base: string, policyValue: string, value: string): boolean {
  switch (base) {
    case "StringEquals":
      return policyValue === value;
    case "StringEqualsIgnoreCase":
      return policyValue.toLowerCase() === value.toLowerCase();
    case "StringLike":
      return glob(policyValue, false).test(value);
    // IAM treats ArnEquals and ArnLike alike: part-wise, with wildcards.
    case "ArnEquals":
    case "ArnLike":
      return arnMatches(policyValue, value);
    case "Bool":
      return policyValue.toLowerCase() === value.toLowerCase();
    default: {
      const x = Number(value);
      const y = Number(policyValue);
      if (!Number.isFinite(x)) return false;
      switch (base) {
        case "NumericEquals":
          return x === y;
        case "NumericLessThan":
          return x < y;
        case "NumericLessThanEquals":
          return x <= y;
        case "NumericGreaterThan":
          return x > y;
        default:
          return x >= y;
      }
    }
  }
}

/** Does one condition hold in this context? */
export function conditionHolds(c: Condition, ctx: Context): boolean {
  const { set, base, ifExists } = splitOperator(c.operator);
  const present = ctx.get(c.key.toLowerCase());
  if (base === "Null") {
    const isNull = present === undefined || present.length === 0;
    return c.values.some((v) => (v === "true") === isNull);
  }
  const negated = NEGATED.has(base);
  const positiveBase = negated ? base.replace("Not", "") : base;
  const matchOne = (value: string) => c.values.some((pv) => valueMatches(positiveBase, pv, value));
  if (present === undefined || present.length === 0) {
    if (set === "ForAllValues") return true;
    if (ifExists) return true;
    return negated;
  }
  if (set === "ForAllValues") return present.every((v) => (negated ? !matchOne(v) : matchOne(v)));
  if (set === "ForAnyValue") return present.some((v) => (negated ? !matchOne(v) : matchOne(v)));
  // A single-valued operator on a multi-valued key: positive if any value matches, negated if none does.
  return negated ? !present.some(matchOne) : present.some(matchOne);
}

export interface Request {
  /** service:Action, e.g. ec2:RunInstances */
  action: string;
  /** The resource ARN, or * for an action without resource-level permissions. */
  resource: string;
  context: Context;
}

export interface FailedCondition {
  operator: string;
  key: string;
  policyValues: string[];
  requestValues: string[] | null;
}

export interface Decision {
  allowed: boolean;
  explicitDeny: boolean;
  /** Statements that applied in full: the Deny statements when denied explicitly, else the Allow statements. */
  matched: Array<{ sid: string; effect: Effect }>;
  /** Statements whose action and resource matched but whose conditions did not hold, with the conditions that failed. */
  failed: Array<{ sid: string; effect: Effect; conditions: FailedCondition[] }>;
}

function statementApplies(s: Statement, req: Request): boolean {
  const a = s.actions.some((p) => actionMatches(p, req.action));
  if (a === s.notAction) return false;
  const r = s.resources.some((p) => arnMatches(p, req.resource));
  return r !== s.notResource;
}

export function evaluate(policy: Policy, req: Request): Decision {
  const matched: Decision["matched"] = [];
  const failed: Decision["failed"] = [];
  for (const s of policy.statements) {
    if (!statementApplies(s, req)) continue;
    const bad = s.conditions.filter((c) => !conditionHolds(c, req.context));
    if (bad.length === 0) matched.push({ sid: s.sid, effect: s.effect });
    else
      failed.push({
        sid: s.sid,
        effect: s.effect,
        conditions: bad.map((c) => ({
          operator: c.operator,
          key: c.key,
          policyValues: c.values,
          requestValues: req.context.get(c.key.toLowerCase()) ?? null,
        })),
      });
  }
  const denies = matched.filter((m) => m.effect === "Deny");
  if (denies.length > 0) return { allowed: false, explicitDeny: true, matched: denies, failed };
  const allows = matched.filter((m) => m.effect === "Allow");
  return { allowed: allows.length > 0, explicitDeny: false, matched: allows, failed };
}

/**
 * Could the policy allow `action` on some resource? False when no Allow statement names the
 * action, or a Deny statement without conditions names it for every resource.
 */
export function actionGranted(policy: Policy, action: string): { allowed: boolean; explicitDeny: boolean; sids: string[] } {
  const names = (s: Statement) => s.actions.some((p) => actionMatches(p, action)) !== s.notAction;
  const denies = policy.statements.filter(
    (s) => s.effect === "Deny" && names(s) && s.conditions.length === 0 && !s.notResource && s.resources.includes("*"),
  );
  if (denies.length > 0) return { allowed: false, explicitDeny: true, sids: denies.map((s) => s.sid) };
  const allows = policy.statements.filter((s) => s.effect === "Allow" && names(s));
  return { allowed: allows.length > 0, explicitDeny: false, sids: allows.map((s) => s.sid) };
}
