/** An ELBv2 API error as the wire carries it: code, message and HTTP status (`Sender` faults are 400). */
export class ElbError extends Error {
  override name = "ElbError";
  constructor(
    readonly code: string,
    message: string,
    readonly status: number = code === "AccessDenied" ? 403 : code === "Throttling" ? 400 : code === "InternalFailure" ? 500 : 400,
  ) {
    super(message);
  }
}
