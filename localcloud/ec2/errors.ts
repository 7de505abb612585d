/** An EC2 API error as the wire carries it: code, message and HTTP status. */
export class Ec2Error extends Error {
  override name = "Ec2Error";
  constructor(
    readonly code: string,
    message: string,
    readonly status: number = statusFor(code),
  ) {
    super(message);
  }
}

/** HTTP status per error code: 400 for client errors unless the real service answers otherwise. */
export function statusFor(code: string): number {
  switch (code) {
    case "DryRunOperation":
      return 412;
    case "UnauthorizedOperation":
      return 403;
    case "AuthFailure":
      return 401;
    case "RequestLimitExceeded":
    case "Unavailable":
    case "ServiceUnavailable":
      return 503;
    case "InsufficientInstanceCapacity":
    case "InsufficientVolumeCapacity":
    case "InsufficientCapacity":
    case "InternalError":
    case "InsufficientAddressCapacity":
      return 500;
    default:
      return 400;
  }
}

export const missing = (param: string) => new Ec2Error("MissingParameter", `The request must contain the parameter ${param}`);
export const invalidValue = (param: string, value: unknown, why?: string) =>
  new Ec2Error("InvalidParameterValue", `Invalid value '${String(value)}' for ${param}${why ? `. ${why}` : ""}`);
export const combination = (message: string) => new Ec2Error("InvalidParameterCombination", message);

/** EC2's answer when an instance type and an AMI (or an instance) have different architectures. */
export const architectureMismatch = (typeArch: string, imageArch: string) =>
  new Ec2Error(
    "InvalidParameterValue",
    `The architecture '${typeArch}' of the specified instance type does not match the architecture '${imageArch}' of the specified AMI. ` +
      "Specify an instance type and an AMI that have matching architectures, and try again. " +
      "You can use 'describe-instance-types' or 'describe-images' to discover the architecture of the instance type or AMI.",
  );
