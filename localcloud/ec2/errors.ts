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
