/**
 * The EC2 gateway: the few EC2 operations spotkeep needs, in domain words. The contract every
 * implementation keeps (runbooks rely on it to be crash-safe):
 *  - every mutation is safe to repeat: launchInstance with the same clientToken returns the same
 *    instance; createVolume/createSnapshot/createNetworkInterface with the same idempotency tags
 *    (`spotkeep:workflow` + `spotkeep:step`) find the resource an earlier attempt created instead
 *    of making a second one; registerImage with the same name returns the existing image;
 *  - terminate/delete/deregister of something already gone succeed; detach of a detached volume
 *    succeeds; attach of a volume already attached to that instance succeeds;
 *  - describe* of an unknown id returns null (not an error);
 *  - errors are Ec2Error (coordinator/cloud/errors.ts) saying what was attempted, with the code.
 */
export type Tags = Record<string, string>;

/** Tag keys spotkeep puts on what it creates. */
export const TAG = {
  managed: "spotkeep:managed",
  instance: "spotkeep:instance",
  generation: "spotkeep:generation",
  workflow: "spotkeep:workflow",
  step: "spotkeep:step",
  device: "spotkeep:device",
  /** A short-lived launch that only checks spot capacity (terminated at once). */
  probe: "spotkeep:probe",
  /** On a generation's root volume (kept after its instance terminates): "true". */
  root: "spotkeep:root",
  /** On a resource a delete kept: when the TTL sweep deletes it (ISO 8601). */
  expiresAt: "spotkeep:expires-at",
  /** On a disaster-recovery copy in another region: the id of the snapshot or image it copies. */
  copyOf: "spotkeep:copy-of",
} as const;

export type InstanceStateName = "pending" | "running" | "shutting-down" | "terminated" | "stopping" | "stopped";

export interface InstanceInfo {
  instanceId: string;
  state: InstanceStateName;
  stateReason: string | null;
  instanceType: string;
  availabilityZone: string;
  subnetId: string | null;
  privateIp: string | null;
  lifecycle: "spot" | "on-demand";
  imageId: string;
  rootDeviceName: string | null;
  /** EBS volumes by device name, root included. */
  volumes: Array<{ deviceName: string; volumeId: string }>;
  enis: Array<{ eniId: string; deviceIndex: number }>;
  tags: Tags;
}

/** What `spotkeep import` needs to know about an instance spotkeep did not launch. */
export interface InstanceDetails extends InstanceInfo {
  vpcId: string | null;
  /** "ebs" or "instance-store". */
  rootDeviceType: string;
  /** "windows" for Windows instances; null for Linux/UNIX. */
  platform: string | null;
  keyName: string | null;
  /** The instance profile's name (the last part of its ARN). */
  iamInstanceProfile: string | null;
  securityGroupIds: string[];
  architecture: string;
  spotInstanceRequestId: string | null;
  /** EBS block devices, root included, with their DeleteOnTermination flags. */
  blockDevices: Array<{ deviceName: string; volumeId: string; deleteOnTermination: boolean }>;
  networkInterfaces: Array<{
    eniId: string;
    deviceIndex: number;
    attachmentId: string;
    deleteOnTermination: boolean;
    privateIp: string;
    subnetId: string;
    /** "interface" for a normal ENI; "efa", "trunk", … otherwise. */
    interfaceType: string;
    /** Private IPv4 addresses beyond the primary one. */
    secondaryPrivateIps: number;
  }>;
}

export interface VolumeInfo {
  volumeId: string;
  state: "creating" | "available" | "in-use" | "deleting" | "deleted" | "error";
  availabilityZone: string;
  sizeGiB: number;
  volumeType: string;
  iops: number | null;
  throughput: number | null;
  multiAttachEnabled: boolean;
  snapshotId: string | null;
  attachments: Array<{ instanceId: string; device: string; state: string }>;
  tags: Tags;
  /** EBS encryption; kmsKeyId is the key's ARN as EC2 reports it (absent: not reported). */
  encrypted?: boolean;
  kmsKeyId?: string | null;
}

/** EBS encryption of a volume EC2 creates: `kmsKeyId` absent means the account's default EBS key. */
export interface EncryptionRequest {
  encrypted?: boolean;
  kmsKeyId?: string;
}

/** A volume's latest Elastic Volumes modification (DescribeVolumesModifications). */
export interface VolumeModificationInfo {
  volumeId: string;
  state: "modifying" | "optimizing" | "completed" | "failed" | string;
  targetSizeGiB: number | null;
  targetVolumeType: string | null;
  targetIops: number | null;
  targetThroughput: number | null;
  /** 0–100. */
  progress: number;
  statusMessage: string | null;
  /** Wall-clock ms: when it started, and when it completed or failed (null before). */
  startTime: number | null;
  endTime: number | null;
}

/** What a ModifyVolume asks for; absent fields stay as they are. */
export interface ModifyVolumeRequest {
  volumeId: string;
  sizeGiB?: number;
  volumeType?: string;
  iops?: number;
  throughput?: number;
}

export interface SnapshotInfo {
  snapshotId: string;
  state: "pending" | "completed" | "error" | string;
  volumeId: string | null;
  tags: Tags;
  encrypted?: boolean;
  kmsKeyId?: string | null;
}

export interface ImageInfo {
  imageId: string;
  state: "pending" | "available" | "failed" | string;
  name: string;
  rootDeviceName: string;
  architecture: string;
  rootSnapshotId: string | null;
  /** The root mapping's size (GiB): the smallest root volume the image can boot on. */
  rootSizeGiB?: number | null;
  /** "windows" for Windows images; null for Linux/UNIX. */
  platform: string | null;
  /** Devices the image maps to instance store volumes (VirtualName ephemeralN). */
  instanceStoreDevices: string[];
  tags: Tags;
}

export interface EniInfo {
  eniId: string;
  status: "available" | "attaching" | "in-use" | "detaching" | string;
  privateIp: string;
  subnetId: string;
  availabilityZone: string;
  attachedTo: string | null;
  /** The current attachment (absent when the ENI is not attached). */
  attachment?: { attachmentId: string; instanceId: string; deviceIndex: number; status: string };
  tags: Tags;
}

export interface SubnetInfo {
  subnetId: string;
  availabilityZone: string;
  cidr: string;
}

export interface BlockDeviceRequest extends EncryptionRequest {
  deviceName: string;
  snapshotId?: string;
  sizeGiB?: number;
  volumeType?: string;
  iops?: number;
  throughput?: number;
  deleteOnTermination: boolean;
}

export interface LaunchRequest {
  /** ≤ 64 chars; derive it from (workflow, attempt) so a replayed launch finds the same instance. */
  clientToken: string;
  imageId: string;
  instanceType: string;
  market: "spot" | "on-demand";
  maxPrice?: string;
  /** An existing ENI at DeviceIndex 0 (keeps the private IP), or a subnet. */
  network: { eniId: string } | { subnetId: string; securityGroupIds: string[]; privateIp?: string };
  /** Plain text; the gateway base64-encodes it. */
  userData: string;
  blockDevices: BlockDeviceRequest[];
  /** Put on the instance and on the volumes it creates. */
  tags: Tags;
  iamInstanceProfile?: string;
  keyName?: string;
}

export interface CreateVolumeRequest extends EncryptionRequest {
  availabilityZone: string;
  sizeGiB?: number;
  snapshotId?: string;
  volumeType?: string;
  iops?: number;
  throughput?: number;
  /** Must include spotkeep:workflow and spotkeep:step (the idempotency key). */
  tags: Tags;
}

/** The spot request behind an instance: EC2's own word on an interruption (`marked-for-termination`, …). */
/** One DescribeSpotPriceHistory record: the price (USD per hour) in effect from `at`. */
export interface SpotPricePoint {
  instanceType: string;
  availabilityZone: string;
  price: number;
  at: Date;
}

export interface SpotRequestStatus {
  spotInstanceRequestId: string;
  /** open | active | closed | cancelled | failed | disabled */
  state: string;
  /** e.g. fulfilled, marked-for-termination, marked-for-stop, marked-for-hibernation, instance-terminated-by-price */
  statusCode: string;
}

/** What a DryRun says about one EC2 action the gateway uses. */
export interface PermissionCheck {
  action: string;
  /**
   * allowed: EC2 answered DryRunOperation; denied: UnauthorizedOperation; inconclusive: another
   * answer (usually NotFound for the placeholder resource: the action is granted, but conditions on
   * existing resources' tags can only be checked against real, tagged resources).
   */
  result: "allowed" | "denied" | "inconclusive";
  code: string;
  message: string;
}

/** EC2's status checks and scheduled events of one running instance (DescribeInstanceStatus). */
export interface InstanceStatusInfo {
  instanceId: string;
  /** ok | impaired | initializing | insufficient-data | not-applicable */
  system: string;
  instance: string;
  /** Epoch ms of the earliest failed reachability check, when EC2 says. */
  impairedSince: number | null;
  events: InstanceEventInfo[];
}

/** A scheduled event (instance-retirement, system-reboot, …); EC2 prefixes the description of one that is over. */
export interface InstanceEventInfo {
  eventId: string;
  code: string;
  description: string;
  /** Epoch ms. */
  notBefore: number | null;
  notAfter: number | null;
  /** False once EC2 describes it as `[Completed]` or `[Canceled]`. */
  active: boolean;
}

/** What carries a tag key in the region (see Ec2Gateway.findTagged). */
export interface TaggedResources {
  instances: InstanceInfo[];
  volumes: VolumeInfo[];
  networkInterfaces: EniInfo[];
  snapshots: SnapshotInfo[];
  images: ImageInfo[];
}

export interface Ec2Gateway {
  /** DryRun each action the gateway uses with placeholder resources and the tags spotkeep puts on what it creates. */
  checkPermissions?(): Promise<PermissionCheck[]>;
  /**
   * The account's EBS encryption by default in this region, and its default KMS key (the key ARN or
   * alias EC2 reports; alias/aws/ebs unless changed): what a volume gets when a spec asks for no
   * encryption, or for encryption without a key.
   */
  ebsDefaultEncryption?(): Promise<{ enabled: boolean; kmsKeyId: string | null }>;

  describeSubnets(subnetIds: string[]): Promise<SubnetInfo[]>;
  /** The spot request of a spot instance; null for an on-demand instance or one EC2 no longer lists. */
  spotRequestStatus(instanceId: string): Promise<SpotRequestStatus | null>;
  describeImage(imageId: string): Promise<ImageInfo | null>;
  /**
   * The architectures each named instance type supports (EC2's SupportedArchitectures, e.g.
   * ["arm64"]); a type EC2 does not offer is absent from the answer. Optional: a gateway without
   * it skips the create/update architecture check (RunInstances still refuses a mismatch).
   */
  instanceTypeArchitectures?(instanceTypes: string[]): Promise<Map<string, string[]>>;
  /**
   * Linux spot prices of one type in one AZ between `start` and `end`, oldest first, with the
   * price already in effect at `start` (as EC2 answers). Used by the savings report only.
   */
  describeSpotPriceHistory?(q: { instanceType: string; availabilityZone: string; start: Date; end: Date }): Promise<SpotPricePoint[]>;

  launchInstance(req: LaunchRequest): Promise<InstanceInfo>;
  describeInstances(instanceIds: string[]): Promise<InstanceInfo[]>;
  /** Status checks and scheduled events of those of these instances that run (unknown ids are left out), batched. */
  describeInstanceStatus(instanceIds: string[]): Promise<InstanceStatusInfo[]>;
  /** Every instance carrying all these tags (any state), paginated and batched. */
  findInstances(tags: Tags): Promise<InstanceInfo[]>;
  terminateInstance(instanceId: string): Promise<void>;

  /** Everything about one instance that import needs; null when EC2 does not know it. */
  describeInstanceDetails(instanceId: string): Promise<InstanceDetails | null>;
  /** The instance's user-data as bytes (empty when it has none). */
  instanceUserData(instanceId: string): Promise<Buffer>;
  /** Set DeleteOnTermination of EBS volumes attached to the instance, by device name. */
  setVolumesDeleteOnTermination(instanceId: string, devices: Array<{ deviceName: string; deleteOnTermination: boolean }>): Promise<void>;
  /** Set DeleteOnTermination of an ENI's attachment. */
  setEniDeleteOnTermination(eniId: string, attachmentId: string, deleteOnTermination: boolean): Promise<void>;
  /** Stop a running instance (a stopped or stopping one counts as done). */
  stopInstance(instanceId: string): Promise<void>;
  /** Start a stopped instance (a pending or running one counts as done). */
  startInstance(instanceId: string): Promise<void>;

  createVolume(req: CreateVolumeRequest): Promise<VolumeInfo>;
  describeVolume(volumeId: string): Promise<VolumeInfo | null>;
  /** Every volume carrying all these tags (any state). */
  findVolumes(tags: Tags): Promise<VolumeInfo[]>;
  attachVolume(volumeId: string, instanceId: string, device: string): Promise<void>;
  /** `force` only as a last resort (the instance's OS is not told). */
  detachVolume(volumeId: string, instanceId?: string, opts?: { force?: boolean }): Promise<void>;
  deleteVolume(volumeId: string): Promise<void>;

  createSnapshot(volumeId: string, description: string, tags: Tags): Promise<SnapshotInfo>;
  describeSnapshot(snapshotId: string): Promise<SnapshotInfo | null>;
  deleteSnapshot(snapshotId: string): Promise<void>;

  registerImage(req: {
    name: string;
    rootSnapshotId: string;
    rootDeviceName: string;
    architecture: string;
    description?: string;
    tags: Tags;
  }): Promise<string>;
  deregisterImage(imageId: string): Promise<void>;

  /**
   * Copy a completed snapshot of `sourceRegion` into this gateway's region. Safe to repeat: a copy
   * carrying `tags` (they include TAG.copyOf) that is not in error is returned instead of a new one.
   */
  copySnapshot?(req: {
    sourceRegion: string;
    sourceSnapshotId: string;
    description: string;
    encrypted: boolean;
    kmsKeyId?: string;
    tags: Tags;
  }): Promise<SnapshotInfo>;
  /**
   * Copy an available image of `sourceRegion` (and its snapshots) into this gateway's region as `name`.
   * Safe to repeat: an image of that name is returned, and EC2 keeps `clientToken` idempotent.
   */
  copyImage?(req: {
    sourceRegion: string;
    sourceImageId: string;
    name: string;
    description: string;
    encrypted: boolean;
    kmsKeyId?: string;
    clientToken: string;
    tags: Tags;
  }): Promise<string>;

  createNetworkInterface(req: {
    subnetId: string;
    securityGroupIds: string[];
    privateIp?: string;
    description: string;
    tags: Tags;
  }): Promise<EniInfo>;
  describeNetworkInterface(eniId: string): Promise<EniInfo | null>;
  /** Every ENI in `subnetId` holding one of `privateIps` (DescribeNetworkInterfaces by addresses.private-ip-address). */
  networkInterfacesAt(subnetId: string, privateIps: string[]): Promise<EniInfo[]>;
  /** Delete an ENI that is not attached; one already gone counts as deleted. */
  deleteNetworkInterface(eniId: string): Promise<void>;
  /** Attach an ENI at `deviceIndex` (≥ 1); one already attached to that instance counts as attached. */
  attachNetworkInterface(eniId: string, instanceId: string, deviceIndex: number): Promise<void>;
  /**
   * Detach the ENI from `instanceId`; not attached there (detached, or already elsewhere) counts as
   * detached. `force` only as a last resort: the instance's OS is not told.
   */
  detachNetworkInterface(eniId: string, instanceId: string, opts?: { force?: boolean }): Promise<void>;

  /** Add or overwrite tags on existing resources (instances, volumes, ENIs, snapshots, images). */
  tagResources(resourceIds: string[], tags: Tags): Promise<void>;
  /** Remove tag keys from existing resources (an import that rolls back takes its tags off again). */
  untagResources(resourceIds: string[], keys: string[]): Promise<void>;

  /**
   * Every resource of the region carrying the tag key `key` (any value), paginated: instances not
   * terminated, volumes, ENIs, and the account's own snapshots and images.
   */
  findTagged?(key: string): Promise<TaggedResources>;

  /** ModifyVolume (Elastic Volumes): the modification EC2 started. Not idempotent in EC2: callers look first. */
  modifyVolume(req: ModifyVolumeRequest): Promise<VolumeModificationInfo>;
  /** The latest modification of each of these volumes that has one (a volume never modified is left out). */
  describeVolumesModifications(volumeIds: string[]): Promise<VolumeModificationInfo[]>;
}
