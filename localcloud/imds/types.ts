/**
 * The view of one instance that IMDS serves. localcloud/ec2 (the EC2 model)
 * provides it through an ImdsLookup; localcloud/imds only reads it, so IMDS always reflects the
 * model's current state (a notice appears in IMDS the moment the model records it).
 * All times are real wall-clock ISO strings (only durations are scaled by --time-scale).
 */
export interface ImdsEni {
  mac: string;
  eniId: string;
  deviceIndex: number;
  privateIps: string[];
  subnetId: string;
  subnetCidr: string;
  vpcId: string;
  vpcCidr: string;
  securityGroupIds: string[];
}

export interface ImdsScheduledEvent {
  code: string;
  state: "active" | "completed" | "canceled";
  eventId: string;
  description: string;
  notBefore: string;
  notAfter?: string;
  notBeforeDeadline?: string;
}

export interface ImdsInstanceView {
  instanceId: string;
  instanceType: string;
  imageId: string;
  region: string;
  availabilityZone: string;
  /** The AZ's zone id as the region's catalog names it; derived from the AZ letter when absent. */
  availabilityZoneId?: string;
  accountId: string;
  architecture: "x86_64" | "arm64";
  pendingTime: string;
  privateIp: string;
  /** Primary ENI's MAC. */
  mac: string;
  enis: ImdsEni[];
  /** IMDS block-device-mapping: { ami: "/dev/xvda", root: "/dev/xvda", ebs1: "sdf", ... } (launch-time volumes only, per AWS). */
  blockDeviceMapping: Record<string, string>;
  instanceLifecycle: "spot" | "on-demand";
  userData: Buffer | null;
  /** "required" -> IMDSv2 only (401 without a valid token); "optional" -> IMDSv1 allowed. */
  httpTokens: "required" | "optional";
  /** `spot/instance-action` body, or null (404) when there is no notice. */
  spotInstanceAction: { action: "terminate" | "stop" | "hibernate"; time: string } | null;
  /** `events/recommendations/rebalance` noticeTime, or null (404). */
  rebalanceNoticeTime: string | null;
  scheduledEvents: ImdsScheduledEvent[];
  /** false once the instance is terminated/stopped: IMDS then refuses connections for it. */
  serving: boolean;
}

export type ImdsLookup = (instanceId: string) => ImdsInstanceView | null;

/** Signs instance identity documents; the certificate is what a coordinator pins. */
export interface IdentitySigner {
  certificatePem: string;
  /** base64 RSA-SHA256 signature over the exact document bytes. */
  signRsaSha256(document: string): string;
  /** base64 (no PEM armour) PKCS#7-style signed data, as IMDS `/pkcs7` and `/rsa2048` serve. */
  signPkcs7(document: string): string;
}
