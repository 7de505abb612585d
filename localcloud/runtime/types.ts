/**
 * How a localcloud instance runs. The EC2 model (localcloud/ec2) owns state and timing; a Runtime
 * only makes the model's decisions real on this machine. Two implementations:
 *  - `process` (no root): an instance is a folder and a bash process group; volumes are folders
 *    exposed as links under the instance's device folder.
 *  - `linux` (root): an instance is a network + mount namespace with its private IP on a project
 *    bridge; volumes are sparse files on loop devices.
 *
 * Contract for implementations (test/localcloud/runtime-contract.ts runs the same suite against both):
 *  - every method is idempotent: calling it twice for the same ids has the effect of once;
 *  - methods never throw for "already gone" (delete of a missing volume is a no-op);
 *  - `cleanup()` removes everything the runtime ever created, including leftovers a crashed
 *    earlier run left in the same state dir (it is called at start and at stop).
 */
export interface RuntimeInstance {
  instanceId: string;
  /** The instance's folder under the state dir (created by the runtime). */
  dir: string;
  /** Decoded user-data (may be empty: then nothing runs). */
  userData: Buffer;
  privateIp: string;
  /** Subnet CIDR and gateway, for runtimes that give the instance a real address. */
  subnetCidr: string;
  /** Origin of this instance's IMDS (http://host:port, no path); set as AWS_EC2_METADATA_SERVICE_ENDPOINT. */
  imdsEndpoint: string;
  /** Extra environment for user-data (e.g. SPOTKEEP_TIME_SCALE). */
  env: Record<string, string>;
  /**
   * The instance's image has no Node.js (a stock image): no node reachable by its processes. The
   * process runtime gives them a PATH without node, npm, npx, nodejs or corepack; the linux runtime
   * also covers every such binary of the host's PATH in the instance's filesystem view.
   */
  noNode?: boolean;
}

export interface RuntimeVolume {
  volumeId: string;
  sizeGiB: number;
}

/** A secondary network interface as the instance's OS sees it: a link with the ENI's MAC. */
export interface RuntimeEni {
  eniId: string;
  mac: string;
  deviceIndex: number;
  privateIp: string;
  subnetCidr: string;
}

export interface Runtime {
  readonly kind: "process" | "linux";
  /** Remove leftovers from earlier runs; prepare shared resources (bridge, folders). */
  init(): Promise<void>;
  /** Create the backing store of a new, blank volume (or one restored from a snapshot). */
  createVolume(vol: RuntimeVolume, fromSnapshotId?: string): Promise<void>;
  deleteVolume(volumeId: string): Promise<void>;
  /**
   * Grow a volume's backing store to `sizeGiB` (never shrinks) so an instance it is attached to sees
   * the bigger device (ModifyVolume). Optional: a runtime without it (process: volumes are folders)
   * records the size in the EC2 model only.
   */
  resizeVolume?(volumeId: string, sizeGiB: number): Promise<void>;
  /** Copy a volume's content, point in time, into snapshot storage. */
  createSnapshot(snapshotId: string, volumeId: string): Promise<void>;
  deleteSnapshot(snapshotId: string): Promise<void>;
  /** Expose a volume to an instance as `nvme-Amazon_Elastic_Block_Store_vol<id without dash>` and under `deviceName`. */
  attachVolume(instanceId: string, volumeId: string, deviceName: string): Promise<void>;
  detachVolume(instanceId: string, volumeId: string, deviceName: string): Promise<void>;
  /**
   * Hot-plug an ENI into the instance at `deviceIndex` (≥ 1) as the link `eth<deviceIndex>` with the
   * ENI's MAC, down and unconfigured (the instance's OS brings it up and adds the address). May be
   * called before boot. Detach removes the link, and with it any address the OS put on it.
   */
  attachEni(instanceId: string, eni: RuntimeEni): Promise<void>;
  detachEni(instanceId: string, eni: RuntimeEni): Promise<void>;
  /** The instance booted: give it its network and run its user-data (as root inside it for linux). */
  boot(inst: RuntimeInstance, rootVolumeId: string): Promise<void>;
  /** SIGTERM the instance's process group, then SIGKILL after `graceMs`; tear down its network. */
  shutdown(instanceId: string, graceMs: number): Promise<void>;
  /**
   * Stop (SIGSTOP) or continue (SIGCONT) every process of a booted instance, as a hung agent and
   * workload look from outside; false when nothing runs. Optional: a runtime without it refuses.
   */
  pauseInstance?(instanceId: string): Promise<boolean>;
  resumeInstance?(instanceId: string): Promise<boolean>;
  /** Where the instance's stdout/stderr go. */
  logPath(instanceId: string): string;
  /** Remove everything this runtime created. */
  cleanup(): Promise<void>;
}
