/**
 * The regions one localcloud serves and which one a request is for. One endpoint URL serves them
 * all: a request is for the region of its SigV4 credential scope (`Credential=AKID/20261208/us-west-2/ec2/aws4_request`
 * in the Authorization header, or X-Amz-Credential in a presigned query), as AWS's regional endpoints
 * see it; an unsigned request is for the home region (the first served). A request for a region the
 * localcloud does not serve is refused as AWS refuses a region the account has not enabled: the
 * service's "credentials not valid" error (EC2's AuthFailure, HTTP 401), the region named.
 */
import type { IncomingMessage } from "node:http";
import type { Elbv2Service } from "./elbv2/targets.js";
import type { EventBus } from "./events/bus.js";
import type { SqsService } from "./sqs/queues.js";
import { DEFAULT_REGION, REGION_NAME_RE } from "./world/catalog.js";
import type { World } from "./world/world.js";

/** What one region has: its world (EC2, KMS), its SQS queues, event rules and target groups. */
export interface RegionServices {
  world: World;
  sqs: SqsService;
  events: EventBus;
  elbv2: Elbv2Service;
}

/** Check a `regions` option: region names, no duplicates; the default is us-east-1 alone. */
export function checkRegions(regions: readonly string[] | undefined): string[] {
  if (regions === undefined) return [DEFAULT_REGION];
  if (!Array.isArray(regions) || regions.length === 0) throw new RangeError("regions: name at least one region (like us-east-1)");
  if (regions.length > 32) throw new RangeError(`regions: at most 32 regions, got ${regions.length}`);
  const seen = new Set<string>();
  for (const r of regions) {
    if (typeof r !== "string" || !REGION_NAME_RE.test(r))
      throw new RangeError(`regions: ${JSON.stringify(String(r).slice(0, 64))} is not a region name (like us-east-1 or us-gov-west-1)`);
    if (seen.has(r)) throw new RangeError(`regions: ${r} is named twice`);
    seen.add(r);
  }
  return [...regions];
}

const SCOPE_RE = /Credential=[^/,\s]+\/\d{8}\/([^/,\s]+)\/[^/,\s]+\/aws4_request/;
const QUERY_SCOPE_RE = /^[^/]+\/\d{8}\/([^/]+)\/[^/]+\/aws4_request$/;

/** The region a request is signed for, or null when it is not signed (no credential scope). */
export function signedRegion(req: IncomingMessage): string | null {
  const auth = req.headers.authorization;
  if (typeof auth === "string") {
    const m = SCOPE_RE.exec(auth);
    if (m) return m[1]!;
  }
  const q = (req.url ?? "").indexOf("?");
  if (q >= 0) {
    const cred = new URLSearchParams((req.url ?? "").slice(q + 1)).get("X-Amz-Credential");
    const m = cred ? QUERY_SCOPE_RE.exec(cred) : null;
    if (m) return m[1]!;
  }
  return null;
}

export class Regions {
  readonly home: RegionServices;

  constructor(readonly byName: ReadonlyMap<string, RegionServices>) {
    const first = [...byName.values()][0];
    if (!first) throw new RangeError("a localcloud serves at least one region");
    this.home = first;
  }

  /** The region a request is for: its services, or `{ unserved }` naming a region this localcloud does not serve. */
  forRequest(req: IncomingMessage): RegionServices | { unserved: string } {
    const r = signedRegion(req);
    if (r === null) return this.home;
    return this.byName.get(r) ?? { unserved: r };
  }

  /** Why a request for `region` is refused (appended to the service's own message). */
  unservedReason(region: string): string {
    return `localcloud does not serve the region ${JSON.stringify(region.slice(0, 64))} (it serves ${[...this.byName.keys()].join(", ")})`;
  }
}
