/**
 * Latency profiles: how long each localcloud transition takes, in MODEL milliseconds. The world
 * runs on a modelClock, so real time = these × timeScale. The demo and the coordinator compute the
 * critical-path lower bound of a replacement from this table, so keep the names stable.
 */
export interface LatencyProfile {
  name: "instant" | "realistic";
  /** How long the RunInstances call itself takes to answer. */
  runInstancesCall: number;
  pendingToRunning: number;
  /** running -> user-data starts (runtime.boot). */
  bootToUserData: number;
  shuttingDownToTerminated: number;
  /** After `terminated`, a kept ENI stays in-use/detaching this long before it is `available`. */
  eniFree: number;
  stoppingToStopped: number;
  attachVolume: number;
  detachVolume: number;
  createVolume: number;
  deleteVolume: number;
  /** Snapshot pending -> completed = snapshotBase + snapshotPerGiB × volume size. */
  snapshotBase: number;
  snapshotPerGiB: number;
  /** A snapshot copy into another region takes this much longer per GiB (default 0). */
  snapshotCopyCrossRegionPerGiB?: number;
  /** Image pending -> available once its snapshots are complete. */
  image: number;
  attachEni: number;
  detachEni: number;
  /** How long a terminated instance stays visible in DescribeInstances. */
  terminatedVisible: number;
  /** ModifyVolume: `modifying` → `optimizing` (the new size is usable from there). */
  modifyVolume?: number;
  /** ModifyVolume: `optimizing` → `completed`. */
  optimizeVolume?: number;
}

export const PROFILES: Readonly<Record<LatencyProfile["name"], Readonly<LatencyProfile>>> = {
  // Every transition still goes through its intermediate state (a timer), just quickly.
  instant: {
    name: "instant",
    runInstancesCall: 0,
    pendingToRunning: 5,
    bootToUserData: 2,
    shuttingDownToTerminated: 10,
    eniFree: 5,
    stoppingToStopped: 8,
    attachVolume: 3,
    detachVolume: 3,
    createVolume: 3,
    deleteVolume: 2,
    snapshotBase: 5,
    snapshotPerGiB: 0,
    snapshotCopyCrossRegionPerGiB: 0,
    image: 5,
    attachEni: 3,
    detachEni: 3,
    terminatedVisible: 3_600_000,
    modifyVolume: 5,
    optimizeVolume: 10,
  },
  // Published figures; stopping, ENI attach/detach and volume delete are our estimates.
  realistic: {
    name: "realistic",
    runInstancesCall: 1_500,
    pendingToRunning: 15_000,
    bootToUserData: 10_000,
    shuttingDownToTerminated: 30_000,
    eniFree: 2_000,
    stoppingToStopped: 20_000,
    attachVolume: 3_000,
    detachVolume: 5_000,
    createVolume: 5_000,
    deleteVolume: 2_000,
    snapshotBase: 15_000,
    snapshotPerGiB: 100,
    // Our estimate: a copy between regions moves every block over the network between them.
    snapshotCopyCrossRegionPerGiB: 1_000,
    image: 10_000,
    attachEni: 2_000,
    detachEni: 3_000,
    terminatedVisible: 3_600_000,
    // Our estimates: EC2 gives no figures; a size change is usable within minutes, optimizing takes longer.
    modifyVolume: 30_000,
    optimizeVolume: 300_000,
  },
};

/**
 * Model-time lower bound of a make-before-break cutover (attach: secondary) once the old instance
 * is quiesced: the stable ENI and the volumes detach (in parallel), then attach to the replacement
 * that already booted. Quiesce and mount come on top.
 */
export function cutoverCriticalPath(p: LatencyProfile): number {
  return Math.max(p.detachEni, p.detachVolume) + Math.max(p.attachEni, p.attachVolume);
}

/**
 * Model-time lower bound of a reattach + same-ENI replacement once the old instance is told to go:
 * terminate, ENI free, launch call, boot, attach. The real path adds quiesce and mount on top.
 */
export function replacementCriticalPath(p: LatencyProfile): number {
  return p.shuttingDownToTerminated + p.eniFree + p.runInstancesCall + p.pendingToRunning + Math.max(p.bootToUserData, p.attachVolume);
}
