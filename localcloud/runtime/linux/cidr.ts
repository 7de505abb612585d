/** IPv4 CIDR arithmetic for the linux runtime (pure: unit-tested without root). */

export interface Cidr {
  /** Network address as an unsigned 32-bit number. */
  base: number;
  prefix: number;
}

export function parseIp(ip: string): number {
  const parts = ip.split(".");
  if (parts.length !== 4) throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) throw new Error(`not an IPv4 address: ${JSON.stringify(ip)}`);
    n = n * 256 + Number(p);
  }
  return n >>> 0;
}

export function formatIp(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses `a.b.c.d/n` (a bare address is a /32). The base is normalised to the network address. */
export function parseCidr(cidr: string): Cidr {
  const [ip, len, extra] = cidr.split("/");
  const prefix = len === undefined ? 32 : Number(len);
  if (
    extra !== undefined ||
    ip === undefined ||
    !Number.isInteger(prefix) ||
    prefix < 0 ||
    prefix > 32 ||
    (len !== undefined && !/^\d+$/.test(len))
  ) {
    throw new Error(`not an IPv4 CIDR: ${JSON.stringify(cidr)}`);
  }
  return { base: (parseIp(ip) & mask(prefix)) >>> 0, prefix };
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return (ip & mask(c.prefix)) >>> 0 === c.base;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return (a.base & mask(p)) >>> 0 === (b.base & mask(p)) >>> 0;
}

/** The VPC router address of a subnet: its network address + 1 (as in EC2). */
export function gatewayOf(subnetCidr: string): string {
  return formatIp(parseCidr(subnetCidr).base + 1);
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.base)}/${c.prefix}`;
}
