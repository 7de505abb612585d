/**
 * The coordinator service: wires the store, the workflow engine and its runbooks, the EC2
 * gateway, the agent hub and the HTTP API, and implements the views the API serves.
 *
 * Time (design §9): every poll, waiter, retry delay and heartbeat is model time, scaled by
 * `timeScale` into real time. Timestamps in the store are wall-clock, so a restart (whose scaled
 * clock starts afresh) still reads them correctly.
 */
import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { KeyObject } from "node:crypto";
import { realClock, scaledClock, type Clock } from "../shared/clock.js";
import type { StatefulInstanceSpec } from "../shared/spec.js";
import type { AgentMessage } from "../shared/protocol.js";
import type { EventsResponse, InstanceDetail, InstanceSummary, Workflow } from "../shared/api.js";
import { ApiFault, type CoordinatorViews } from "./api/types.js";
import { createApiServer, type ApiServer } from "./api/server.js";
import { loadOrCreateAdminToken } from "./api/token.js";
import { Metrics } from "./metrics.js";
import { parseConfig, type CoordinatorConfig, type CoordinatorConfigInput } from "./config.js";
import { Store } from "./db/queries.js";
import { Views } from "./db/views.js";
import { WorkflowEngine, type Runbook } from "./workflow/engine.js";
import { createRunbook } from "./workflow/runbooks/create.js";
import { unsupportedFeatures } from "./workflow/runbooks/support.js";
import { replaceRunbook, type ReplaceInput } from "./workflow/runbooks/replace.js";
import { snapshotRunbook } from "./workflow/runbooks/snapshot.js";
import type { RunbookDeps } from "./workflow/runbooks/deps.js";
import { createAwsGateway } from "./cloud/aws.js";
import type { Ec2Gateway } from "./cloud/gateway.js";
import { AgentHub, type AgentSession } from "./agents/hub.js";
import { loadCertificate } from "./agents/identity.js";
import { renderUserData } from "./bootstrap.js";

export interface StartOptions {
  config: CoordinatorConfigInput | CoordinatorConfig;
  /** Overrides config.dataDir. */
  dataDir?: string;
  /** Inject a gateway (tests); default: the AWS SDK gateway from the config. */
  ec2?: Ec2Gateway;
  log?: (line: string) => void;
  /** Crash hook for the crash test: SIGKILL this process after recording step `seq` of a workflow of `kind`. */
  crashAfterStep?: { kind: string; seq: number };
}

export interface Coordinator {
  url: string;
  wsUrl: string;
  adminToken: string;
  config: CoordinatorConfig;
  store: Store;
  engine: WorkflowEngine;
  hub: AgentHub;
  views: CoordinatorViews;
  metrics: Metrics;
  /** Run one lost-instance sweep now (also runs on a timer). */
  sweepLost(): Promise<string[]>;
  stop(): Promise<void>;
}

const here = dirname(fileURLToPath(import.meta.url));

/** real now, scaled waits: for everything whose times are stored. */
function delayScaledClock(timeScale: number): Clock {
  return {
    now: () => realClock.now(),
    sleep: (ms, signal) => realClock.sleep(ms * timeScale, signal),
    setTimer: (ms, fn) => realClock.setTimer(ms * timeScale, fn),
  };
}

async function loadIdentityKey(config: CoordinatorConfig): Promise<KeyObject> {
  if (config.identityCertificate) return loadCertificate(config.identityCertificate);
  // localcloud serves its signing certificate beside its EC2 endpoint.
  const control =
    config.localcloudControlUrl ?? (config.ec2Endpoint ? `${config.ec2Endpoint.replace(/\/+$/, "")}/_localcloud/v1` : undefined);
  if (control) {
    const url = `${control.replace(/\/+$/, "")}/identity/certificate`;
    let lastErr: unknown;
    for (let i = 0; i < (config.localcloudControlUrl ? 20 : 2); i++) {
      try {
        const res = await fetch(url);
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        return loadCertificate(await res.text());
      } catch (err) {
        lastErr = err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    throw new Error(
      `identityCertificate: not configured, and fetching localcloud's from ${url} failed (${(lastErr as Error)?.message}); set identityCertificate to AWS's RSA certificate for the region`,
      { cause: lastErr },
    );
  }
  throw new ApiFault(
    "invalid",
    "identityCertificate: required (PEM text or a file path), or set localcloudControlUrl to fetch localcloud's",
  );
}

export async function startCoordinator(opts: StartOptions): Promise<Coordinator> {
  const config = parseConfig(opts.config);
  const log = opts.log ?? (() => undefined);
  const dataDir = resolve(opts.dataDir ?? config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const publicKey = await loadIdentityKey(config);

  const adminToken = loadOrCreateAdminToken(dataDir, config.adminToken);

  const clock = delayScaledClock(config.timeScale);
  const model = scaledClock(config.timeScale);
  const store = new Store(join(dataDir, "coordinator.sqlite"), clock.now);
  const metrics = new Metrics({
    defaultMetrics: false,
    instanceStates: () => {
      const out: Record<string, number> = {};
      for (const r of store.listInstances()) out[r.state] = (out[r.state] ?? 0) + 1;
      return out;
    },
  });
  const views = new Views(store, config.timeScale);
  const ec2 =
    opts.ec2 ??
    createAwsGateway({
      region: config.region,
      endpoint: config.ec2Endpoint,
      clock: model,
      timeScale: config.timeScale,
      pacingHeadroom: config.apiHeadroom,
      observe: metrics,
    });

  let publicUrl = config.publicUrl ?? "";
  let hub!: AgentHub;
  const deps: RunbookDeps = {
    store,
    ec2,
    clock: model,
    timeScale: config.timeScale,
    sendToAgent: (instanceId, body, id) => hub.send(instanceId, body, id),
    userData: (spec: StatefulInstanceSpec) =>
      renderUserData({ publicUrl, userUserData: spec.launch.userData, timeScale: config.timeScale }),
    pollMs: 1000,
    quiesceMarginMs: config.quiesceMarginSeconds * 1000,
    log,
  };
  const runbooks: Record<string, Runbook> = { create: createRunbook(deps), replace: replaceRunbook(deps), snapshot: snapshotRunbook(deps) };
  const crash = opts.crashAfterStep;
  const engine = new WorkflowEngine({
    store,
    clock,
    runbooks,
    maxConcurrent: config.maxConcurrentWorkflows,
    defaultPolicy: { initialMs: 500, maxMs: 10_000, attempts: 10 },
    afterStep: crash
      ? (wf, seq, name) => {
          if (wf.kind === crash.kind && seq === crash.seq) {
            log(`crash hook: killing myself after ${wf.kind} step ${seq} (${name})`);
            process.kill(process.pid, "SIGKILL");
          }
        }
      : undefined,
    onFinished: (wf, outcome) => {
      metrics.workflowsRunning.set(engine.running);
      const t = views.timeline(wf);
      metrics.recordWorkflow(wf.kind, wf.status, {
        downtimeSeconds: t.downtimeSeconds,
        recoverySeconds: t.recoverySeconds,
        steps: t.steps.filter((s) => s.durationMs != null).map((s) => ({ name: s.name, seconds: s.durationMs! / 1000 })),
      });
      if (!outcome.ok) {
        const later = store.runningWorkflowsFor(wf.instance).length > 0;
        // A failed snapshot leaves the instance serving; only create/replace failures mean it is down.
        if (!later && wf.kind !== "snapshot") store.setInstanceState(wf.instance, "failed", `${wf.kind} failed: ${outcome.error}`);
        store.addEvent(wf.instance, "workflow-failed", `${wf.kind} ${wf.id} failed: ${outcome.error}`, wf.id);
        log(`${wf.kind} ${wf.id} for ${wf.instance} failed: ${outcome.error}`);
      } else {
        store.addEvent(wf.instance, "workflow-succeeded", `${wf.kind} ${wf.id} succeeded`, wf.id);
        if (wf.kind === "replace") hub.forget((JSON.parse(wf.input) as ReplaceInput).instanceId);
      }
    },
  });

  /** Start a replacement unless one is already running or the instance is not the live generation. */
  function startReplace(input: ReplaceInput, why: string): string | null {
    const inst = store.getInstance(input.name);
    if (inst?.state !== "running") return null;
    const g = store.getGeneration(input.name, inst.generation);
    if (g?.status !== "live" || g.instance_id !== input.instanceId) return null;
    // A snapshot in flight does not hold up a replacement (it will fail on its own if the instance goes).
    if (store.runningWorkflowsFor(input.name).some((w) => w.kind !== "snapshot")) return null;
    const id = engine.start("replace", input.name, { ...input, fromGeneration: inst.generation }, input.trigger);
    store.addEvent(input.name, "replace-started", `${why}: replacing ${input.instanceId} (generation ${inst.generation})`, id);
    log(`${input.name}: ${why}; replacing ${input.instanceId} as workflow ${id}`);
    return id;
  }

  /** Start a snapshot workflow of the live generation; null when not running or busy. */
  function startSnapshot(name: string, reason: string): string | null {
    const inst = store.getInstance(name);
    if (inst?.state !== "running") return null;
    const g = store.getGeneration(name, inst.generation);
    if (!g?.instance_id || g.status !== "live") return null;
    if (store.runningWorkflowsFor(name).length > 0) return null;
    if (store.listVolumes(name).length === 0) return null;
    const id = engine.start("snapshot", name, { name, instanceId: g.instance_id, generation: g.generation, reason }, reason);
    store.addEvent(name, "snapshot-started", `${reason}: snapshotting the data volumes of ${g.instance_id}`, id);
    return id;
  }

  function onAgentMessage(session: AgentSession, msg: AgentMessage): void {
    const name = session.statefulInstance;
    switch (msg.type) {
      case "notice": {
        if (!store.recordAgentReport(session.instanceId, "notice", msg.noticeId, msg)) return;
        metrics.interruptions.inc({ kind: msg.kind });
        store.addEvent(
          name,
          "notice",
          `${msg.kind}${msg.action ? ` (${msg.action})` : ""} on ${session.instanceId}${msg.deadline ? `, deadline ${msg.deadline}` : ""}`,
        );
        if (msg.kind === "rebalance") {
          const spec = JSON.parse(store.getInstance(name)!.spec) as StatefulInstanceSpec;
          if (spec.onRebalance === "snapshot") startSnapshot(name, "rebalance recommendation");
          else if (spec.onRebalance === "recycle") store.addEvent(name, "rebalance", "onRebalance: recycle is not supported yet; ignoring");
        }
        if (msg.kind === "spot-interruption")
          startReplace(
            {
              name,
              instanceId: session.instanceId,
              fromGeneration: session.generation,
              trigger: "spot-interruption",
              deadline: msg.deadline,
            },
            `spot interruption notice (${msg.action ?? "terminate"})`,
          );
        return;
      }
      case "quiesced":
      case "restored":
        store.recordAgentReport(session.instanceId, msg.type, msg.ref ?? "", msg);
        store.addEvent(
          name,
          msg.type,
          `${session.instanceId} ${msg.type}${"clean" in msg ? ` (clean: ${msg.clean})` : ` (ok: ${msg.ok})`}`,
        );
        return;
      case "ready":
        store.recordAgentReport(session.instanceId, "ready", "", msg);
        store.addEvent(name, "agent-ready", `${session.instanceId} reported ready`);
        return;
      case "error":
        store.addEvent(name, "agent-error", `${session.instanceId}: ${msg.code}: ${msg.message.slice(0, 500)}`);
        return;
      case "inventory":
        return;
    }
  }

  hub = new AgentHub({
    clock,
    publicKey,
    lookup: (instanceId) => {
      const g = store.generationByInstanceId(instanceId);
      if (!g || g.status === "ended") return null;
      return { statefulInstance: g.instance, generation: g.generation };
    },
    welcome: (session) => {
      const spec = JSON.parse(store.getInstance(session.statefulInstance)!.spec) as StatefulInstanceSpec;
      return {
        hooks: { preStop: spec.hooks.preStop, postRestore: spec.hooks.postRestore, timeoutSeconds: spec.hooks.timeoutSeconds },
        mounts: store
          .listVolumes(session.statefulInstance)
          .filter((v) => v.volume_id)
          .map((v) => ({ volumeId: v.volume_id!, device: v.device, mountPoint: v.mount_point, fsType: v.fs_type })),
        pollIntervalMs: 1000,
        heartbeatMs: 5000,
      };
    },
    onHello: (s) => log(`agent ${s.instanceId} (${s.statefulInstance} g${s.generation}, ${s.mode}) connected`),
    onMessage: onAgentMessage,
    onRejected: (reason, detail) => {
      metrics.agentRejections.inc({ reason });
      log(`agent refused (${reason}): ${detail}`);
    },
    onConnectionCount: (n) => metrics.agentsConnected.set(n),
    log,
  });

  const viewsImpl: CoordinatorViews = {
    listInstances: (): InstanceSummary[] => views.list(),
    getInstance: (name): InstanceDetail | null => views.detail(name),
    getEvents: (name): EventsResponse | null => views.events(name),
    getWorkflow: (id): Workflow | null => views.workflow(id),
    runOperation: async (name, op) => {
      const inst = store.getInstance(name);
      if (!inst) throw new ApiFault("not-found", `no stateful instance named ${name}`);
      if (op !== "snapshot") throw new ApiFault("conflict", `${op} is not supported by this coordinator yet`);
      if (store.listVolumes(name).length === 0) throw new ApiFault("conflict", `${name} has no data volumes to snapshot`);
      const running = store.runningWorkflowsFor(name)[0];
      if (running) throw new ApiFault("conflict", `${name} is busy with ${running.kind} ${running.id}`);
      const id = startSnapshot(name, "requested");
      if (!id) throw new ApiFault("conflict", `${name} is ${inst.state}; only a running instance can be snapshotted`);
      return { workflowId: id };
    },
    createInstance: async (spec) => {
      const unsupported = unsupportedFeatures(spec);
      if (unsupported.length) throw new ApiFault("invalid", unsupported.map((u) => `${u.path}: ${u.reason}`).join("; "));
      if (store.getInstance(spec.name)) throw new ApiFault("conflict", `stateful instance ${spec.name} already exists`);
      let wfId = "";
      store.tx(() => {
        store.insertInstance(spec.name, spec, "creating");
        for (const v of spec.persistence.volumes)
          store.upsertVolume({ instance: spec.name, device: v.device, mount_point: v.mountPoint, fs_type: v.fsType });
        wfId = engine.start("create", spec.name, { name: spec.name }, "create");
        store.addEvent(spec.name, "created", `create requested (workflow ${wfId})`, wfId);
      });
      return { workflowId: wfId };
    },
  };

  const agentBundlePath = config.agentBundlePath ? resolve(config.agentBundlePath) : join(here, "..", "dist", "spotkeep-agent.js");
  const api: ApiServer = createApiServer({
    views: viewsImpl,
    adminToken,
    agentBundlePath,
    onAgentUpgrade: hub.handleUpgrade,
    metricsText: () => metrics.text(),
    health: () => ({ ok: true, detail: { agents: hub.connected, workflowsRunning: engine.running, workflowsWaiting: engine.waiting } }),
  });
  const [host, portText] = config.listen.split(":") as [string, string];
  const url = await api.listen(Number(portText), host);
  if (!publicUrl) publicUrl = url;

  // Lost without notice: batched DescribeInstances of every live generation.
  async function sweepLost(): Promise<string[]> {
    const live = store.liveGenerations();
    if (live.length === 0) return [];
    const seen = new Map((await ec2.describeInstances(live.map((g) => g.instance_id!))).map((i) => [i.instanceId, i]));
    const started: string[] = [];
    for (const g of live) {
      const i = seen.get(g.instance_id!);
      if (i && i.state !== "shutting-down" && i.state !== "terminated") continue;
      // A notice may be on its way; a replacement already running is left alone by startReplace.
      const id = startReplace(
        { name: g.instance, instanceId: g.instance_id!, fromGeneration: g.generation, trigger: "lost" },
        `${g.instance_id} found ${i?.state ?? "missing"} without a notice${i?.stateReason ? ` (${i.stateReason})` : ""}`,
      );
      if (id) {
        metrics.interruptions.inc({ kind: "lost" });
        started.push(id);
      }
    }
    return started;
  }
  /** Continuous snapshots (design §4.2): every snapshots.intervalMinutes of model time. */
  function dueSnapshots(): string[] {
    const started: string[] = [];
    for (const inst of store.listInstances()) {
      if (inst.state !== "running") continue;
      const spec = JSON.parse(inst.spec) as StatefulInstanceSpec;
      if (!(spec.snapshots.intervalMinutes > 0) || spec.persistence.volumes.length === 0) continue;
      const last = Math.max(
        store.listArtifacts(inst.name, "data-snapshot")[0]?.created_at ?? 0,
        store.getGeneration(inst.name, inst.generation)?.ready_at ?? 0,
      );
      if (clock.now() - last < spec.snapshots.intervalMinutes * 60_000 * config.timeScale) continue;
      const id = startSnapshot(inst.name, `every ${spec.snapshots.intervalMinutes} min`);
      if (id) started.push(id);
    }
    return started;
  }

  let stopped = false;
  let cancelSweep: (() => void) | null = null;
  const scheduleSweep = () => {
    if (stopped) return;
    cancelSweep = clock.setTimer(config.lostCheckIntervalMs, () => {
      metrics.workflowsRunning.set(engine.running);
      sweepLost()
        .catch((err) => log(`lost-instance sweep: ${(err as Error).message}`))
        .then(() => dueSnapshots())
        .catch((err) => log(`scheduled snapshots: ${(err as Error).message}`))
        .finally(scheduleSweep);
    });
  };
  scheduleSweep();

  const resumed = engine.resumeAll();
  if (resumed.length) log(`resumed ${resumed.length} unfinished workflow(s): ${resumed.join(", ")}`);
  log(`coordinator listening on ${url} (data ${dataDir}, time scale ${config.timeScale})`);

  return {
    url,
    wsUrl: `${url.replace(/^http/, "ws")}/agent/v1/ws`,
    adminToken,
    config,
    store,
    engine,
    hub,
    views: viewsImpl,
    metrics,
    sweepLost,
    async stop() {
      stopped = true;
      cancelSweep?.();
      await engine.stop();
      await hub.close();
      await api.close();
      store.close();
    },
  };
}
