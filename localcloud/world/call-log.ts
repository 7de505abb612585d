/**
 * The EC2 call log: every Query API request localcloud answered, in order, with when it arrived
 * (wall-clock ms), the action, who made it and how it ended. The caller is the client's
 * `spotkeep-coordinator/<id>` User-Agent token when it sends one (each coordinator of an HA pair
 * does), else the access key id of its signature, else "anonymous". Bounded: the oldest entries
 * go first. Served by the control API (`GET calls`).
 */
import type { IncomingMessage } from "node:http";

export interface CallRecord {
  seq: number;
  /** Wall-clock ms when the request arrived. */
  at: number;
  action: string;
  /** The region the request was for. */
  region: string;
  caller: string;
  /** "ok" or the EC2 error code answered. */
  outcome: string;
}

export const CALL_LOG_LIMIT = 50_000;

export class CallLog {
  private entries: CallRecord[] = [];
  private next = 1;

  constructor(private readonly limit = CALL_LOG_LIMIT) {}

  /** Records a call as it arrives; `finish` sets its outcome. */
  start(action: string, caller: string, region: string, at = Date.now()): CallRecord {
    const r: CallRecord = { seq: this.next++, at, action, region, caller, outcome: "pending" };
    this.entries.push(r);
    if (this.entries.length > this.limit) this.entries.splice(0, this.entries.length - this.limit);
    return r;
  }

  list(filter: { since?: number; action?: string; caller?: string; region?: string; limit?: number } = {}): CallRecord[] {
    const out = this.entries.filter(
      (r) =>
        (filter.since === undefined || r.at >= filter.since) &&
        (filter.region === undefined || r.region === filter.region) &&
        (filter.action === undefined || r.action === filter.action) &&
        (filter.caller === undefined || r.caller === filter.caller),
    );
    return filter.limit === undefined ? out : out.slice(-filter.limit);
  }

  clear(): void {
    this.entries = [];
  }
}

/** Who made a request: the spotkeep-coordinator User-Agent token, the signature's access key id, or "anonymous". */
export function callerOf(req: IncomingMessage): string {
  for (const h of ["user-agent", "x-amz-user-agent"]) {
    const v = req.headers[h];
    const m = typeof v === "string" ? /(?:^|\s)spotkeep-coordinator\/([A-Za-z0-9._~-]{1,100})/.exec(v) : null;
    if (m) return m[1]!;
  }
  const auth = req.headers.authorization;
  const key = typeof auth === "string" ? /Credential=([A-Z0-9a-z]{1,128})\//.exec(auth) : null;
  return key ? `key:${key[1]}` : "anonymous";
}
