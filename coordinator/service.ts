/**
 * The coordinator's entry point: builds the clock, the store, the EC2 gateway, the workflow engine
 * and its runbooks, the agent hub, the HTTP API, the intake, the schedule and the operations, and
 * wires them together. It decides nothing itself: agent messages go to `AgentIntake`, periodic
 * work to `Schedule`, what an operator asks for to `Operations`.
 */
import { workflowEnded } from "./lifecycle.js";
import { AgentLink } from "./agent-link.js";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isAwsEc2, shippedCertificatePath, shippedRegions } from "./agents/aws-certificates.js";
import { modelClock, type ScaledClock, scaledClock } from "../shared/clock.js";
import type { StatefulInstanceSpec } from "../shared/spec.js";
import type { AgentHub } from "./agents/hub.js";
import { type IdentityKeys, loadCertificate } from "./agents/identity.js";
import { createApiServer } from "./api/server.js";
import { SavingsReport } from "./savings.js";
import { loadOrCreateAdminToken } from "./api/token.js";
import type { CoordinatorViews } from "./api/types.js";
import { Refusal } from "./refusal.js";
import { agentBundleSha256, loadCaCertificate, renderUserData } from "./bootstrap.js";
import { createAwsGateway } from "./cloud/aws.js";
import { createElbGateway, type ElbGateway, elbEndpointFor } from "./elb/elbv2.js";
import { createKmsGateway, type KmsGateway } from "./kms/kms.js";
import type { Ec2Gateway } from "./cloud/gateway.js";
import { type CoordinatorConfig, type CoordinatorConfigInput, parseConfig } from "./config.js";
import { openDataDir } from "./db/datadir.js";
import { openDatabase, STORE_FILE } from "./db/open.js";
import { SqliteStore } from "./db/sqlite/index.js";
import { clearPostgresMarker, openPostgresStore } from "./db/postgres/open.js";
import type { Store } from "./db/store.js";
import { Views } from "./views.js";
import { RefusalEvents } from "./refusal-events.js";
import { AgentIntake } from "./intake.js";
import { NoticeDecisions } from "./events/decisions.js";
import { startQueueEvents } from "./events/index.js";
import { guardEmptyStore } from "./empty-store.js";
import { type CallerIdentity, callerIdentity } from "./cloud/identity.js";
import { Metrics } from "./metrics.js";
import { Operations } from "./operations.js";
import { Schedule } from "./schedule.js";
import { HealthMonitor } from "./health.js";
import { ScheduledTasks } from "./tasks.js";
import { type Runbook, WorkflowEngine, type WorkflowOutcome } from "./workflow/engine.js";
import { regionalRunbook } from "./workflow/runbooks/regional.js";
import { type RelocateInput, relocateRunbook } from "./workflow/runbooks/relocate.js";
import { Regions } from "./cloud/regions.js";
import { syncRegionCopies } from "./region-copies.js";
import { memberSpec } from "../shared/group-spec.js";
import type { Engine, WorkflowInputs } from "./workflow/kinds.js";
import type { WorkflowRecord } from "./db/store.js";
import { RENAMED_STEPS } from "./workflow/runbooks/generation.js";
import { createRunbook } from "./workflow/runbooks/create.js";
import { importRunbook } from "./workflow/runbooks/import.js";
import type { RunbookDeps } from "./workflow/runbooks/deps.js";
import { replaceRunbook } from "./workflow/runbooks/replace.js";
import { pauseRunbook } from "./workflow/runbooks/pause.js";
import { resumeRunbook } from "./workflow/runbooks/resume.js";
import { deleteRunbook } from "./workflow/runbooks/delete.js";
import { snapshotRunbook } from "./workflow/runbooks/snapshot.js";
import { growRunbook } from "./workflow/runbooks/grow.js";
import { GroupOperations } from "./groups/operations.js";
import { registerGroupMetrics } from "./groups/metrics.js";
import type { GroupRunbookDeps } from "./groups/runbooks.js";
import { groupScaleRunbook } from "./groups/scale.js";
import { groupUpdateRunbook } from "./groups/update.js";
import type { LeaderInfo } from "./ha/lease.js";
import { createHa, type Ha } from "./ha/setup.js";
import { LEASE_LOST_EXIT_CODE } from "./ha/config.js";
import { openAgentRuntimes } from "./agent-runtime/open.js";

export interface StartOptions {
  config: CoordinatorConfigInput | CoordinatorConfig;
  /** Overrides config.dataDir. */
  dataDir?: string;
  /** Inject a gateway (tests); default: the AWS SDK gateway from the config. */
  ec2?: Ec2Gateway;
  /** Inject a load-balancer gateway (tests); default: the ELBv2 SDK gateway (endpoint: `elbEndpointFor(config)`). */
  elb?: ElbGateway;
  /** Inject a KMS gateway (tests); default: the KMS SDK gateway (endpoint: `elbEndpointFor`'s rule, localcloud serves KMS too). */
  kms?: KmsGateway;
  /**
   * On an empty store beside spotkeep-tagged resources in EC2, rebuild the stateful instances it can
   * from EC2 (coordinator/empty-store.ts). A start option only (the CLI's --adopt-from-ec2).
   */
  adoptFromEc2?: boolean;
  /** Who the coordinator's credentials are (tests); default: STS GetCallerIdentity at the EC2 endpoint's STS. */
  callerIdentity?: () => Promise<CallerIdentity>;
  log?: (line: string) => void;
  /**
   * Adopt the store as it is when it was replaced, rolled back or lost its write-ahead log (after
   * restoring a backup by hand). A start option only (the CLI's --accept-restored-store), never a
   * config setting: a permanent one would turn the check off.
   */
  acceptRestoredStore?: boolean;
  /** The wall clock scheduled tasks are read on (tests move it to a due time); default the coordinator's clock. */
  calendar?: () => number;
  /**
   * With `ha`: called when this coordinator loses the lease; default: log and exit with
   * LEASE_LOST_EXIT_CODE (the supervisor restarts it as a standby).
   */
  onLeaseLost?: (reason: string) => void;
}

/**
 * Instrumentation: the seam through which tests act at chosen points of a running coordinator (a
 * process that SIGKILLs itself right after a step is recorded, a disk filled at a chosen step). Each
 * hook runs synchronously at its point, so what it does happens before the coordinator goes on. The
 * product passes none.
 */
export interface CoordinatorHooks {
  /**
   * After a step's result is recorded (step `seq`, named `name`, of workflow `wf`). `alsoRecording`:
   * the workflow's other steps (run beside this one) whose results this process has already sent
   * to the store and whose hook has not run yet: they may be recorded too by now.
   */
  afterStep?(wf: WorkflowRecord, seq: number, name: string, alsoRecording: readonly number[]): void;
  /** After a queue event is recorded, before its message is deleted from the queue. */
  afterEventRecord?(eventId: string): void;
}

export interface Coordinator {
  url: string;
  wsUrl: string;
  adminToken: string;
  config: CoordinatorConfig;
  store: Store;
  engine: Engine;
  hub: AgentHub;
  views: CoordinatorViews;
  metrics: Metrics;
  operations: Operations;
  groups: GroupOperations;
  /** Run one lost-instance sweep now (also runs on the schedule's timer). */
  sweepLost(): Promise<string[]>;
  /** Run one move-back-to-spot pass now (also runs on the schedule's timer). */
  revertToSpot(): Promise<string[]>;
  /** Run one health-check and scheduled-maintenance pass now (also runs on the schedule's timer). */
  sweepHealth(): Promise<string[]>;
  /** Run one pass of the scheduled tasks now (also runs on the schedule's timer). */
  runScheduledTasks(): Promise<string[]>;
  /** With `ha`: this coordinator's role and the leader as last seen; null without `ha`. */
  leadership(): LeaderInfo | null;
  stop(): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));

export async function startCoordinator(opts: StartOptions, hooks: CoordinatorHooks = {}): Promise<Coordinator> {
  const config = parseConfig(opts.config);
  const log = opts.log ?? (() => undefined);
  const dataDir = resolve(opts.dataDir ?? config.dataDir);
  // On AWS the certificate AWS publishes for each region ships with spotkeep; a configured one serves every region.
  const awsShipped = !config.identityCertificate && isAwsEc2(config.ec2Endpoint);
  const shipped = awsShipped ? shippedCertificatePath(config.region) : null;
  const identityCertificate = config.identityCertificate ?? shipped;
  if (!identityCertificate)
    throw new Refusal(
      "invalid",
      !isAwsEc2(config.ec2Endpoint)
        ? "identityCertificate: required (PEM text or a file path): AWS's RSA certificate for the region, or localcloud's " +
            "(`spotkeep coordinator` fetches it when ec2Endpoint is a localcloud)"
        : `identityCertificate: none ships for region ${config.region} (shipped: ${shippedRegions().join(", ")}); ` +
            "set it to AWS's RSA certificate for the region (PEM text or a file path)",
    );
  if (shipped) log(`identity certificate: AWS's for ${config.region} (${shipped})`);
  const homeKey = loadCertificate(identityCertificate);
  let publicKey: IdentityKeys = homeKey;
  if (awsShipped && config.regions.some((r) => r !== config.region)) {
    const keys = new Map([[config.region, homeKey]]);
    for (const r of config.regions) {
      if (keys.has(r)) continue;
      const path = shippedCertificatePath(r);
      if (!path)
        throw new Refusal(
          "invalid",
          `regions: no identity certificate ships for ${r} (shipped: ${shippedRegions().join(", ")}); ` +
            "set identityCertificate, or manage that region from a coordinator configured with its certificate",
        );
      keys.set(r, loadCertificate(path));
      log(`identity certificate: AWS's for ${r} (${path})`);
    }
    publicKey = (region) => keys.get(region) ?? null;
  }
  const clock = scaledClock(config.timeScale);
  // One coordinator per data directory (0700, its files 0600); the store is checked at open.
  const dir = openDataDir(dataDir, { now: clock.now });
  // With `ha`: the lease, and the fence every store write passes (config: ha needs store.url).
  const ha =
    config.ha && config.store
      ? createHa({ storeUrl: config.store.url, config: config.ha, log, onLost: opts.onLeaseLost ?? leaseLostExit(log) })
      : null;
  let store: Store;
  try {
    if (config.store) {
      if (opts.acceptRestoredStore)
        throw new Refusal(
          "invalid",
          "--accept-restored-store applies to the SQLite store in the data directory only; with store.url the store is in PostgreSQL " +
            "(restore it with pg_restore or your database's own backups)",
        );
      store = await openPostgresStore(dir.dir, config.store, { now: clock.now, log, ...(ha ? { fence: ha.fence } : {}) });
    } else {
      clearPostgresMarker(dir.dir);
      store = new SqliteStore(
        openDatabase(join(dir.dir, STORE_FILE), {
          now: clock.now,
          acceptEmptyStore: config.acceptEmptyStore,
          acceptRestoredStore: opts.acceptRestoredStore,
          log,
        }),
        clock.now,
      );
    }
  } catch (err) {
    await ha?.close();
    dir.release();
    throw err;
  }
  try {
    return await startOn({ dataDir: dir.dir, store, publicKey, clock, config, opts, hooks, log, releaseDataDir: () => dir.release(), ha });
  } catch (err) {
    await ha?.close();
    await store.close().catch(() => undefined);
    dir.release();
    throw err;
  }
}

/** A coordinator that lost the lease stops acting at once: it exits, and its supervisor restarts it as a standby. */
function leaseLostExit(log: (line: string) => void): (reason: string) => void {
  return (reason) => {
    log(`exiting with code ${LEASE_LOST_EXIT_CODE}: this coordinator no longer leads (${reason}); restart it to stand by`);
    process.exit(LEASE_LOST_EXIT_CODE);
  };
}

/** What startCoordinator has opened and checked before it builds the rest on it. */
interface Opened {
  dataDir: string;
  store: Store;
  publicKey: IdentityKeys;
  clock: ScaledClock;
  config: CoordinatorConfig;
  opts: StartOptions;
  hooks: CoordinatorHooks;
  log: (line: string) => void;
  releaseDataDir: () => void;
  ha: Ha | null;
}

async function startOn(o: Opened): Promise<Coordinator> {
  const { dataDir, store, publicKey, clock, config, opts, hooks, log, releaseDataDir, ha } = o;
  const adminToken = loadOrCreateAdminToken(dataDir, config.adminToken);
  const metrics = new Metrics({
    defaultMetrics: false,
    instanceStates: async () => {
      const out: Record<string, number> = {};
      for (const r of await store.instances.list()) out[r.state] = (out[r.state] ?? 0) + 1;
      return out;
    },
  });
  const calendar = opts.calendar ?? clock.now;
  const views = new Views(store, config.timeScale, calendar);
  const ec2For = (region: string) =>
    createAwsGateway({
      region,
      endpoint: config.ec2Endpoint,
      clock: modelClock(config.timeScale),
      timeScale: config.timeScale,
      pacingHeadroom: config.apiHeadroom,
      observe: metrics,
      // A coordinator that no longer leads refuses every EC2 mutation as it is about to be sent.
      ...(ha ? { beforeMutation: (action: string) => ha.beforeMutation(`EC2 ${action}`), callerId: ha.lease.holder } : {}),
    });
  const elbFor = (region: string) =>
    createElbGateway({
      region,
      endpoint: elbEndpointFor(config),
      timeScale: config.timeScale,
      ...(ha ? { beforeMutation: ha.beforeMutation } : {}),
    });
  const kmsFor = (region: string) =>
    createKmsGateway({ region, endpoint: elbEndpointFor({ ec2Endpoint: config.ec2Endpoint }), timeScale: config.timeScale });
  // Injected gateways (tests) serve the home region; every other region gets its own clients.
  const regions = new Regions(
    {
      home: config.region,
      allowed: config.regions,
      homeClients: {
        ec2: opts.ec2 ?? ec2For(config.region),
        elb: opts.elb ?? elbFor(config.region),
        kms: opts.kms ?? kmsFor(config.region),
      },
    },
    (region) => ({ ec2: ec2For(region), elb: elbFor(region), kms: kmsFor(region) }),
  );
  const ec2 = regions.ec2();

  // An empty store beside what spotkeep tagged in EC2 is refused, adopted or accepted before anything acts.
  await guardEmptyStore(
    {
      store,
      ec2,
      region: config.region,
      otherRegions: regions.allowed.slice(1).map((region) => ({ region, ec2: regions.ec2(region) })),
      log,
    },
    {
      adoptFromEc2: opts.adoptFromEc2 === true,
      acceptEmptyStore: config.acceptEmptyStore,
      restoreHint: config.store
        ? "restore the PostgreSQL database from its backup (pg_restore, or your database's snapshots)"
        : `restore the latest backup (spotkeep restore-backup --data-dir ${dataDir} --from BACKUP_FILE)`,
    },
  );
  let publicUrl = config.publicUrl ?? "";
  const agentBundlePath = config.agentBundlePath ? resolve(config.agentBundlePath) : defaultAgentBundlePath();
  const caCertificate = config.agentCaCertificate ? loadCaCertificate(config.agentCaCertificate) : undefined;
  const runtimes = await openAgentRuntimes(config, dataDir, log);
  // The agents' side: runbooks send commands and wait on reports through it from the start; it
  // accepts agents once intake and the health monitor exist (agents.serve below).
  const agents = new AgentLink({
    clock,
    publicKey,
    store,
    metrics,
    checkSourceAddress: config.agentSourceCheck,
    trustProxy: config.trustProxy,
    log,
  });
  const elb = regions.for(undefined).elb;
  const deps: RunbookDeps = {
    store,
    ec2,
    elb,
    clock,
    sendToAgent: agents.send,
    // The bootstrap checks the downloaded agent against this hash before running it.
    userData: (spec: StatefulInstanceSpec) =>
      renderUserData({
        publicUrl,
        coordinatorUrls: config.ha?.agentUrls,
        userUserData: spec.launch.userData,
        timeScale: config.timeScale,
        agentSha256: agentBundleSha256(agentBundlePath),
        caCertificate,
        runtimes,
      }),
    pollMs: 1000,
    quiesceMarginMs: config.quiesceMarginSeconds * 1000,
    onAgentReport: agents.onReport,
    log,
    regions,
  };
  // Each region's runbooks run on that region's EC2 and ELBv2 clients.
  const depsByRegion = new Map<string, RunbookDeps>();
  const depsIn = (region: string): RunbookDeps => {
    let d = depsByRegion.get(region);
    if (!d) {
      const c = regions.for(region);
      d = { ...deps, ec2: c.ec2, elb: c.elb };
      depsByRegion.set(region, d);
    }
    return d;
  };
  const instanceRegion = async (ctx: { instance: string }) => regions.of((await store.instances.get(ctx.instance))?.spec);
  const groupRegion = async (_: unknown, input: { group: string }) => {
    const g = await store.groups.get(input.group);
    return regions.of(g ? memberSpec(g.spec, 0) : null);
  };
  const inRegion = <I>(make: (d: RunbookDeps) => Runbook<I>) => regionalRunbook(instanceRegion, depsIn, make);
  const groupDeps: GroupRunbookDeps = {
    run: deps,
    start: (kind, instance, input, trigger, t) => engine.start(kind, instance, input, trigger, t),
    operations: { deleteInstance: (name, o) => operations.deleteInstance(name, o) },
    health: async (name) => {
      const inst = await store.instances.get(name);
      if (!inst?.spec.health) return null;
      const g = await store.generations.get(name, inst.generation);
      return health.viewOf(name, inst.spec, g?.ec2InstanceId ?? null, inst.state)?.status ?? null;
    },
    calendar,
  };
  const engine: Engine = new WorkflowEngine<WorkflowInputs>({
    store,
    clock,
    runbooks: {
      create: inRegion(createRunbook),
      import: inRegion(importRunbook),
      replace: inRegion(replaceRunbook),
      // A recycle is a planned replacement: the same runbook, with trigger `recycle`.
      recycle: inRegion(replaceRunbook),
      pause: inRegion(pauseRunbook),
      resume: inRegion(resumeRunbook),
      snapshot: inRegion(snapshotRunbook),
      grow: inRegion(growRunbook),
      delete: inRegion(deleteRunbook),
      // A relocate runs in the region it moves the instance to, before and after its first step stores that region.
      relocate: regionalRunbook(async (_ctx, input: RelocateInput) => input.region, depsIn, relocateRunbook),
      "group-scale": regionalRunbook(groupRegion, (r) => ({ ...groupDeps, run: depsIn(r) }), groupScaleRunbook),
      "group-update": regionalRunbook(groupRegion, (r) => ({ ...groupDeps, run: depsIn(r) }), groupUpdateRunbook),
    },
    renamedSteps: RENAMED_STEPS,
    maxConcurrent: config.maxConcurrentWorkflows,
    defaultPolicy: { initialMs: 500, maxMs: 10_000, attempts: 10 },
    afterStep: hooks.afterStep,
    onFinished: (wf, outcome) => workflowFinished(wf, outcome),
  });

  /** Metrics; then what the end means for the group, or for the instance and its agents. */
  async function workflowFinished(wf: WorkflowRecord, outcome: WorkflowOutcome): Promise<void> {
    metrics.workflowsRunning.set(engine.running);
    if (wf.owner.kind === "group") {
      metrics.recordWorkflow(wf.kind, wf.status);
      await groups.finished(wf.owner.name, wf.kind, outcome.ok, outcome.ok ? null : outcome.error);
      log(`${wf.kind} ${wf.id} for ${wf.instance} ${outcome.ok ? "succeeded" : `failed: ${outcome.error}`}`);
      return;
    }
    const t = await views.timeline(wf);
    metrics.recordWorkflow(wf.kind, wf.status, {
      downtimeSeconds: t.downtimeSeconds,
      recoverySeconds: t.recoverySeconds,
      steps: t.steps.flatMap((s) => (s.durationMs != null ? [{ name: s.name, seconds: s.durationMs / 1000 }] : [])),
    });
    await workflowEnded({ store, log }, wf, outcome);
    agents.workflowEnded(wf, outcome.ok, outcome.ok ? outcome.result : null);
    // A deleted instance (archived as NAME~time) has no volumes to report any more.
    if (wf.kind === "delete" && outcome.ok) metrics.setVolumeUsage(wf.instance.split("~")[0]!, []);
  }

  const runtimeFor = (architecture: string) => {
    const e = runtimes.current.served[architecture === "arm64" ? "arm64" : "x64"];
    return e && runtimes.current.version ? { version: runtimes.current.version, gzBytes: e.gzBytes } : null;
  };
  const kms = regions.for(undefined).kms;
  const operations = new Operations({
    store,
    engine,
    ec2,
    kms,
    region: config.region,
    regions,
    log,
    calendar,
    modelMsSince: (wallMs) => clock.modelMsSince(wallMs),
    runtimeFor,
    renderUserData: deps.userData,
  });
  const groups = new GroupOperations({ store, engine, ec2, region: config.region, regions, log });
  registerGroupMetrics(metrics.registry, () => groups.list());
  const tasks = new ScheduledTasks({ store, operations, calendar, log });
  // One decision path for both sources of notices: the agents and the EventBridge queue.
  const decisions = new NoticeDecisions({ store, operations, clock, log });
  const health = new HealthMonitor({ store, ec2, regions, operations, metrics, clock, log });
  // Refusals caused by whoever sends them reach the timeline rate-limited, so they cannot push out its history.
  const refusals = new RefusalEvents({ events: store.events, clock, log });
  const intake = new AgentIntake({ store, ec2, regions, operations, metrics, clock, log, decisions, maintenance: health, refusals });
  const cutLogged = new Map<string, number>();
  const hub = agents.serve({ health, intake, refusals });
  const savings = new SavingsReport({
    instances: async () =>
      (await Promise.all((await views.list({ includeDeleted: true })).map((i) => views.detail(i.name)))).filter(
        (d): d is NonNullable<typeof d> => d !== null,
      ),
    ec2,
    regions,
    onDemandPrices: config.onDemandPrices,
    timeScale: config.timeScale,
    now: clock.now,
  });
  const apiViews: CoordinatorViews = {
    listInstances: async (o) => health.decorate(await views.list(o)),
    getInstance: async (name) => health.decorateDetail(await views.detail(name)),
    getEvents: (name) => views.events(name),
    getWorkflow: (id) => views.workflow(id),
    runOperation: (name, op) => operations.run(name, op),
    updateInstance: (name, spec, o) => operations.update(name, spec, o),
    createInstance: (spec) => operations.createInstance(spec),
    checkCreate: (spec) => operations.checkCreate(spec),
    deleteInstance: (name, o) => operations.deleteInstance(name, o),
    importInstance: (req) => operations.importInstance(req),
    relocateInstance: (name, req) => operations.relocate(name, req),
    savings: () => savings.report(),
  };
  const api = createApiServer({
    views: apiViews,
    specRegion: config.region,
    onConnectionCut: (why, source) => {
      metrics.connectionsCut.inc({ reason: why });
      // A flood of them is logged once per reason a minute.
      const now = clock.now();
      const last = cutLogged.get(why);
      if (last === undefined || now - last >= 60_000) {
        cutLogged.set(why, now);
        log(`HTTP connection from ${source || "?"} closed before completing a request (${why}); further ones are counted in metrics`);
      }
    },
    groups,
    adminToken,
    agentBundlePath,
    agentRuntime: runtimes,
    onBootReport: agents.bootReport,
    // A standby refuses agents, naming the leader; only the leader's hub accepts them.
    onAgentUpgrade: ha
      ? (req, socket, head) =>
          ha.lease.isLeading() ? agents.handleUpgrade(req, socket, head) : ha.refusals.refuse(req, socket, head, ha.lease.leaderUrl())
      : agents.handleUpgrade,
    standby: ha ? () => (ha.lease.isLeading() ? null : { leader: ha.lease.leaderUrl() }) : undefined,
    metricsText: () => {
      const l = ha?.lease.info();
      metrics.leader.set(!l || l.role === "leader" ? 1 : 0);
      metrics.leaseEpoch.set(l?.epoch ?? 0);
      return metrics.text();
    },
    health: () => ({
      ok: true,
      detail: {
        ...leadershipDetail(ha),
        agents: agents.connected,
        agentsBeforeHello: agents.preHello,
        workflowsRunning: engine.running,
        workflowsWaiting: engine.waiting,
      },
    }),
  });
  const [host, portText] = config.listen.split(":") as [string, string];
  let url: string;
  try {
    url = await api.listen(Number(portText), host);
  } catch (err) {
    // Nothing has run yet; stop what was built so the caller can exit non-zero at once.
    await engine.stop();
    await agents.close();
    await refusals.close();
    throw new Error(`listening on ${config.listen}: ${(err as Error).message}`, { cause: err });
  }
  if (!publicUrl) publicUrl = url;

  const schedule = new Schedule({
    store,
    ec2,
    regions,
    operations,
    metrics,
    clock,
    intervalMs: config.lostCheckIntervalMs,
    revertToSpotIntervalMs: config.revertToSpotIntervalMinutes * 60_000,
    onTick: () => metrics.workflowsRunning.set(engine.running),
    health,
    tasks,
    regionCopies: () => syncRegionCopies({ store, regions, log }),
    log,
  });
  const ev = config.events;
  let queueEvents: ReturnType<typeof startQueueEvents> | null = null;
  /** Everything only the leader runs: schedules, the queue consumer, unfinished workflows. */
  const act = async () => {
    schedule.start();
    queueEvents = ev
      ? startQueueEvents({
          ...ev,
          region: ev.region ?? config.region,
          ec2Region: config.region,
          ec2,
          identity: opts.callerIdentity ?? (() => callerIdentity({ region: config.region, endpoint: config.ec2Endpoint })),
          store,
          operations,
          decisions,
          metrics,
          clock,
          hub,
          log,
          afterRecord: hooks.afterEventRecord,
        })
      : null;
    const resumed = await engine.resumeAll();
    if (resumed.length) log(`resumed ${resumed.length} unfinished workflow(s): ${resumed.join(", ")}`);
  };
  if (ha) await ha.start(publicUrl, act);
  else await act();
  log(
    `coordinator listening on ${url} (data ${dataDir}, time scale ${config.timeScale}` +
      `${ha ? `, ${ha.lease.isLeading() ? "leader" : "standby"} ${ha.lease.holder}` : ""})`,
  );

  return {
    url,
    wsUrl: `${url.replace(/^http/, "ws")}/agent/v1/ws`,
    adminToken,
    config,
    store,
    engine,
    hub,
    views: apiViews,
    metrics,
    operations,
    groups,
    sweepLost: () => schedule.sweepLost(),
    revertToSpot: () => schedule.revertToSpot(),
    sweepHealth: () => health.sweep(),
    runScheduledTasks: () => tasks.pass(),
    leadership: () => ha?.lease.info() ?? null,
    async stop() {
      schedule.stop();
      await queueEvents?.stop();
      await engine.stop();
      // Let the lease go at once, so a standby takes over without waiting for it to expire.
      await ha?.close();
      await agents.close();
      await refusals.close();
      await api.close();
      await store.close();
      releaseDataDir();
    },
  };
}

/** /healthz's view of leadership: `role` leader or standby, the leader's URL and the epoch (role leader alone without ha). */
function leadershipDetail(ha: Ha | null): Record<string, unknown> {
  if (!ha) return { role: "leader" };
  const l = ha.lease.info();
  return { role: l.role === "leader" ? "leader" : "standby", leader: l.leader?.url ?? null, epoch: l.epoch, coordinator: l.self.id };
}

/** dist/spotkeep-agent.js of this package, from the sources (coordinator/) or from the built CLI (dist/cli/). */
function defaultAgentBundlePath(): string {
  return here.endsWith(join("dist", "cli")) ? join(here, "..", "spotkeep-agent.js") : join(here, "..", "dist", "spotkeep-agent.js");
}
