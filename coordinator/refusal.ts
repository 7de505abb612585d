/**
 * A request the coordinator refuses: the domain's answer that something cannot be done now or at
 * all, as opposed to a failure while doing it. Domain code (operations, groups, tasks) throws it;
 * the HTTP API alone maps its kind to a status (coordinator/api/server.ts). A refusal changes
 * nothing: it is thrown before, or inside, the transaction that would have started the work.
 */
export type RefusalKind =
  /** What the request names does not exist. */
  | "not-found"
  /** The request contradicts the current state (name in use, instance busy, state does not allow it). */
  | "conflict"
  /** The request itself is wrong (a field, a value, a combination); the message names it. */
  | "invalid"
  /** Nothing is wrong with the request, but the coordinator cannot carry it out just now; retrying later may succeed. */
  | "unavailable";

export class Refusal extends Error {
  override name = "Refusal";
  constructor(
    readonly kind: RefusalKind,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export function isRefusal(err: unknown): err is Refusal {
  return err instanceof Refusal;
}
