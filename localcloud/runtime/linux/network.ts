import { createHash } from "node:crypto";
import { sh, shTry } from "./sh.js";
import { cidrsOverlap, formatCidr, gatewayOf, parseCidr } from "./cidr.js";

/**
 * The instances' VPC on this host: ONE bridge holding each subnet's gateway (.1) address, and per
 * instance a netns `sk-<instance-id>` with a veth whose host end sits on the bridge. The host
 * reaches instances through the bridge's connected routes; nothing else on the host changes (no
 * NAT, no firewall, no forwarding). Every instance also gets an on-link route for the whole VPC,
 * so instances in different subnets talk over the bridge's L2 without the host routing.
 */
export const NETNS_PREFIX = "sk-";
export const VETH_PREFIX = "skv";
export const BRIDGE_PREFIX = "skbr";

export function netnsName(instanceId: string): string {
  return `${NETNS_PREFIX}${instanceId}`;
}

/** Host-side veth name: `skv` + 12 hex of a hash of the id (interface names are at most 15 chars). */
export function vethName(instanceId: string): string {
  return VETH_PREFIX + createHash("sha1").update(instanceId).digest("hex").slice(0, 12);
}

interface IpAddr {
  ifname: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number }>;
}
interface IpRoute {
  dst: string;
  dev?: string;
  table?: string;
  type?: string;
}

function isOurs(dev: string | undefined): boolean {
  return !!dev && (dev.startsWith(BRIDGE_PREFIX) || dev.startsWith(VETH_PREFIX));
}

/**
 * Refuses to run when any host address or route (other than default routes and our own devices)
 * overlaps the VPC: giving the bridge those addresses would change how the host routes them.
 */
export async function checkNoOverlap(vpcCidrs: readonly string[]): Promise<void> {
  const wanted = vpcCidrs.map((c) => ({ text: c, cidr: parseCidr(c) }));
  const addrs = JSON.parse(await sh("reading host addresses", "ip", ["-j", "-4", "addr", "show"])) as IpAddr[];
  for (const link of addrs) {
    if (isOurs(link.ifname)) continue;
    for (const a of link.addr_info ?? []) {
      if (a.family !== "inet") continue;
      const have = parseCidr(`${a.local}/${a.prefixlen}`);
      const hit = wanted.find((w) => cidrsOverlap(w.cidr, have));
      if (hit) {
        throw new Error(
          `starting the linux runtime: host address ${a.local}/${a.prefixlen} on ${link.ifname} overlaps the VPC CIDR ${hit.text}; ` +
            `refusing to add the project bridge (host routes are never changed)`,
        );
      }
    }
  }
  const routes = JSON.parse(await sh("reading host routes", "ip", ["-j", "-4", "route", "show", "table", "all"])) as IpRoute[];
  for (const r of routes) {
    if (isOurs(r.dev) || r.dst === "default" || r.type === "broadcast") continue;
    let have;
    try {
      have = parseCidr(r.dst);
    } catch {
      continue;
    }
    if (have.prefix === 0) continue;
    const hit = wanted.find((w) => cidrsOverlap(w.cidr, have));
    if (hit) {
      throw new Error(
        `starting the linux runtime: host route ${formatCidr(have)}${r.dev ? ` dev ${r.dev}` : ""}${r.table ? ` table ${r.table}` : ""} ` +
          `overlaps the VPC CIDR ${hit.text}; refusing to add the project bridge (host routes are never changed)`,
      );
    }
  }
}

export async function linkExists(name: string, netns?: string): Promise<boolean> {
  const args = netns ? ["-n", netns, "link", "show", name] : ["link", "show", name];
  return (await shTry("ip", args)).code === 0;
}

export async function ensureBridge(bridge: string): Promise<void> {
  if (!(await linkExists(bridge))) {
    const r = await shTry("ip", ["link", "add", bridge, "type", "bridge"]);
    if (r.code !== 0 && !(await linkExists(bridge))) throw new Error(`creating bridge ${bridge}: ${r.stderr.trim()}`);
  }
  await sh(`bringing up bridge ${bridge}`, "ip", ["link", "set", bridge, "up"]);
}

/** Puts the subnet's gateway address on the bridge (idempotent: `addr replace`). */
export async function ensureGateway(bridge: string, subnetCidr: string): Promise<string> {
  const gw = gatewayOf(subnetCidr);
  const prefix = parseCidr(subnetCidr).prefix;
  await sh(`adding gateway ${gw}/${prefix} to ${bridge}`, "ip", ["addr", "replace", `${gw}/${prefix}`, "dev", bridge]);
  return gw;
}

export async function netnsList(): Promise<string[]> {
  const r = await shTry("ip", ["-j", "netns", "list"]);
  if (r.code !== 0 || !r.stdout.trim()) return [];
  return (JSON.parse(r.stdout) as Array<{ name: string }>).map((n) => n.name);
}

export async function netnsPids(name: string): Promise<number[]> {
  const r = await shTry("ip", ["netns", "pids", name]);
  return r.stdout
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => n > 0);
}

/** Creates the instance's netns and veth, with its private IP, the VPC on-link and a default route. */
export async function plugInstance(opts: {
  instanceId: string;
  bridge: string;
  privateIp: string;
  subnetCidr: string;
  vpcCidr: string;
}): Promise<void> {
  const ns = netnsName(opts.instanceId);
  const veth = vethName(opts.instanceId);
  const what = `giving ${opts.instanceId} its network`;
  if (!(await netnsList()).includes(ns)) await sh(what, "ip", ["netns", "add", ns]);
  if (!(await linkExists(veth))) {
    // The peer is created directly inside the netns, named eth0 there.
    if (await linkExists("eth0", ns)) await sh(what, "ip", ["-n", ns, "link", "del", "eth0"]);
    await sh(what, "ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
  }
  await sh(what, "ip", ["link", "set", veth, "master", opts.bridge]);
  await sh(what, "ip", ["link", "set", veth, "up"]);
  const prefix = parseCidr(opts.subnetCidr).prefix;
  await sh(what, "ip", ["-n", ns, "addr", "replace", `${opts.privateIp}/${prefix}`, "dev", "eth0"]);
  await sh(what, "ip", ["-n", ns, "link", "set", "lo", "up"]);
  await sh(what, "ip", ["-n", ns, "link", "set", "eth0", "up"]);
  const vpc = formatCidr(parseCidr(opts.vpcCidr));
  if (vpc !== formatCidr(parseCidr(opts.subnetCidr))) {
    await sh(what, "ip", ["-n", ns, "route", "replace", vpc, "dev", "eth0", "src", opts.privateIp]);
  }
  await sh(what, "ip", ["-n", ns, "route", "replace", "default", "via", gatewayOf(opts.subnetCidr), "dev", "eth0"]);
}

/**
 * Hot-plugs an ENI into an instance's netns: a veth `skv<hash of the ENI id>` on the bridge whose
 * peer is `eth<deviceIndex>` inside, carrying the ENI's MAC, left down and unconfigured (the
 * instance's OS configures it). The netns is created when the instance has not booted yet.
 * ARP inside answers only on the link that holds the address (arp_ignore=1, arp_announce=2), as
 * the VPC answers per ENI: the host then learns the stable IP at the ENI's MAC, which moves with it.
 */
export async function plugEni(opts: {
  instanceId: string;
  eniId: string;
  mac: string;
  deviceIndex: number;
  bridge: string;
}): Promise<void> {
  const ns = netnsName(opts.instanceId);
  const veth = vethName(opts.eniId);
  const inner = `eth${opts.deviceIndex}`;
  const what = `attaching ${opts.eniId} to ${opts.instanceId}`;
  if (!(await netnsList()).includes(ns)) await sh(what, "ip", ["netns", "add", ns]);
  for (const [k, v] of [
    ["net.ipv4.conf.all.arp_ignore", "1"],
    ["net.ipv4.conf.all.arp_announce", "2"],
  ] as const) {
    await sh(what, "ip", ["netns", "exec", ns, "sysctl", "-q", "-w", `${k}=${v}`]);
  }
  if (await linkExists(veth)) {
    const r = await shTry("ip", ["-n", ns, "-j", "link", "show", inner]);
    const here = r.code === 0 ? (JSON.parse(r.stdout) as Array<{ address?: string }>)[0]?.address : undefined;
    if (here === opts.mac) {
      await sh(what, "ip", ["link", "set", veth, "master", opts.bridge]);
      await sh(what, "ip", ["link", "set", veth, "up"]);
      return; // already plugged here: keep what the OS configured on it
    }
    await shTry("ip", ["link", "del", veth]); // left in another netns by an interrupted detach
  }
  if (await linkExists(inner, ns)) await sh(what, "ip", ["-n", ns, "link", "del", inner]);
  await sh(what, "ip", ["link", "add", veth, "type", "veth", "peer", "name", inner, "address", opts.mac, "netns", ns]);
  await sh(what, "ip", ["link", "set", veth, "master", opts.bridge]);
  await sh(what, "ip", ["link", "set", veth, "up"]);
}

/** Unplugs an ENI: deleting the host end deletes `eth<n>` inside and every address on it. */
export async function unplugEni(eniId: string): Promise<void> {
  await shTry("ip", ["link", "del", vethName(eniId)]);
}

export async function unplugInstance(instanceId: string): Promise<void> {
  await shTry("ip", ["link", "del", vethName(instanceId)]);
  await shTry("ip", ["netns", "del", netnsName(instanceId)]);
}

/** Every project link on the host (`skv*` veths, `skbr*` bridges). */
export async function projectLinks(): Promise<string[]> {
  const r = await shTry("ip", ["-j", "link", "show"]);
  if (r.code !== 0) return [];
  return (JSON.parse(r.stdout) as Array<{ ifname: string }>)
    .map((l) => l.ifname)
    .filter((n) => n.startsWith(VETH_PREFIX) || n.startsWith(BRIDGE_PREFIX));
}
