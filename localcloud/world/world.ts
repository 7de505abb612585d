/**
 * The state of the local cloud: every resource, the seed, the timers that move resources through
 * their states, and the calls into the Runtime that make those states real on this machine.
 *
 * Time: durations are model milliseconds on `clock` (a modelClock, so real = model × timeScale);
 * timestamps shown to clients (launchTime, notice times) are real wall-clock times.
 */
import type { Clock } from "../../shared/clock.js";
import type { Runtime } from "../runtime/types.js";
import { DETAIL_TYPES, type EventPublisher } from "./events.js";
import type { ImdsInstanceView } from "../imds/types.js";
import type { LatencyProfile } from "../profiles.js";
import {
  ACCOUNT_ID,
  AMAZON_OWNER_ID,
  ARCHITECTURES,
  DEFAULT_REGION,
  STOCK_IMAGE_NAME_PREFIX,
  WINDOWS_IMAGE_NAME,
  instanceType,
  regionCatalog,
  type Architecture,
  type RegionCatalog,
} from "./catalog.js";
import { ID_PREFIX, newId } from "./ids.js";
import { ipToInt, intToIp, parseCidr } from "./ip.js";
import { imdsEvent } from "./maintenance-events.js";
import type { Eni, Image, Instance, Reservation, SecurityGroup, Snapshot, SpotRequest, Subnet, Volume, Vpc } from "./types.js";
import { CallLog } from "./call-log.js";
import { KmsStore } from "../kms/keys.js";

export interface ImdsHandle {
  endpointFor(instanceId: string): Promise<string>;
  release(instanceId: string): Promise<void>;
}

export interface WorldOptions {
  /** The region this world is (default us-east-1): its AZs, ARNs, identity documents. */
  region?: string;
  /** The call log, shared by the worlds of one localcloud (default: this world's own). */
  calls?: CallLog;
  clock: Clock;
  profile: LatencyProfile;
  timeScale: number;
  runtime: Runtime;
  imds?: ImdsHandle;
  /** Where runtime failures are reported (they never break the API). */
  log?: (msg: string) => void;
}

export interface Fault {
  action: string;
  code: string;
  count: number;
  message?: string;
  /**
   * "before" (default): the call fails and changes nothing. "after": the call takes effect and
   * then answers with the error, as AWS sometimes does with a 5xx or a timeout (the caller cannot
   * tell whether it acted; a retry must not act twice).
   */
  when?: "before" | "after";
}

/** One region of the account: its catalog and every resource in it. The worlds of a localcloud share its clock, runtime and profile. */
export class World {
  readonly region: string;
  /** The region's AZs, zone ids and key pairs. */
  readonly catalog: RegionCatalog;
  /** Every region of this localcloud by name, this one included (CopySnapshot and CopyImage read their source from it). */
  regions: ReadonlyMap<string, World>;
  readonly clock: Clock;
  readonly timeScale: number;
  profile: LatencyProfile;
  readonly runtime: Runtime;
  imds?: ImdsHandle;
  /** Where EC2's events about instances go (EventBridge rules to SQS queues); none when unset. */
  events?: EventPublisher;
  readonly log: (msg: string) => void;

  instances = new Map<string, Instance>();
  reservations = new Map<string, Reservation>();
  volumes = new Map<string, Volume>();
  snapshots = new Map<string, Snapshot>();
  images = new Map<string, Image>();
  enis = new Map<string, Eni>();
  spotRequests = new Map<string, SpotRequest>();
  subnets = new Map<string, Subnet>();
  vpcs = new Map<string, Vpc>();
  securityGroups = new Map<string, SecurityGroup>();
  /** `${action}:${token}` -> what the first call was and what it produced. */
  clientTokens = new Map<string, { fingerprint: string; ids: string[]; deleted?: boolean }>();
  /** `${type}|${az}|${market}` -> false/0 = none; a number = how many more launches fit. */
  capacity = new Map<string, boolean | number>();
  /** The region's KMS keys and aliases (the local KMS and EC2's encryption read them). */
  kms: KmsStore;
  /**
   * The account's EBS encryption defaults: every new volume encrypted when `byDefault`; the key
   * ModifyEbsDefaultKmsKeyId named (as given, or the key's ARN when it named a key), null for aws/ebs.
   */
  ebsEncryption: { byDefault: boolean; defaultKey: string | null } = { byDefault: false, defaultKey: null };
  faults: Fault[] = [];
  /** Every EC2 Query API call answered (control API `GET calls`), in every region. */
  readonly calls: CallLog;
  /** The x86_64 Linux base image (node on its instances): baseImageIds.x86_64. */
  baseImageId = "";
  baseSnapshotId = "";
  /** The Linux base image of each architecture: the host's tools and node on its instances. */
  baseImageIds: Record<Architecture, string> = { x86_64: "", arm64: "" };
  /** The stock image of each architecture (Amazon Linux 2023's name, owner amazon): no node on its instances. */
  stockImageIds: Record<Architecture, string> = { x86_64: "", arm64: "" };
  /** The seeded Windows AMI (Platform windows; its instances run like any other). */
  windowsImageId = "";

  private timers = new Set<() => void>();
  private inflight = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(opts: WorldOptions) {
    this.region = opts.region ?? DEFAULT_REGION;
    this.catalog = regionCatalog(this.region);
    this.regions = new Map([[this.region, this]]);
    this.kms = new KmsStore(this.region);
    this.calls = opts.calls ?? new CallLog();
    this.clock = opts.clock;
    this.timeScale = opts.timeScale;
    this.profile = opts.profile;
    this.runtime = opts.runtime;
    this.imds = opts.imds;
    this.log = opts.log ?? ((m) => process.stderr.write(`localcloud: ${m}\n`));
  }

  // ---- scheduling -------------------------------------------------------------------------

  /** Run `fn` after `ms` model milliseconds; errors are logged, never thrown into the API. */
  after(ms: number, what: string, fn: () => void | Promise<void>): void {
    if (this.stopped) return;
    const cancel = this.clock.setTimer(ms, () => {
      this.timers.delete(cancel);
      if (this.stopped) return;
      this.track(what, Promise.resolve().then(fn));
    });
    this.timers.add(cancel);
  }

  /** Keep a background promise so stop() can wait for it; log its failure. */
  track<T>(what: string, p: Promise<T>): Promise<T | undefined> {
    const guarded = p.catch((err: unknown) => {
      if (!this.stopped) this.log(`${what}: ${(err as Error)?.message ?? String(err)}`);
      return undefined;
    });
    this.inflight.add(guarded);
    void guarded.finally(() => this.inflight.delete(guarded));
    return guarded;
  }

  /**
   * Real-time SIGTERM->SIGKILL grace for a shutdown that the profile gives `modelMs`: at least 1 s
   * so even the instant profile lets a process run its TERM handler (the state change waits for
   * the runtime), at most 30 s.
   */
  graceMs(modelMs: number): number {
    return Math.min(30_000, Math.max(1_000, this.real(modelMs)));
  }

  /** Model ms -> real ms (for runtime grace periods, which are real time). */
  real(ms: number): number {
    return ms * this.timeScale;
  }

  /** Cancel every timer and wait (bounded) for in-flight runtime work. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    const pending = [...this.inflight];
    if (pending.length) await Promise.race([Promise.allSettled(pending), new Promise((r) => setTimeout(r, 5000).unref())]);
  }

  /** Cancel timers, forget everything and seed again (POST /reset). */
  async reset(): Promise<void> {
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    const running = [...this.instances.values()].filter((i) => i.state !== "terminated");
    // Work already in flight (a boot waiting on a volume) checks state/epoch and must find it over.
    for (const i of this.instances.values()) {
      i.state = "terminated";
      i.epoch += 1;
    }
    await Promise.allSettled(running.map((i) => this.runtime.shutdown(i.id, 0)));
    if (this.imds) await Promise.allSettled([...this.instances.keys()].map((id) => this.imds!.release(id)));
    await Promise.allSettled([...this.volumes.keys()].map((id) => this.runtime.deleteVolume(id)));
    await Promise.allSettled([...this.snapshots.keys()].map((id) => this.runtime.deleteSnapshot(id)));
    for (const m of [
      this.instances,
      this.reservations,
      this.volumes,
      this.snapshots,
      this.images,
      this.enis,
      this.spotRequests,
      this.subnets,
      this.vpcs,
      this.securityGroups,
      this.clientTokens,
      this.capacity,
    ] as Map<string, unknown>[])
      m.clear();
    this.faults = [];
    this.kms = new KmsStore(this.region);
    this.ebsEncryption = { byDefault: false, defaultKey: null };
    await this.seed();
  }

  // ---- seed -------------------------------------------------------------------------------

  /** The region's AZs a/b/c, default VPC 172.31.0.0/16 (as in every AWS region) with a /20 per AZ, default SG, base AMIs. */
  async seed(): Promise<void> {
    const vpc: Vpc = { id: newId(ID_PREFIX.vpc), cidr: "172.31.0.0/16", isDefault: true };
    this.vpcs.set(vpc.id, vpc);
    this.catalog.azs.forEach((az, i) => {
      const s: Subnet = {
        id: newId(ID_PREFIX.subnet),
        vpcId: vpc.id,
        az,
        cidr: `172.31.${i * 16}.0/20`,
        defaultForAz: true,
        tags: new Map(),
      };
      this.subnets.set(s.id, s);
    });
    const sg: SecurityGroup = {
      id: newId(ID_PREFIX.securityGroup),
      name: "default",
      description: "default VPC security group",
      vpcId: vpc.id,
      tags: new Map(),
    };
    this.securityGroups.set(sg.id, sg);

    // The seed AMIs' root snapshots must exist in the runtime so launches can restore from them:
    // one for the base images (node on the instance), one for the stock images (no node).
    const now = new Date();
    const seedSnapshot = async (description: string, noNode: boolean): Promise<string> => {
      const seedVol = newId(ID_PREFIX.volume);
      const snapId = newId(ID_PREFIX.snapshot);
      await this.runtime.createVolume({ volumeId: seedVol, sizeGiB: 8 });
      await this.runtime.createSnapshot(snapId, seedVol);
      await this.runtime.deleteVolume(seedVol);
      this.snapshots.set(snapId, {
        id: snapId,
        volumeId: "vol-ffffffff",
        state: "completed",
        progress: 100,
        startTime: now,
        volumeSize: 8,
        description,
        ownerId: AMAZON_OWNER_ID,
        tags: new Map(),
        encrypted: false,
        ready: Promise.resolve(),
        noNode: noNode || undefined,
      });
      return snapId;
    };
    const snapId = await seedSnapshot("spotkeep localcloud base image root", false);
    const stockSnapId = await seedSnapshot("spotkeep localcloud stock image root (no Node.js)", true);
    const linuxImage = (name: string, description: string, architecture: Image["architecture"], snapshotId: string, noNode: boolean) => {
      const image: Image = {
        id: newId(ID_PREFIX.image),
        name,
        description,
        state: "available",
        ownerId: AMAZON_OWNER_ID,
        ownerAlias: "amazon",
        rootDeviceName: "/dev/xvda",
        blockDeviceMappings: [{ deviceName: "/dev/xvda", snapshotId, volumeSize: 8, volumeType: "gp3", deleteOnTermination: true }],
        architecture,
        creationDate: now,
        // For humans only: the flag decides, the tag just shows it in DescribeImages.
        tags: noNode ? new Map([["localcloud:node", "none"]]) : new Map(),
        enaSupport: true,
        bootMode: "uefi-preferred",
        virtualizationType: "hvm",
        noNode: noNode || undefined,
      };
      this.images.set(image.id, image);
      return image.id;
    };
    for (const arch of ARCHITECTURES) {
      this.baseImageIds[arch] = linuxImage(
        `localcloud-base-${arch}`,
        "localcloud base image (bash, coreutils and node of the host)",
        arch,
        snapId,
        false,
      );
      this.stockImageIds[arch] = linuxImage(
        `${STOCK_IMAGE_NAME_PREFIX}${arch}`,
        "Amazon Linux 2023 AMI 2023.6.20241212.0 (localcloud: stock image, the host's shell tools and no Node.js)",
        arch,
        stockSnapId,
        true,
      );
    }
    this.baseImageId = this.baseImageIds.x86_64;
    this.baseSnapshotId = snapId;
    // A Windows AMI, so callers can see how EC2 reports one (Platform, PlatformDetails, UsageOperation).
    // Only the metadata is Windows: its root is the base snapshot and its instances run on the runtime
    // like any other (no Windows behaviour is simulated).
    const windows: Image = {
      id: newId(ID_PREFIX.image),
      name: WINDOWS_IMAGE_NAME,
      description: "Microsoft Windows Server 2022 Full Locale English AMI provided by Amazon (localcloud: metadata only)",
      state: "available",
      ownerId: AMAZON_OWNER_ID,
      ownerAlias: "amazon",
      rootDeviceName: "/dev/sda1",
      blockDeviceMappings: [{ deviceName: "/dev/sda1", snapshotId: snapId, volumeSize: 30, volumeType: "gp2", deleteOnTermination: true }],
      architecture: "x86_64",
      creationDate: now,
      tags: new Map(),
      enaSupport: true,
      bootMode: "uefi-preferred",
      virtualizationType: "hvm",
      platform: "windows",
    };
    this.images.set(windows.id, windows);
    this.windowsImageId = windows.id;
  }

  // ---- lookups used by several actions ----------------------------------------------------

  defaultVpc(): Vpc {
    return [...this.vpcs.values()].find((v) => v.isDefault)!;
  }

  defaultSubnet(az?: string): Subnet | undefined {
    return [...this.subnets.values()].find((s) => s.defaultForAz && (az === undefined || s.az === az));
  }

  defaultSecurityGroup(vpcId: string): SecurityGroup | undefined {
    return [...this.securityGroups.values()].find((g) => g.vpcId === vpcId && g.name === "default");
  }

  /** Every private IP held by an ENI in the subnet (ENIs keep their IP until deleted). */
  usedIps(subnetId: string): Set<string> {
    const used = new Set<string>();
    for (const e of this.enis.values()) if (e.subnetId === subnetId) used.add(e.privateIp);
    return used;
  }

  /** First free address after the 4 reserved at the start of the subnet; null when full. */
  allocateIp(subnet: Subnet, taken: Set<string> = new Set()): string | null {
    const { base, size } = parseCidr(subnet.cidr);
    const used = this.usedIps(subnet.id);
    for (let i = 4; i < size - 1; i++) {
      const ip = intToIp(base + i);
      if (!used.has(ip) && !taken.has(ip)) return ip;
    }
    return null;
  }

  /** Why `ip` can't be a private IP in `subnet` ("" when it can). */
  ipProblem(subnet: Subnet, ip: string): string {
    const n = ipToInt(ip);
    if (n === null) return `${ip} is not a valid IPv4 address`;
    const { base, size } = parseCidr(subnet.cidr);
    if (n < base || n >= base + size) return `Address ${ip} does not fall within the subnet's address range (${subnet.cidr})`;
    const off = n - base;
    if (off < 4 || off === size - 1) return `Address ${ip} is reserved by AWS in subnet ${subnet.id}`;
    return "";
  }

  availableIpCount(subnet: Subnet): number {
    const { size } = parseCidr(subnet.cidr);
    return size - 5 - this.usedIps(subnet.id).size;
  }

  /** Consume launch capacity for (type, az, market); false when there is none. */
  takeCapacity(type: string, az: string, market: "spot" | "on-demand", count: number): number {
    const v = this.capacity.get(`${type}|${az}|${market}`);
    if (v === undefined || v === true) return count;
    if (v === false) return 0;
    const n = Math.min(v, count);
    return n;
  }

  useCapacity(type: string, az: string, market: "spot" | "on-demand", count: number): void {
    const key = `${type}|${az}|${market}`;
    const v = this.capacity.get(key);
    if (typeof v === "number") this.capacity.set(key, Math.max(0, v - count));
  }

  /** If a `failNext` fault matches the action, consume one and return it. */
  takeFault(action: string): Fault | null {
    const f = this.faults.find((x) => x.action === action && x.count > 0);
    if (!f) return null;
    f.count -= 1;
    if (f.count <= 0) this.faults = this.faults.filter((x) => x !== f);
    return f;
  }

  // ---- IMDS -------------------------------------------------------------------------------

  /** The instance whose primary private IP this is (linux runtime IMDS tells callers apart by it). */
  instanceIdByIp(ip: string): string | null {
    for (const i of this.instances.values()) if (i.privateIp === ip && i.state !== "terminated") return i.id;
    // A secondary ENI's address answers for the instance it is attached to.
    for (const e of this.enis.values()) if (e.privateIp === ip && e.attachment?.state === "attached") return e.attachment.instanceId;
    return null;
  }

  /** The ImdsLookup: the instance as IMDS shows it right now. */
  imdsView(instanceId: string): ImdsInstanceView | null {
    const inst = this.instances.get(instanceId);
    if (!inst) return null;
    const enis = [...this.enis.values()]
      .filter((e) => e.attachment?.instanceId === inst.id && e.attachment.state === "attached")
      .sort((a, b) => a.attachment!.deviceIndex - b.attachment!.deviceIndex);
    const primary = enis[0];
    return {
      instanceId: inst.id,
      instanceType: inst.instanceType,
      imageId: inst.imageId,
      region: this.region,
      availabilityZone: inst.az,
      availabilityZoneId: this.catalog.azIds[inst.az],
      accountId: ACCOUNT_ID,
      architecture: inst.architecture,
      pendingTime: inst.pendingTime.toISOString(),
      privateIp: inst.privateIp,
      mac: primary?.mac ?? "",
      enis: enis.map((e) => {
        const subnet = this.subnets.get(e.subnetId);
        const vpc = this.vpcs.get(e.vpcId);
        return {
          mac: e.mac,
          eniId: e.id,
          deviceIndex: e.attachment!.deviceIndex,
          privateIps: [e.privateIp],
          subnetId: e.subnetId,
          subnetCidr: subnet?.cidr ?? "",
          vpcId: e.vpcId,
          vpcCidr: vpc?.cidr ?? "",
          securityGroupIds: e.securityGroupIds,
        };
      }),
      blockDeviceMapping: inst.launchBlockDevices,
      instanceLifecycle: inst.lifecycle,
      userData: inst.userData,
      httpTokens: inst.httpTokens,
      spotInstanceAction: inst.spotAction,
      rebalanceNoticeTime: inst.rebalanceNoticeTime,
      scheduledEvents: (inst.maintenanceEvents ?? []).map(imdsEvent),
      serving: inst.state === "pending" || inst.state === "running" || inst.state === "stopping" || inst.state === "shutting-down",
    };
  }

  // ---- instance transitions ---------------------------------------------------------------

  /** Publish EC2's state-change event for the instance's current state. */
  stateChanged(inst: Instance): void {
    this.events?.publish(DETAIL_TYPES.stateChange, inst.id, inst.az, { state: inst.state });
  }

  /** pending -> running after the profile delay, then boot (runtime) after the boot delay. */
  schedulePendingToRunning(inst: Instance, extraDelay = 0): void {
    const epoch = inst.epoch;
    this.after(extraDelay + this.profile.pendingToRunning, `starting ${inst.id}`, async () => {
      if (inst.state !== "pending" || inst.epoch !== epoch) return;
      inst.state = "running";
      inst.stateReason = undefined;
      inst.stateTransitionReason = "";
      this.stateChanged(inst);
      if (this.imds && !inst.imdsEndpoint) inst.imdsEndpoint = await this.imds.endpointFor(inst.id);
      this.after(this.profile.bootToUserData, `booting ${inst.id}`, () => this.boot(inst, epoch));
    });
  }

  private async boot(inst: Instance, epoch: number): Promise<void> {
    if (inst.state !== "running" || inst.epoch !== epoch) return;
    const root = this.volumes.get(inst.rootVolumeId);
    if (root) await root.ready;
    // Volumes attached at launch (other than root) become visible before user-data runs.
    for (const v of this.volumes.values()) {
      if (v.attachment?.instanceId === inst.id && v.id !== inst.rootVolumeId && v.attachment.state === "attached") {
        await v.ready;
        await this.runtime.attachVolume(inst.id, v.id, v.attachment.device);
      }
    }
    if (inst.state !== "running" || inst.epoch !== epoch) return;
    const subnet = this.subnets.get(inst.subnetId);
    await this.runtime.boot(
      {
        instanceId: inst.id,
        dir: "",
        userData: inst.userData ?? Buffer.alloc(0),
        privateIp: inst.privateIp,
        subnetCidr: subnet?.cidr ?? "",
        imdsEndpoint: inst.imdsEndpoint ?? "",
        env: {
          SPOTKEEP_TIME_SCALE: String(this.timeScale),
          // What `uname -m` would say on EC2: an arm64 instance runs the host's (x86_64) binaries here.
          SPOTKEEP_LOCALCLOUD_ARCH: inst.architecture === "arm64" ? "aarch64" : "x86_64",
        },
        noNode: inst.noNode,
      },
      inst.rootVolumeId,
    );
    inst.booted = true;
  }

  /**
   * Begin termination: shutting-down now, terminated after the profile delay, then the
   * DeleteOnTermination rules for volumes and ENIs (kept ENIs come free after eniFree).
   */
  beginTerminate(inst: Instance, reason: { code: string; message: string }): void {
    if (inst.state === "shutting-down" || inst.state === "terminated") return;
    const wasRunning = inst.state !== "stopped";
    inst.state = "shutting-down";
    inst.epoch += 1;
    this.stateChanged(inst);
    inst.stateReason = reason;
    inst.stateTransitionReason = `${reason.message.replace(/^[^:]*: /, "")} (${new Date()
      .toISOString()
      .replace(/\.\d+Z$/, " GMT")
      .replace("T", " ")})`;
    const grace = this.graceMs(this.profile.shuttingDownToTerminated);
    inst.shutdown = wasRunning
      ? (this.track(`shutting down ${inst.id}`, this.runtime.shutdown(inst.id, grace)) as Promise<void>)
      : Promise.resolve();
    this.markSpotRequestInterrupted(inst, reason.code);
    this.after(this.profile.shuttingDownToTerminated, `terminating ${inst.id}`, async () => {
      await inst.shutdown;
      inst.state = "terminated";
      inst.terminatedAt = this.clock.now();
      this.stateChanged(inst);
      inst.booted = false;
      if (this.imds) await this.imds.release(inst.id);
      this.releaseVolumes(inst);
      this.releaseEnis(inst);
      this.after(this.profile.terminatedVisible, `forgetting ${inst.id}`, () => {
        this.instances.delete(inst.id);
      });
    });
  }

  private releaseVolumes(inst: Instance): void {
    for (const v of this.volumes.values()) {
      const a = v.attachment;
      if (!a || a.instanceId !== inst.id) continue;
      if (a.deleteOnTermination) {
        v.state = "deleting";
        v.attachment = undefined;
        this.track(
          `deleting ${v.id}`,
          this.runtime.detachVolume(inst.id, v.id, a.device).then(() => this.runtime.deleteVolume(v.id)),
        );
        this.after(this.profile.deleteVolume, `deleting ${v.id}`, () => {
          this.volumes.delete(v.id);
        });
      } else {
        v.attachment = undefined;
        v.state = "available";
        this.track(`detaching ${v.id}`, this.runtime.detachVolume(inst.id, v.id, a.device));
      }
    }
  }

  private releaseEnis(inst: Instance): void {
    for (const e of this.enis.values()) {
      const a = e.attachment;
      if (!a || a.instanceId !== inst.id) continue;
      if (a.deviceIndex > 0) {
        const subnetCidr = this.subnets.get(e.subnetId)?.cidr ?? "";
        const eni = { eniId: e.id, mac: e.mac, deviceIndex: a.deviceIndex, privateIp: e.privateIp, subnetCidr };
        this.track(`unplugging ${e.id}`, this.runtime.detachEni(inst.id, eni));
      }
      if (a.deleteOnTermination) {
        this.enis.delete(e.id);
      } else {
        // A kept ENI lingers in-use/detaching for eniFree: reuse before that is InvalidNetworkInterface.InUse.
        e.status = "detaching";
        a.state = "detaching";
        this.after(this.profile.eniFree, `freeing ${e.id}`, () => {
          if (e.attachment === a) {
            e.attachment = undefined;
            e.status = "available";
          }
        });
      }
    }
  }

  /** Stop (or hibernate): stopping now, stopped after the delay; volumes and ENIs stay. */
  beginStop(inst: Instance, reason: { code: string; message: string }): void {
    if (inst.state !== "running" && inst.state !== "pending") return;
    inst.state = "stopping";
    inst.epoch += 1;
    this.stateChanged(inst);
    inst.stateReason = reason;
    inst.stateTransitionReason = `${reason.message.replace(/^[^:]*: /, "")} (${new Date().toISOString()})`;
    const shutdown = this.track(`stopping ${inst.id}`, this.runtime.shutdown(inst.id, this.graceMs(this.profile.stoppingToStopped)));
    const epoch = inst.epoch;
    this.after(this.profile.stoppingToStopped, `stopping ${inst.id}`, async () => {
      await shutdown;
      if (inst.state !== "stopping" || inst.epoch !== epoch) return;
      inst.state = "stopped";
      inst.booted = false;
      this.stateChanged(inst);
      inst.spotAction = null;
      if (this.imds) {
        await this.imds.release(inst.id);
        inst.imdsEndpoint = undefined;
      }
    });
  }

  private markSpotRequestInterrupted(inst: Instance, reasonCode: string): void {
    const req = inst.spotRequestId ? this.spotRequests.get(inst.spotRequestId) : undefined;
    if (!req) return;
    const byUs = reasonCode.startsWith("Server.");
    req.statusTime = new Date();
    if (byUs) {
      req.statusCode = "instance-terminated-no-capacity";
      req.statusMessage = "Spot Instance terminated due to no available capacity.";
      // A persistent request re-opens (EC2 would launch again when capacity returns; localcloud doesn't).
      req.state = req.type === "persistent" ? "open" : "closed";
    } else {
      req.statusCode = "instance-terminated-by-user";
      req.statusMessage = "Spot Instance terminated due to user-initiated termination.";
      req.state = "closed";
    }
  }

  /** A fresh instance record; callers fill in the rest. */
  wallNow(): Date {
    return new Date();
  }

  /** The key pair of this region named `name`. */
  keyPair(name: string) {
    return this.catalog.keyPairs.find((k) => k.name === name);
  }

  /** Resolve an instance type; the catalog is fixed. */
  instanceType(name: string) {
    return instanceType(name);
  }
}
