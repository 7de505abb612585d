/**
 * Failures that keep their kind. A step that fails is recorded with its kind (and EC2 error code,
 * if any); when the workflow is replayed after a restart, the recorded failure is rethrown as a
 * `Failure` of the same kind, so runbook code branches on `failureKind(err)` and takes the same
 * branch on every run. Nothing decides on an error's message text.
 */
import { classify, type ErrorClass, errorCode } from "../cloud/errors.js";
import type { RecordedFailure } from "../db/store.js";

/** Every kind a failure can have: EC2's error classes (`classify`) and the kinds runbooks throw. */
export type FailureKind =
  | ErrorClass
  /** Every launch candidate was refused for capacity. */
  | "no-capacity"
  /** The spec names something that does not exist (an image, a subnet, a volume). */
  | "invalid-spec"
  /** A wait ran out of time. */
  | "timeout"
  /** The agent reported that it could not do what was asked. */
  | "agent-failed"
  /** An EC2 resource is not in the state the step needs and will not get there. */
  | "resource-lost"
  /** A group's member workflow did not succeed. */
  | "member-failed"
  /** A group's address pool has no address left for a new member. */
  | "pool-exhausted"
  /**
   * Of no known kind: an error that is neither a `Failure` nor an EC2 error, and on replay a
   * recorded kind this version does not know (written by another version).
   */
  | "error";

const FAILURE_KINDS: ReadonlySet<string> = new Set<FailureKind>([
  "not-found",
  "transient-in-use",
  "capacity",
  "throttling",
  "fatal",
  "no-capacity",
  "invalid-spec",
  "timeout",
  "agent-failed",
  "resource-lost",
  "member-failed",
  "pool-exhausted",
  "error",
]);

/**
 * The kind a recorded failure's text names. A kind this version does not know (recorded by
 * another version) is `error`: like the unknown text before it, it matches no branch a runbook
 * takes on a kind and is not permanent.
 */
export function toFailureKind(text: string): FailureKind {
  return FAILURE_KINDS.has(text) ? (text as FailureKind) : "error";
}

export class Failure extends Error {
  override name = "Failure";
  readonly code: string | null;
  constructor(
    readonly kind: FailureKind,
    message: string,
    options?: { code?: string | null; cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = options?.code ?? null;
  }
}

/** Kinds that no retry of the same step can fix. */
const PERMANENT = new Set<FailureKind>(["no-capacity", "invalid-spec", "agent-failed", "resource-lost", "fatal"]);

/** The kind of an error, looking through step-failure wrappers to the cause. */
export function failureKind(err: unknown): FailureKind {
  for (let e: unknown = err, depth = 0; e && depth < 8; depth++) {
    if (e instanceof Failure) return e.kind;
    if (errorCode(e)) return classify(e);
    const next = (e as { cause?: unknown }).cause;
    if (!(e as { failureWrapper?: boolean }).failureWrapper || next === undefined) break;
    e = next;
  }
  return "error";
}

export function isPermanent(err: unknown): boolean {
  return PERMANENT.has(failureKind(err));
}

export function describeError(err: unknown): string {
  if (err instanceof Error)
    return err.name && err.name !== "Error" && err.name !== "Failure" && !err.message.startsWith(err.name)
      ? `${err.name}: ${err.message}`
      : err.message;
  return String(err);
}

/** What to record for a failed attempt. */
export function recordFailure(err: unknown): RecordedFailure {
  const code = err instanceof Failure ? err.code : (errorCode(err) ?? null);
  return { kind: failureKind(err), code, message: describeError(err).slice(0, 4000) };
}

/** The error a replay rethrows for a recorded failure (an unknown recorded kind as `error`). */
export function replayFailure(f: RecordedFailure): Failure {
  return new Failure(toFailureKind(f.kind), f.message, { code: f.code });
}
