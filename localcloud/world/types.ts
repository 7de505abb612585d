/** The resources localcloud models. Field names are ours; actions map them to SDK shapes. */
export type Tags = Map<string, string>;

export type InstanceStateName = "pending" | "running" | "shutting-down" | "terminated" | "stopping" | "stopped";
export const STATE_CODES: Record<InstanceStateName, number> = {
  pending: 0,
  running: 16,
  "shutting-down": 32,
  terminated: 48,
  stopping: 64,
  stopped: 80,
};

export interface Instance {
  id: string;
  reservationId: string;
  imageId: string;
  instanceType: string;
  az: string;
  subnetId: string;
  vpcId: string;
  privateIp: string;
  securityGroupIds: string[];
  state: InstanceStateName;
  stateReason?: { code: string; message: string };
  stateTransitionReason: string;
  launchTime: Date;
  clientToken?: string;
  tags: Tags;
  lifecycle: "spot" | "on-demand";
  spotRequestId?: string;
  userData: Buffer | null;
  httpTokens: "required" | "optional";
  httpEndpoint: "enabled" | "disabled";
  rootDeviceName: string;
  rootVolumeId: string;
  architecture: "x86_64" | "arm64";
  /** From the image at launch (localcloud only, not EC2): its processes get no node on PATH or in their filesystem view. */
  noNode?: boolean;
  disableApiTermination: boolean;
  hibernationConfigured: boolean;
  /** The key pair named at launch (one of the catalog's KEY_PAIRS). */
  keyName?: string;
  /** The instance profile given at launch, as DescribeInstances shows it. */
  iamInstanceProfile?: { arn: string; id: string };
  /** From the image at launch: "windows" or unset (Linux/UNIX). */
  platform?: "windows";
  /** When the usage operation was set: the first launch (a stop/start keeps it). */
  usageOperationUpdateTime: Date;
  /** IMDS view fields. */
  spotAction: { action: "terminate" | "stop" | "hibernate"; time: string } | null;
  rebalanceNoticeTime: string | null;
  /** IMDS block-device-mapping (launch-time volumes only). */
  launchBlockDevices: Record<string, string>;
  imdsEndpoint?: string;
  /** Real wall-clock time of the last pending, for IMDS pendingTime. */
  pendingTime: Date;
  booted: boolean;
  /** Increments on every stop/start cycle; timers of an older cycle do nothing. */
  epoch: number;
  terminatedAt?: number;
  /** Runtime shutdown in progress (volumes are released only after it). */
  shutdown?: Promise<void>;
  /** Status checks the control API failed (instance/maintenance.ts); absent: both pass once booted. */
  impaired?: { system: boolean; instance: boolean; since: Date };
  /** Scheduled events (instance/maintenance.ts): in DescribeInstanceStatus and IMDS events/maintenance/. */
  maintenanceEvents?: MaintenanceEvent[];
  /** Its processes are stopped by the control API (EC2 still says running). */
  hung?: boolean;
}

/** An EC2 scheduled event on one instance. */
export interface MaintenanceEvent {
  id: string;
  code: "instance-reboot" | "system-reboot" | "system-maintenance" | "instance-retirement" | "instance-stop";
  description: string;
  notBefore: Date;
  notAfter?: Date;
  state: "active" | "completed" | "canceled";
}

export type VolumeState = "creating" | "available" | "in-use" | "deleting" | "deleted" | "error";
export type AttachState = "attaching" | "attached" | "detaching";

export interface Volume {
  id: string;
  size: number;
  snapshotId: string;
  az: string;
  state: VolumeState;
  createTime: Date;
  volumeType: string;
  iops?: number;
  throughput?: number;
  encrypted: boolean;
  /** The ARN of the KMS key an encrypted volume's data key is under (as EC2 reports KmsKeyId). */
  kmsKeyId?: string;
  tags: Tags;
  attachment?: { instanceId: string; device: string; state: AttachState; attachTime: Date; deleteOnTermination: boolean };
  /** The runtime's backing store exists once this settles. */
  ready: Promise<void>;
  clientToken?: string;
  /** localcloud only: restored from a snapshot of a no-node image's root (see Image.noNode); snapshots of it keep the flag. */
  noNode?: boolean;
}

export interface Snapshot {
  id: string;
  volumeId: string;
  state: "pending" | "completed" | "error";
  progress: number;
  startTime: Date;
  volumeSize: number;
  description: string;
  ownerId: string;
  tags: Tags;
  encrypted: boolean;
  /** The ARN of the KMS key of an encrypted snapshot. */
  kmsKeyId?: string;
  /** Why a snapshot is in state error (CopySnapshot under a key EC2 could not use). */
  stateMessage?: string;
  ready: Promise<void>;
  /** localcloud only: a copy of a no-node image's root (see Image.noNode); volumes and images made from it keep the flag. */
  noNode?: boolean;
}

export interface ImageBdm {
  deviceName: string;
  snapshotId?: string;
  volumeSize?: number;
  volumeType: string;
  deleteOnTermination: boolean;
  /** From the snapshot: its encryption and key ARN. */
  encrypted?: boolean;
  kmsKeyId?: string;
}

export interface Image {
  id: string;
  name: string;
  description: string;
  state: "pending" | "available" | "failed";
  /** Why a `failed` image failed (a copy whose snapshot could not be made). */
  stateReason?: { code: string; message: string };
  ownerId: string;
  ownerAlias?: string;
  rootDeviceName: string;
  blockDeviceMappings: ImageBdm[];
  architecture: "x86_64" | "arm64";
  creationDate: Date;
  tags: Tags;
  enaSupport: boolean;
  bootMode?: string;
  imdsSupport?: string;
  virtualizationType: string;
  /**
   * "windows" for a Windows image, unset for Linux/UNIX. It is billing metadata only: instances of a
   * Windows image run on the same runtime as any other (no Windows behaviour is simulated).
   */
  platform?: "windows";
  /**
   * localcloud's own flag, not an EC2 attribute (EC2 does not say whether an image has Node.js):
   * the image has no node, like a stock Amazon Linux or Ubuntu AMI. Its instances' processes find
   * no node on their PATH (process runtime) or in their filesystem view (linux runtime). Images
   * made from such an instance (CreateImage) or from a snapshot of its root (RegisterImage) keep it.
   */
  noNode?: boolean;
}

export interface Eni {
  id: string;
  subnetId: string;
  vpcId: string;
  az: string;
  privateIp: string;
  mac: string;
  securityGroupIds: string[];
  description: string;
  status: "available" | "attaching" | "in-use" | "detaching";
  attachment?: { id: string; instanceId: string; deviceIndex: number; state: AttachState; attachTime: Date; deleteOnTermination: boolean };
  tags: Tags;
  clientToken?: string;
}

export interface SpotRequest {
  id: string;
  instanceId?: string;
  state: "open" | "active" | "closed" | "cancelled" | "failed" | "disabled";
  statusCode: string;
  statusMessage: string;
  statusTime: Date;
  type: "one-time" | "persistent";
  interruptionBehavior: "terminate" | "stop" | "hibernate";
  maxPrice: string;
  instanceType: string;
  imageId: string;
  subnetId: string;
  az: string;
  createTime: Date;
  validUntil?: Date;
  /** "Linux/UNIX" or "Windows", from the image's platform. */
  productDescription: "Linux/UNIX" | "Windows";
  tags: Tags;
}

export interface Subnet {
  id: string;
  vpcId: string;
  az: string;
  cidr: string;
  defaultForAz: boolean;
  tags: Tags;
}

export interface Vpc {
  id: string;
  cidr: string;
  isDefault: boolean;
}

export interface SecurityGroup {
  id: string;
  name: string;
  description: string;
  vpcId: string;
  tags: Tags;
}

export interface Reservation {
  id: string;
  instanceIds: string[];
  groupIds: string[];
}
