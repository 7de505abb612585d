/**
 * Agent configuration from flags and environment (flags win). Every field is validated and a bad
 * value is reported naming the flag/variable; nothing starts with a bad config.
 *
 * Time scale: SPOTKEEP_TIME_SCALE multiplies every interval the agent waits on its own
 * (poll, heartbeat, reconnect backoff, hook timeouts, thaw-after, device wait). Durations the
 * coordinator sends (welcome.config.pollIntervalMs/heartbeatMs, freeze-for-snapshot.thawAfterMs,
 * restore-plan.deviceTimeoutMs, hooks.timeoutSeconds) are MODEL time and are scaled the same way.
 * Absolute times (notice `time`, quiesce `deadline`) are wall-clock and never scaled.
 */
import { join } from "node:path";
import { parseCoordinatorUrls } from "../shared/coordinators.js";

export interface AgentConfig {
  /** SPOTKEEP_COORDINATOR as given (one URL or a list). */
  coordinatorUrl: string | undefined;
  /** The coordinator URLs, tried in turn (empty when none is configured). */
  coordinatorUrls: string[];
  imdsEndpoint: string;
  devDir: string;
  /** localcloud process runtime only: link folders of hot-plugged ENIs; unset = configure links with `ip`. */
  netDir: string | undefined;
  /** localcloud process runtime only: absolute in-instance paths resolve under it. */
  rootDir: string | undefined;
  stateDir: string;
  timeScale: number;
  /** Model ms. */
  pollIntervalMs: number;
  logLevel: "debug" | "info" | "warn" | "error";
  /** Model ms to wait for the coordinator after a notice before quiescing on our own. */
  autonomousQuiesceAfterMs: number;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

export const FLAGS: Record<string, { env: string; help: string }> = {
  "--coordinator": {
    env: "SPOTKEEP_COORDINATOR",
    help: "coordinator WebSocket URL (ws://host:port/agent/v1/ws), or several separated by commas",
  },
  "--imds": { env: "AWS_EC2_METADATA_SERVICE_ENDPOINT", help: "IMDS endpoint (default http://169.254.169.254)" },
  "--dev-dir": { env: "SPOTKEEP_DEV_DIR", help: "where volume device links appear (default /dev/disk/by-id)" },
  "--net-dir": { env: "SPOTKEEP_NET_DIR", help: "localcloud process runtime: folder of ENI link folders (default: use `ip`)" },
  "--root-dir": { env: "SPOTKEEP_ROOT_DIR", help: "localcloud process runtime: folder that absolute paths resolve under" },
  "--state-dir": { env: "SPOTKEEP_STATE_DIR", help: "agent state (outbox) folder (default /var/lib/spotkeep-agent)" },
  "--time-scale": { env: "SPOTKEEP_TIME_SCALE", help: "multiply every interval (0.1 = ten times faster; default 1)" },
  "--poll-interval-ms": { env: "SPOTKEEP_POLL_INTERVAL_MS", help: "IMDS poll interval in model ms (default 1000)" },
  "--log-level": { env: "SPOTKEEP_LOG_LEVEL", help: "debug | info | warn | error (default info)" },
};

/** Parse `--flag value` / `--flag=value` pairs; unknown flags are an error naming the flag. */
export function parseAgentFlags(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (!(name in FLAGS)) throw new ConfigError(`unknown flag ${name} (see spotkeep-agent --help)`);
    const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new ConfigError(`flag ${name} needs a value`);
    out[name] = value;
  }
  return out;
}

export function resolveConfig(flags: Record<string, string>, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const get = (flag: string): { value: string | undefined; source: string } => {
    const spec = FLAGS[flag]!;
    if (flags[flag] !== undefined) return { value: flags[flag], source: flag };
    const v = env[spec.env];
    return { value: v === "" ? undefined : v, source: spec.env };
  };

  const coord = get("--coordinator");
  let coordinatorUrls: string[] = [];
  if (coord.value !== undefined) {
    const parsed = parseCoordinatorUrls(coord.value);
    if ("error" in parsed) throw new ConfigError(`${coord.source}: ${parsed.error}`);
    coordinatorUrls = parsed.urls;
  }
  const imds = get("--imds");
  const imdsEndpoint = imds.value ?? "http://169.254.169.254";
  // IMDS is plain HTTP on a link-local address; the IMDS client keeps its one connection on an http.Agent.
  if (!/^http:\/\/[^\s/]+/.test(imdsEndpoint))
    throw new ConfigError(`${imds.source}: must be an http:// URL, got ${JSON.stringify(imdsEndpoint)}`);

  const abs = (flag: string, dflt: string | undefined): string | undefined => {
    const { value, source } = get(flag);
    const v = value ?? dflt;
    if (v !== undefined && !v.startsWith("/")) throw new ConfigError(`${source}: must be an absolute path, got ${JSON.stringify(v)}`);
    return v;
  };
  const rootDir = abs("--root-dir", undefined);
  const devDir = abs("--dev-dir", "/dev/disk/by-id")!;
  const netDir = abs("--net-dir", undefined);
  // In the process runtime the state lives inside the instance's own folder, like /var/lib on EC2.
  const stateDir = abs("--state-dir", rootDir ? join(rootDir, "var/lib/spotkeep-agent") : "/var/lib/spotkeep-agent")!;

  const num = (flag: string, dflt: number, min: number, max: number): number => {
    const { value, source } = get(flag);
    if (value === undefined) return dflt;
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new ConfigError(`${source}: must be a number in [${min}, ${max}], got ${JSON.stringify(value)}`);
    return n;
  };
  const timeScale = num("--time-scale", 1, 0.0001, 1000);
  if (!(timeScale > 0)) throw new ConfigError("SPOTKEEP_TIME_SCALE: must be positive");
  const pollIntervalMs = num("--poll-interval-ms", 1000, 50, 60_000);

  const lvl = get("--log-level");
  const logLevel = (lvl.value ?? "info") as AgentConfig["logLevel"];
  if (!["debug", "info", "warn", "error"].includes(logLevel))
    throw new ConfigError(`${lvl.source}: must be debug|info|warn|error, got ${JSON.stringify(lvl.value)}`);

  return {
    coordinatorUrl: coord.value,
    coordinatorUrls,
    imdsEndpoint,
    devDir,
    netDir,
    rootDir,
    stateDir,
    timeScale,
    pollIntervalMs,
    logLevel,
    autonomousQuiesceAfterMs: 5_000,
  };
}

/** Model ms -> real ms under the configured time scale (never below 1 ms). */
export function scaleMs(cfg: Pick<AgentConfig, "timeScale">, modelMs: number): number {
  return Math.max(1, Math.round(modelMs * cfg.timeScale));
}

/** An in-instance absolute path as seen by this process (under SPOTKEEP_ROOT_DIR in the process runtime). */
export function hostPath(cfg: Pick<AgentConfig, "rootDir">, p: string): string {
  return cfg.rootDir ? join(cfg.rootDir, p) : p;
}
