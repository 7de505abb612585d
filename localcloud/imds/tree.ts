/**
 * The IMDS path tree of one instance, built from its current ImdsInstanceView on each request so
 * IMDS always shows the model's state (a notice appears the moment the model records it).
 * Entries that AWS only shows once they exist (spot/*, events/recommendations/rebalance,
 * user-data) are simply absent before, which gives the documented 404.
 */
import type { IdentitySigner, ImdsInstanceView, ImdsScheduledEvent } from "./types.js";

export const TEXT = "text/plain";
export const JSON_TYPE = "application/json";
export const OCTETS = "application/octet-stream";

export interface Leaf {
  kind: "leaf";
  contentType: string;
  /** Lazy so signing only happens when a signature path is requested. */
  body: () => string | Buffer;
}
export interface Dir {
  kind: "dir";
  entries: Map<string, Node>;
}
export type Node = Leaf | Dir;

const text = (value: string): Leaf => ({ kind: "leaf", contentType: TEXT, body: () => value });
const json = (value: () => string): Leaf => ({ kind: "leaf", contentType: JSON_TYPE, body: value });

function dir(entries: Record<string, Node | undefined>): Dir {
  const map = new Map<string, Node>();
  for (const [k, v] of Object.entries(entries)) if (v) map.set(k, v);
  return { kind: "dir", entries: map };
}

/** A directory listing: one entry per line, sub-directories with a trailing `/`, sorted as AWS. */
export function listing(d: Dir): string {
  return [...d.entries.entries()]
    .map(([name, node]) => (node.kind === "dir" ? `${name}/` : name))
    .sort()
    .join("\n");
}

/** `2019-01-21T09:00:43Z`: AWS notice times carry no milliseconds. Unparseable input is passed through. */
export function isoSeconds(time: string): string {
  const ms = Date.parse(time);
  return Number.isNaN(ms) ? time : new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const pad2 = (n: number) => String(n).padStart(2, "0");

/** Scheduled-event time layout `21 Jan 2019 09:00:43 GMT` (Go layout `2 Jan 2006 15:04:05 GMT`). */
export function eventTime(time: string): string {
  const ms = Date.parse(time);
  if (Number.isNaN(ms)) return time;
  const d = new Date(ms);
  const clock = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${clock} GMT`;
}

function eventsJson(events: ImdsScheduledEvent[]): string {
  return JSON.stringify(
    events.map((e) => ({
      NotBefore: eventTime(e.notBefore),
      Code: e.code,
      Description: e.description,
      EventId: e.eventId,
      ...(e.notAfter ? { NotAfter: eventTime(e.notAfter) } : {}),
      State: e.state,
      ...(e.notBeforeDeadline ? { NotBeforeDeadline: eventTime(e.notBeforeDeadline) } : {}),
    })),
  );
}

/** `ip-172-31-1-2.ec2.internal` in us-east-1, `ip-….<region>.compute.internal` elsewhere. */
export function privateHostname(ip: string, region: string): string {
  const host = `ip-${ip.replace(/[.:]/g, "-")}`;
  return region === "us-east-1" ? `${host}.ec2.internal` : `${host}.${region}.compute.internal`;
}

/** `use1-az1` for us-east-1a (localcloud maps AZ letters to ids in order; real mappings vary per account). */
function azId(region: string, az: string): string {
  const [geo = "", dirn = "", num = ""] = region.split("-");
  const letter = az.slice(region.length);
  const index = letter.length === 1 ? letter.charCodeAt(0) - 96 : 1;
  return `${geo}${dirn.charAt(0)}${num}-az${index}`;
}

/**
 * The identity document, pretty-printed like AWS (`"key" : value`, two-space indent, nulls kept,
 * AWS's key order), so byte-exact signature checks behave as against the real service.
 */
export function identityDocument(v: ImdsInstanceView): string {
  const fields: [string, string | null][] = [
    ["accountId", v.accountId],
    ["architecture", v.architecture],
    ["availabilityZone", v.availabilityZone],
    ["billingProducts", null],
    ["devpayProductCodes", null],
    ["marketplaceProductCodes", null],
    ["imageId", v.imageId],
    ["instanceId", v.instanceId],
    ["instanceType", v.instanceType],
    ["kernelId", null],
    ["pendingTime", isoSeconds(v.pendingTime)],
    ["privateIp", v.privateIp],
    ["ramdiskId", null],
    ["region", v.region],
    ["version", "2017-09-30"],
  ];
  return `{\n${fields.map(([k, val]) => `  ${JSON.stringify(k)} : ${JSON.stringify(val)}`).join(",\n")}\n}`;
}

/** The tree under a version (`/latest/`): `meta-data/`, `dynamic/`, `user-data`. */
export function instanceTree(v: ImdsInstanceView, signer: IdentitySigner): Dir {
  const hostname = privateHostname(v.privateIp, v.region);
  const macs: Record<string, Node> = {};
  for (const eni of v.enis) {
    const ips = eni.privateIps;
    macs[eni.mac] = dir({
      "device-number": text(String(eni.deviceIndex)),
      "interface-id": text(eni.eniId),
      "local-hostname": text(privateHostname(ips[0] ?? v.privateIp, v.region)),
      "local-ipv4s": ips.length > 0 ? text(ips.join("\n")) : undefined,
      mac: text(eni.mac),
      "owner-id": text(v.accountId),
      "security-group-ids": text(eni.securityGroupIds.join("\n")),
      "subnet-id": text(eni.subnetId),
      "subnet-ipv4-cidr-block": text(eni.subnetCidr),
      "vpc-id": text(eni.vpcId),
      "vpc-ipv4-cidr-block": text(eni.vpcCidr),
      "vpc-ipv4-cidr-blocks": text(eni.vpcCidr),
    });
  }
  const bdm: Record<string, Node> = {};
  for (const [name, device] of Object.entries(v.blockDeviceMapping)) bdm[name] = text(device);

  const action = v.spotInstanceAction;
  const active = v.scheduledEvents.filter((e) => e.state === "active");
  const history = v.scheduledEvents.filter((e) => e.state !== "active");
  const doc = identityDocument(v);

  const metaData = dir({
    "ami-id": text(v.imageId),
    "ami-launch-index": text("0"),
    "ami-manifest-path": text("(unknown)"),
    "block-device-mapping": dir(bdm),
    events: dir({
      maintenance: dir({ scheduled: json(() => eventsJson(active)), history: json(() => eventsJson(history)) }),
      recommendations: v.rebalanceNoticeTime
        ? dir({ rebalance: json(() => JSON.stringify({ noticeTime: isoSeconds(v.rebalanceNoticeTime!) })) })
        : undefined,
    }),
    hostname: text(hostname),
    "instance-action": text("none"),
    "instance-id": text(v.instanceId),
    "instance-life-cycle": text(v.instanceLifecycle),
    "instance-type": text(v.instanceType),
    "local-hostname": text(hostname),
    "local-ipv4": text(v.privateIp),
    mac: text(v.mac),
    network: dir({ interfaces: dir({ macs: dir(macs) }) }),
    placement: dir({
      "availability-zone": text(v.availabilityZone),
      "availability-zone-id": text(v.availabilityZoneId ?? azId(v.region, v.availabilityZone)),
      region: text(v.region),
    }),
    services: dir({ domain: text("amazonaws.com"), partition: text("aws") }),
    spot: action
      ? dir({
          "instance-action": json(() => JSON.stringify({ action: action.action, time: isoSeconds(action.time) })),
          // AWS documents termination-time only for instances marked for termination.
          "termination-time": action.action === "terminate" ? text(isoSeconds(action.time)) : undefined,
        })
      : undefined,
  });

  return dir({
    "meta-data": metaData,
    dynamic: dir({
      "instance-identity": dir({
        document: json(() => doc),
        signature: { kind: "leaf", contentType: TEXT, body: () => signer.signRsaSha256(doc) },
        // AWS signs /pkcs7 with DSA-SHA1; localcloud has one RSA key, so both carry RSA-SHA256 CMS.
        pkcs7: { kind: "leaf", contentType: TEXT, body: () => signer.signPkcs7(doc) },
        rsa2048: { kind: "leaf", contentType: TEXT, body: () => signer.signPkcs7(doc) },
      }),
    }),
    "user-data": v.userData && v.userData.length > 0 ? { kind: "leaf", contentType: OCTETS, body: () => v.userData! } : undefined,
  });
}
