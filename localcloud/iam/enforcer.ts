/**
 * The policy localcloud enforces, if any. Off by default; set from `--iam-policy FILE` at start or
 * through the control API (PUT/DELETE /_localcloud/v1/iam/policy). A bad document is refused and
 * leaves the current policy in place.
 */
import { readFile } from "node:fs/promises";
import { parsePolicy, PolicyError, type Policy } from "./policy.js";

export class IamEnforcer {
  policy: Policy | null = null;

  /** Parse and enforce a policy document (object or JSON text); throws PolicyError and changes nothing on a bad one. */
  set(document: unknown): Policy {
    const p = parsePolicy(document);
    this.policy = p;
    return p;
  }

  clear(): void {
    this.policy = null;
  }
}

/** Read and parse a policy file; the error names the file and what is wrong. */
export async function loadPolicyFile(file: string): Promise<Policy> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new PolicyError(`reading the IAM policy ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return parsePolicy(text);
  } catch (err) {
    throw new PolicyError(`the IAM policy ${file}: ${(err as Error).message}`, { cause: err });
  }
}

const enforcers = new WeakMap<object, IamEnforcer>();

/** Make `world` use the enforcer of `from` (IAM is global: every region of one localcloud enforces one policy). */
export function shareEnforcer(world: object, from: object): void {
  enforcers.set(world, enforcerFor(from));
}

/** The enforcer of one localcloud (keyed by its world): the EC2 endpoint and the control API share it. */
export function enforcerFor(world: object): IamEnforcer {
  let e = enforcers.get(world);
  if (!e) {
    e = new IamEnforcer();
    enforcers.set(world, e);
  }
  return e;
}
