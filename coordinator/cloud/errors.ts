/**
 * Every EC2 error code spotkeep cares about, classified in ONE place. Callers ask
 * `classify(err)` or the `is*` helpers instead of matching codes themselves.
 *  - not-found: the resource is gone (terminate/delete treat it as done);
 *  - transient-in-use: a resource is still moving between states (an ENI or volume being released,
 *    a snapshot still pending) — retry with backoff;
 *  - capacity: this instance type / AZ / market cannot be had now — try the next fallback;
 *  - throttling: slow down and retry;
 *  - fatal: the request itself is wrong; retrying will not help.
 */
export type ErrorClass = "not-found" | "transient-in-use" | "capacity" | "throttling" | "fatal";

const NOT_FOUND = new Set([
  "InvalidInstanceID.NotFound",
  "InvalidVolume.NotFound",
  "InvalidSnapshot.NotFound",
  "InvalidAMIID.NotFound",
  "InvalidNetworkInterfaceID.NotFound",
  "InvalidAttachment.NotFound",
  "InvalidAttachmentID.NotFound",
  "InvalidSubnetID.NotFound",
  // DescribeVolumesModifications by id of a volume never modified.
  "InvalidVolumeModification.NotFound",
]);

const TRANSIENT = new Set([
  "InvalidNetworkInterface.InUse",
  "VolumeInUse",
  "IncorrectState",
  "IncorrectInstanceState",
  "InvalidIPAddress.InUse",
  "InvalidSnapshot.InUse",
  "ConcurrentSnapshotLimitExceeded",
  "SnapshotCreationPerVolumeRateExceeded",
  "InternalError",
  "InternalFailure",
  "ServiceUnavailable",
  "Unavailable",
  "IdempotentInstanceTerminated",
  // ModifyVolume while the volume's previous modification is still modifying or optimizing.
  "IncorrectModificationState",
]);

/**
 * Codes that say the request cannot succeed as asked, listed so each one is classified on purpose
 * (every code not listed above is fatal too): ModifyVolume within 6 hours of the volume's previous
 * modification, a size below the current one or a target EC2 does not offer.
 */
const FATAL = new Set([
  "VolumeModificationRateExceeded",
  "InvalidParameterValue",
  "InvalidParameterDependency",
  "InvalidParameterCombination",
]);

const CAPACITY = new Set([
  "InsufficientInstanceCapacity",
  "InsufficientCapacity",
  "InsufficientHostCapacity",
  "InsufficientReservedInstanceCapacity",
  "InsufficientVolumeCapacity",
  "InsufficientFreeAddressesInSubnet",
  "SpotMaxPriceTooLow",
  "MaxSpotInstanceCountExceeded",
  "UnfulfillableCapacity",
  "Unsupported",
]);

const THROTTLING = new Set(["RequestLimitExceeded", "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestThrottled"]);

/** The EC2 error code of an SDK error (its `name`), or undefined for non-EC2 errors. */
export function errorCode(err: unknown): string | undefined {
  if (err instanceof Ec2Error) return err.code;
  if (err && typeof err === "object") {
    const e = err as { name?: unknown; Code?: unknown; $metadata?: unknown };
    if (typeof e.Code === "string") return e.Code;
    if (e.$metadata && typeof e.name === "string") return e.name;
  }
  return undefined;
}

export function classify(err: unknown): ErrorClass {
  const code = errorCode(err);
  if (code === undefined) {
    // Network failures (ECONNREFUSED, timeouts) are worth retrying.
    const c = (err as { code?: unknown })?.code;
    if (typeof c === "string" && /^E[A-Z]+/.test(c)) return "transient-in-use";
    return "fatal";
  }
  if (NOT_FOUND.has(code)) return "not-found";
  if (THROTTLING.has(code)) return "throttling";
  if (CAPACITY.has(code)) return "capacity";
  if (TRANSIENT.has(code)) return "transient-in-use";
  if (FATAL.has(code)) return "fatal";
  return "fatal";
}

export const isNotFound = (err: unknown) => classify(err) === "not-found";
/** Worth retrying the same call later. */
export const isRetryable = (err: unknown) => {
  const c = classify(err);
  return c === "transient-in-use" || c === "throttling";
};

/** An EC2 call failed; the message says what was attempted (`attaching vol-1 to i-2: VolumeInUse: …`). */
export class Ec2Error extends Error {
  override name = "Ec2Error";
  constructor(
    readonly what: string,
    readonly code: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`${what}: ${code}${detail ? `: ${detail}` : ""}`, options);
  }
}

export function wrapEc2(what: string, err: unknown): Error {
  if (err instanceof Ec2Error) return err;
  const code = errorCode(err);
  if (code) return new Ec2Error(what, code, (err as Error).message ?? "", { cause: err });
  const msg = err instanceof Error ? err.message : String(err);
  const wrapped = new Error(`${what}: ${msg}`, { cause: err });
  (wrapped as { code?: unknown }).code = (err as { code?: unknown })?.code;
  return wrapped;
}
