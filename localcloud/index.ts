/**
 * localcloud's programmatic entry point: `startLocalCloud()` gives an EC2 endpoint for the
 * unmodified SDK (`new EC2Client({ endpoint, region: "us-east-1", credentials: {...} })`), the
 * control API, and a world per region you can inspect in white-box tests. Every region it serves
 * answers on the one endpoint; the SDK's `region` (its signature's credential scope) picks one.
 */
import { mkdtemp, mkdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { type Clock, modelClock, scaledClock } from "../shared/clock.js";
import type { Runtime } from "./runtime/types.js";
import { PROFILES, type LatencyProfile } from "./profiles.js";
import { Throttle } from "./throttle.js";
import { World } from "./world/world.js";
import { createNullRuntime } from "./ec2/null-runtime.js";
import { startHttpServer } from "./server.js";
import { startImds } from "./imds/server.js";
import { loadOrCreateSigner } from "./imds/identity.js";
import { enforcerFor, loadPolicyFile, shareEnforcer } from "./iam/enforcer.js";
import { parsePolicy } from "./iam/policy.js";
import { SqsService } from "./sqs/queues.js";
import { Elbv2Service } from "./elbv2/targets.js";
import { EventBus } from "./events/bus.js";
import { ALL_DETAIL_TYPES } from "./world/events.js";
import { CallLog } from "./world/call-log.js";
import { checkRegions, Regions, type RegionServices } from "./regions.js";

export { cutoverCriticalPath, PROFILES, replacementCriticalPath, type LatencyProfile } from "./profiles.js";

export interface LocalCloudOptions {
  /**
   * The regions served, each its own world (default ["us-east-1"]); the first is the home region
   * (`world`, the control API's default). The linux runtime takes one region only.
   */
  regions?: string[];
  /** 0 = ephemeral; default 4566. */
  port?: number;
  host?: string;
  /** Default: a new temp dir, removed by stop() (a given dir is kept). */
  stateDir?: string;
  profile?: "instant" | "realistic";
  /** real = model × timeScale (0.1 runs ten times faster); default 1. */
  timeScale?: number;
  /** none: no processes (pure API tests). Default process. */
  runtime?: "process" | "linux" | "none";
  /** Default: on for realistic, off for instant. */
  throttle?: boolean;
  /** Inject a clock (e.g. FakeClock) instead of modelClock(timeScale). */
  clock?: Clock;
  /** Where runtime/internal errors are reported (default stderr). */
  log?: (msg: string) => void;
  /**
   * Enforce this identity-based IAM policy (a file path, or the parsed document) on every EC2
   * request: a request it does not allow gets 403 UnauthorizedOperation. Default: not enforced
   * (also set and cleared through the control API, /_localcloud/v1/iam/policy).
   */
  iamPolicy?: string | object;
  /**
   * Create this SQS queue at start and an EventBridge-style rule (`spotkeep-interruptions`) that
   * sends every EC2 instance event (spot interruption warning, rebalance recommendation, state
   * change) to it.
   */
  eventsQueue?: string;
}

export interface LocalCloud {
  /** http://HOST:PORT */
  endpoint: string;
  /** endpoint + /_localcloud/v1 */
  controlUrl: string;
  /** The home region (the first of `regions`). */
  region: string;
  /** Every region served, the home region first. */
  regions: readonly string[];
  stateDir: string;
  profile: LatencyProfile;
  timeScale: number;
  /** The home region's world. */
  world: World;
  /** Every region's world by region name. */
  worlds: ReadonlyMap<string, World>;
  /** The world of a served region; throws RangeError naming any other. */
  worldFor(region: string): World;
  throttle: Throttle;
  runtime: Runtime;
  /** The identity certificate (PEM) instance identity documents are signed with. */
  certificatePem: string;
  /** The home region's SQS queues (the JSON protocol endpoint is `endpoint` too) and the event rules that feed them. */
  sqs: SqsService;
  events: EventBus;
  /** The home region's ELBv2 target groups (the Query endpoint is `endpoint` too, told apart by the request's signing service). */
  elbv2: Elbv2Service;
  /** Each region's world, queues, event rules and target groups. */
  services: Regions;
  /** The URL of `eventsQueue`, when one was asked for. */
  eventsQueueUrl: string | null;
  stop(): Promise<void>;
}

export class RuntimeUnavailableError extends Error {
  override name = "RuntimeUnavailableError";
}

async function loadRuntime(kind: "process" | "linux" | "none", stateDir: string, clock: Clock): Promise<Runtime> {
  if (kind === "none") return createNullRuntime();
  // Loaded lazily so an API-only localcloud never loads runtime code. The paths are literals so
  // that the bundler (npm run build) sees them and ships the runtimes as lazy chunks.
  const modPath = kind === "process" ? "./runtime/process.js" : "./runtime/linux/index.js";
  let mod: Record<string, unknown>;
  try {
    mod = (kind === "process" ? await import("./runtime/process.js") : await import("./runtime/linux/index.js")) as Record<string, unknown>;
  } catch (err) {
    throw new RuntimeUnavailableError(`the ${kind} runtime is not available (${modPath}): ${(err as Error).message}`, { cause: err });
  }
  const factory = (kind === "process" ? mod.createProcessRuntime : mod.createLinuxRuntime) as
    | ((o: { stateDir: string; clock?: Clock }) => Runtime)
    | undefined;
  if (typeof factory !== "function")
    throw new RuntimeUnavailableError(
      `the ${kind} runtime module does not export ${kind === "process" ? "createProcessRuntime" : "createLinuxRuntime"}`,
    );
  if (kind === "linux") {
    const why =
      typeof mod.linuxRuntimeUnavailable === "function"
        ? (mod.linuxRuntimeUnavailable as () => string | null)()
        : process.getuid?.() !== 0
          ? "the linux runtime needs root"
          : null;
    if (why) throw new RuntimeUnavailableError(why);
  }
  return factory({ stateDir, clock });
}

export async function startLocalCloud(opts: LocalCloudOptions = {}): Promise<LocalCloud> {
  const profileName = opts.profile ?? "instant";
  const profile = PROFILES[profileName];
  if (!profile) throw new RangeError(`unknown localcloud profile ${JSON.stringify(profileName)} (instant or realistic)`);
  const timeScale = opts.timeScale ?? 1;
  if (!(timeScale > 0) || !Number.isFinite(timeScale)) throw new RangeError(`time scale must be a positive number, got ${timeScale}`);
  const host = opts.host ?? "127.0.0.1";
  const regionNames = checkRegions(opts.regions);
  // Every region's default VPC is 172.31.0.0/16, as on AWS: on the linux runtime's one host bridge two would collide.
  if ((opts.runtime ?? "process") === "linux" && regionNames.length > 1)
    throw new RangeError(
      `regions: the linux runtime serves one region (got ${regionNames.join(", ")}): every region's default VPC is 172.31.0.0/16 ` +
        "and the runtime puts every instance on one host bridge; use the process or none runtime for several regions",
    );
  // A bad policy stops the start before anything is created.
  const iamPolicy =
    opts.iamPolicy === undefined
      ? null
      : typeof opts.iamPolicy === "string"
        ? await loadPolicyFile(opts.iamPolicy)
        : parsePolicy(opts.iamPolicy);
  const stateDir = opts.stateDir ?? (await mkdtemp(path.join(os.tmpdir(), "localcloud-")));
  await mkdir(stateDir, { recursive: true });
  const clock = opts.clock ?? modelClock(timeScale);
  const runtime = await loadRuntime(opts.runtime ?? "process", stateDir, clock);
  await runtime.init();
  const calls = new CallLog();
  const worlds = new Map(
    regionNames.map((region) => [region, new World({ region, calls, clock, profile, timeScale, runtime, log: opts.log })]),
  );
  const world = worlds.get(regionNames[0]!)!;
  for (const w of worlds.values()) {
    w.regions = worlds;
    if (w !== world) shareEnforcer(w, world);
  }
  enforcerFor(world).policy = iamPolicy;
  const signer = await loadOrCreateSigner(stateDir);
  const instanceWorld = (id: string) => [...worlds.values()].find((w) => w.instances.has(id));
  // IMDS tokens expire in real time (their TTL is what the client asked for, not model time).
  // Each instance is answered from its own region's world.
  const imds = await startImds({
    lookup: (id) => instanceWorld(id)?.imdsView(id) ?? null,
    signer,
    host,
    clock: scaledClock(1),
    lookupByIp: (ip) => {
      for (const w of worlds.values()) {
        const id = w.instanceIdByIp(ip);
        if (id) return id;
      }
      return null;
    },
  });
  const bindAddress = (runtime as Runtime & { imdsBindAddress?: () => string }).imdsBindAddress?.();
  // process runtime: one listener per instance on `host`; linux runtime: instances live in network
  // namespaces and reach one shared listener on the bridge, which tells them apart by source IP.
  const imdsHandle: World["imds"] = bindAddress
    ? { endpointFor: () => imds.endpointForAddress(bindAddress), release: async () => {} }
    : { endpointFor: (id) => imds.endpointFor(id), release: (id) => imds.release(id) };
  let endpoint = "";
  const services = new Map<string, RegionServices>();
  for (const [region, w] of worlds) {
    w.imds = imdsHandle;
    await w.seed();
    const sqs = new SqsService(clock, () => endpoint, region);
    const events = new EventBus(sqs);
    w.events = events;
    services.set(region, { world: w, sqs, events, elbv2: new Elbv2Service(w) });
  }
  const regions = new Regions(services);
  const { sqs, events, elbv2 } = regions.home;
  const throttle = new Throttle(clock, opts.throttle ?? profileName === "realistic");
  const info = () => ({
    endpoint,
    region: world.region,
    regions: regionNames,
    profile: profile.name,
    timeScale,
    runtime: opts.runtime ?? "process",
    stateDir,
    profileTable: profile,
  });
  let http;
  try {
    http = await startHttpServer({
      host,
      port: opts.port ?? 4566,
      regions,
      throttle,
      control: {
        world,
        regions,
        throttle,
        certificatePem: () => signer.certificatePem,
        imdsEndpoint: (id) => world.imds!.endpointFor(id),
        info,
        sqs,
        events,
      },
    });
  } catch (err) {
    // e.g. EADDRINUSE: undo what started so a failed start leaves nothing behind
    for (const w of worlds.values()) await w.stop();
    await imds.stop();
    await runtime.cleanup();
    if (!opts.stateDir) await rm(stateDir, { recursive: true, force: true });
    throw new Error(`localcloud: listening on ${host}:${opts.port ?? 4566}: ${(err as Error).message}`, { cause: err });
  }
  endpoint = `http://${host.includes(":") ? `[${host}]` : host}:${http.port}`;
  let eventsQueueUrl: string | null = null;
  if (opts.eventsQueue) {
    eventsQueueUrl = sqs.createQueue(opts.eventsQueue).url;
    events.putRule({ name: "spotkeep-interruptions", queue: opts.eventsQueue, detailTypes: [...ALL_DETAIL_TYPES] });
  }
  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    controlUrl: `${endpoint}/_localcloud/v1`,
    region: world.region,
    regions: regionNames,
    stateDir,
    profile,
    timeScale,
    world,
    worlds,
    worldFor: (region) => {
      const w = worlds.get(region);
      if (!w) throw new RangeError(`localcloud does not serve the region ${JSON.stringify(region)} (it serves ${regionNames.join(", ")})`);
      return w;
    },
    services: regions,
    throttle,
    runtime,
    certificatePem: signer.certificatePem,
    sqs,
    events,
    elbv2,
    eventsQueueUrl,
    stop: () =>
      (stopping ??= (async () => {
        for (const s of services.values()) s.sqs.stop();
        await http.close();
        for (const w of worlds.values()) await w.stop();
        const live = [...worlds.values()]
          .flatMap((w) => [...w.instances.values()])
          .filter((i) => i.state !== "terminated" && i.state !== "stopped");
        await Promise.allSettled(live.map((i) => runtime.shutdown(i.id, 2000)));
        await imds.stop();
        await runtime.cleanup();
        if (!opts.stateDir) await rm(stateDir, { recursive: true, force: true });
      })()),
  };
}
