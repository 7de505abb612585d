/**
 * Where an agent connection comes from. A session must come from one of its instance's private
 * addresses; behind a TLS-terminating proxy the peer is the proxy, and only a proxy listed in
 * `trustProxy` is believed about the client address it puts in `X-Forwarded-For`.
 */
import type { IncomingMessage } from "node:http";
import { BlockList, isIP } from "node:net";

/** Longest X-Forwarded-For header looked at; a longer one is not believed. */
const MAX_FORWARDED_CHARS = 2048;
const MAX_FORWARDED_HOPS = 32;

/** `::ffff:10.0.0.5` -> `10.0.0.5`; IPv6 lowercased; anything else unchanged. */
export function normaliseAddress(address: string): string {
  const a = address.trim().toLowerCase();
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a);
  return mapped ? mapped[1]! : a;
}

export function isLoopback(address: string): boolean {
  const a = normaliseAddress(address);
  return a === "::1" || (isIP(a) === 4 && a.startsWith("127."));
}

/**
 * A list of proxy addresses or CIDRs (`10.0.0.7`, `10.0.0.0/24`, `fd00::/8`). Throws naming the
 * entry that is neither.
 */
export function parseTrustedProxies(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr = "", bits, extra] = entry.trim().split("/");
    const a = normaliseAddress(addr);
    const family = isIP(a);
    const prefix = bits === undefined ? undefined : Number(bits);
    const max = family === 4 ? 32 : 128;
    if (family === 0 || extra !== undefined || (prefix !== undefined && !(Number.isInteger(prefix) && prefix >= 0 && prefix <= max)))
      throw new Error(`trustProxy: ${JSON.stringify(entry)} is not an IP address or CIDR (such as 10.0.0.7 or 10.0.0.0/24)`);
    const type = family === 4 ? "ipv4" : "ipv6";
    if (prefix === undefined) list.addAddress(a, type);
    else list.addSubnet(a, prefix, type);
  }
  return list;
}

function trusted(list: BlockList, address: string): boolean {
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 4 ? "ipv4" : "ipv6");
}

/**
 * The client address of an upgrade request: the socket's peer, or, when that peer is a trusted
 * proxy, the right-most X-Forwarded-For entry that is not itself a trusted proxy (entries to its
 * left were written by the client and prove nothing). "" when unknown.
 */
export function clientAddress(req: IncomingMessage, trustedProxies: BlockList | null): string {
  const peer = normaliseAddress(req.socket.remoteAddress ?? "");
  if (!trustedProxies || !trusted(trustedProxies, peer)) return peer;
  const header = req.headers["x-forwarded-for"];
  const text = Array.isArray(header) ? header.join(",") : (header ?? "");
  if (!text || text.length > MAX_FORWARDED_CHARS) return peer;
  const hops = text.split(",").slice(-MAX_FORWARDED_HOPS);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normaliseAddress(hops[i]!);
    if (isIP(hop) === 0) return peer; // a garbled header is not believed
    if (!trusted(trustedProxies, hop)) return hop;
  }
  return peer;
}
