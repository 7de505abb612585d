/**
 * Prometheus metrics for the coordinator (GET /metrics). One registry per coordinator (not the
 * process-global one) so tests can run several coordinators in one process.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

const DURATION_BUCKETS = [0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600];

export class Metrics {
  readonly registry = new Registry();

  private instanceSource: (() => Promise<Record<string, number>>) | undefined;
  readonly instances: Gauge<"state">;
  readonly interruptions = new Counter({
    name: "spotkeep_interruptions_total",
    help: "Notices received, by kind (spot-interruption, rebalance, scheduled-event, lost)",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly replacements = new Counter({
    name: "spotkeep_replacements_total",
    help: "Finished replacement workflows by outcome",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });
  readonly workflows = new Counter({
    name: "spotkeep_workflows_total",
    help: "Finished workflows by kind and outcome",
    labelNames: ["kind", "outcome"] as const,
    registers: [this.registry],
  });
  readonly keptExpired = new Counter({
    name: "spotkeep_kept_resources_expired_total",
    help: "Resources a delete kept that the TTL sweep deleted when they expired, by kind",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly volumeUsedRatio = new Gauge({
    name: "spotkeep_volume_used_ratio",
    help: "Used share (0..1, as df's Use%) of each kept data volume's filesystem, from the agent's latest inventory of the live generation",
    labelNames: ["instance", "device"] as const,
    registers: [this.registry],
  });
  /** The devices whose usage series is set, per instance. */
  private readonly volumeSeries = new Map<string, Set<string>>();
  /** The used share of `instance`'s kept volumes, as its latest inventory shows them; a device left out loses its series. */
  setVolumeUsage(instance: string, usage: ReadonlyArray<{ device: string; ratio: number }>): void {
    const shown = new Set(usage.map((u) => u.device));
    for (const u of usage) this.volumeUsedRatio.set({ instance, device: u.device }, u.ratio);
    for (const device of this.volumeSeries.get(instance) ?? []) if (!shown.has(device)) this.volumeUsedRatio.remove({ instance, device });
    if (shown.size) this.volumeSeries.set(instance, shown);
    else this.volumeSeries.delete(instance);
  }
  readonly unhealthy = new Gauge({
    name: "spotkeep_instances_unhealthy",
    help: "Stateful instances whose health check has failed for longer than their unhealthy duration",
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: "spotkeep_coordinator_leader",
    help: "1 while this coordinator leads (always 1 without ha), 0 on a standby",
    registers: [this.registry],
  });
  readonly leaseEpoch = new Gauge({
    name: "spotkeep_coordinator_lease_epoch",
    help: "The leadership lease's epoch as this coordinator last saw it (0 without ha)",
    registers: [this.registry],
  });
  readonly workflowsRunning = new Gauge({
    name: "spotkeep_workflows_running",
    help: "Workflows currently running",
    registers: [this.registry],
  });
  readonly downtime = new Histogram({
    name: "spotkeep_downtime_seconds",
    help: "Downtime per replacement (quiesce start to workload serving), model seconds",
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly recovery = new Histogram({
    name: "spotkeep_recovery_seconds",
    help: "Recovery time per replacement (notice to ready), model seconds",
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly stepDuration = new Histogram({
    name: "spotkeep_step_duration_seconds",
    help: "Workflow step durations, model seconds",
    labelNames: ["step"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly ec2Calls = new Counter({
    name: "spotkeep_ec2_api_calls_total",
    help: "EC2 API calls by action",
    labelNames: ["action"] as const,
    registers: [this.registry],
  });
  readonly ec2Errors = new Counter({
    name: "spotkeep_ec2_api_errors_total",
    help: "EC2 API errors by action and error code",
    labelNames: ["action", "code"] as const,
    registers: [this.registry],
  });
  readonly ec2Throttles = new Counter({
    name: "spotkeep_ec2_api_throttles_total",
    help: "EC2 RequestLimitExceeded answers by action",
    labelNames: ["action"] as const,
    registers: [this.registry],
  });
  readonly agentsConnected = new Gauge({
    name: "spotkeep_agents_connected",
    help: "Agents with an open WebSocket session",
    registers: [this.registry],
  });
  readonly connectionsCut = new Counter({
    name: "spotkeep_http_connections_cut_total",
    help: "HTTP connections closed before completing a request (caps on waiting connections, first-byte and request timeouts), by reason",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly agentRejections = new Counter({
    name: "spotkeep_agent_rejections_total",
    help: "Agent sessions refused or closed, by reason",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  readonly agentBootFailures = new Counter({
    name: "spotkeep_agent_boot_failures_total",
    help: "Instances whose bootstrap reported it could not start the agent, by stage (runtime: no usable Node.js; agent: the agent)",
    labelNames: ["stage"] as const,
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean; instanceStates?: () => Promise<Record<string, number>> } = {}) {
    const self = this;
    // Read from the store at scrape time, so the gauge can never drift from the truth.
    this.instances = new Gauge({
      name: "spotkeep_instances",
      help: "Stateful instances by state",
      labelNames: ["state"] as const,
      registers: [this.registry],
      async collect() {
        if (!self.instanceSource) return;
        const counts = await self.instanceSource();
        this.reset();
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: "spotkeep_process_" });
    if (opts.instanceStates) this.setInstanceStateSource(opts.instanceStates);
  }

  /** Where the instances-by-state gauge reads its numbers at scrape time. */
  setInstanceStateSource(source: () => Promise<Record<string, number>>): void {
    this.instanceSource = source;
  }

  /** Record one EC2 API call's outcome. */
  recordEc2Call(action: string, errorCode?: string): void {
    this.ec2Calls.inc({ action });
    if (!errorCode) return;
    this.ec2Errors.inc({ action, code: errorCode });
    if (errorCode === "RequestLimitExceeded" || /Throttl/.test(errorCode)) this.ec2Throttles.inc({ action });
  }

  /** Record a finished workflow; replacements also feed the downtime/recovery histograms. */
  recordWorkflow(
    kind: string,
    outcome: string,
    timings: { downtimeSeconds?: number | null; recoverySeconds?: number | null; steps?: Array<{ name: string; seconds: number }> } = {},
  ): void {
    this.workflows.inc({ kind, outcome });
    if (kind.startsWith("replace") || kind === "recover") {
      this.replacements.inc({ outcome });
      if (timings.downtimeSeconds != null) this.downtime.observe(timings.downtimeSeconds);
      if (timings.recoverySeconds != null) this.recovery.observe(timings.recoverySeconds);
    }
    for (const s of timings.steps ?? []) this.stepDuration.observe({ step: s.name }, s.seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
