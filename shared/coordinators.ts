/**
 * Where agents find the coordinator: one URL (a load balancer in front of every coordinator) or a
 * list tried in turn. A coordinator that is not the leader completes the WebSocket handshake and
 * closes at once with NOT_LEADER_CLOSE_CODE and a reason naming the leader.
 */

/** WebSocket close code of a standby coordinator refusing an agent session (4000-4999: private use). */
export const NOT_LEADER_CLOSE_CODE = 4503;

/** At most this many coordinator URLs in SPOTKEEP_COORDINATOR. */
export const MAX_COORDINATOR_URLS = 8;

/**
 * SPOTKEEP_COORDINATOR: one ws(s):// URL or several separated by commas or spaces. Returns the
 * list, or an error message naming what is wrong.
 */
export function parseCoordinatorUrls(text: string): { urls: string[] } | { error: string } {
  const urls = text.split(/[\s,]+/).filter((u) => u !== "");
  if (urls.length === 0) return { error: "must name at least one ws:// or wss:// URL" };
  if (urls.length > MAX_COORDINATOR_URLS) return { error: `names ${urls.length} URLs; at most ${MAX_COORDINATOR_URLS} are allowed` };
  const bad = urls.find((u) => !/^wss?:\/\/[^\s,]+$/.test(u));
  if (bad) return { error: `must be ws:// or wss:// URLs separated by commas, got ${JSON.stringify(bad.slice(0, 200))}` };
  return { urls };
}
