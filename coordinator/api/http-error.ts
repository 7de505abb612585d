/** A request the HTTP layer itself answers with an error: its status, its `error.code` and message. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Fields answered beside `error` (a standby's `leader`). */
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }
}
