/**
 * `spotkeep coordinator --config FILE [--data-dir DIR]`: run the coordinator service until
 * SIGINT/SIGTERM. Env SPOTKEEP_CALENDAR_AT=<ISO time> (tests only) starts the clock scheduled tasks
 * read there.
 */
import { CoordinatorConfig, loadConfigFile, parseConfig } from "../../coordinator/config.js";
import { parseFlags, UsageError } from "../args.js";
import { CliError } from "../client.js";
import type { Command } from "../command.js";
import type { CoordinatorHooks } from "../../coordinator/service.js";
import type { PermissionCheck } from "../../coordinator/cloud/gateway.js";
import { isAwsEc2 } from "../../coordinator/agents/aws-certificates.js";
import { fetchLocalcloudCertificate, fetchLocalcloudInfo } from "../localcloud-control.js";
import { agentBundlePath } from "../package-root.js";

export const command: Command = {
  usage: `usage: spotkeep coordinator [--config FILE] [--data-dir DIR] [--listen HOST:PORT] [--localcloud URL]
                            [--accept-empty-store] [--accept-restored-store] [--adopt-from-ec2]
                            [--check-permissions]

Runs the coordinator: HTTP API, agent WebSocket (/agent/v1/ws), agent bundle (/agent/v1/agent.js).
Config (JSON or YAML): ${wrap(Object.keys(CoordinatorConfig.shape).join(", "), 100)}.
  --localcloud URL         drive the localcloud at URL: ec2Endpoint defaults to URL, the agent runtime is
                           this host's node (agentRuntime.hostNode, unless agentRuntime.dir is set), and localcloud's
                           identity certificate is fetched from it (waiting up to 10 s for a localcloud
                           still starting). Without it, a config whose ec2Endpoint is a localcloud and
                           that has no identityCertificate gets the certificate the same way. Driving
                           localcloud's process runtime turns agentSourceCheck off (its instances
                           connect from this host).
  --accept-empty-store     for this start only: begin on an empty store although the data directory
                           held one (after a deliberate reset), or although EC2 holds resources
                           spotkeep tagged (they stay unmanaged; the log names them)
  --adopt-from-ec2         for this start only, on an empty store: rebuild the stateful instances that
                           have an instance in EC2 from what EC2 says (live generation, data volumes,
                           ENI and IP, image); mount points, hooks, health checks, schedules and
                           history cannot be rebuilt (set them with spotkeep update)
  --accept-restored-store  for this start only: adopt the store as it is after it was replaced, rolled
                           back or lost its write-ahead log (prefer spotkeep restore-backup)
  --check-permissions      DryRun every EC2 action the coordinator uses against the account (or
                           localcloud), print allowed / denied / inconclusive per action and exit: 1
                           when any is denied. The same check runs at every start and logs denied
                           actions.`,
  run: (argv) => runCoordinator(argv),
};

/**
 * The command's work: flags and config as the command takes them, the coordinator started with
 * `hooks` (the product passes none; test/coordinator/crashing-coordinator.ts passes its own), run
 * until SIGINT/SIGTERM. Answers the exit code.
 */
export async function runCoordinator(argv: string[], hooks: CoordinatorHooks = {}): Promise<number> {
  const { values } = parseFlags(argv, {
    config: { type: "string" },
    "data-dir": { type: "string" },
    listen: { type: "string" },
    localcloud: { type: "string" },
    "accept-empty-store": { type: "boolean" },
    "accept-restored-store": { type: "boolean" },
    "adopt-from-ec2": { type: "boolean" },
    "check-permissions": { type: "boolean" },
  });
  const config = values.config ? loadConfigFile(values.config) : parseConfig({});
  const localcloud = values.localcloud?.replace(/\/+$/, "");
  if (localcloud !== undefined && !/^https?:\/\/\S+$/.test(localcloud))
    throw new UsageError(`--localcloud must be an http(s) URL, got ${JSON.stringify(values.localcloud)}`);
  const merged = parseConfig(
    {
      ...config,
      ...(values.listen ? { listen: values.listen } : {}),
      ...(localcloud && !config.ec2Endpoint ? { ec2Endpoint: localcloud } : {}),
      ...(values["accept-empty-store"] ? { acceptEmptyStore: true } : {}),
      // localcloud's instances run on this host: its own node is their runtime (arm64 ones too).
      ...(localcloud && !config.agentRuntime.dir ? { agentRuntime: { ...config.agentRuntime, hostNode: true } } : {}),
    },
    values.listen ? "--listen" : "--localcloud",
  );
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  if (!merged.identityCertificate) {
    // localcloud signs identity documents with its own key: the coordinator must pin that
    // certificate, as it pins AWS's for a real region.
    // Without one, on AWS, the coordinator takes the certificate that ships for its region.
    const from = localcloud ?? (isAwsEc2(merged.ec2Endpoint) ? undefined : merged.ec2Endpoint);
    if (from) {
      merged.identityCertificate = await fetchLocalcloudCertificate(from, localcloud ? 40 : 2).catch((err: Error) => {
        throw new CliError(
          `identityCertificate is not configured and ${localcloud ? "--localcloud" : "ec2Endpoint"} ${from} is not a localcloud ` +
            `that answers (${err.message}); set identityCertificate to AWS's RSA certificate for the region`,
          { cause: err },
        );
      });
      log(`identity certificate: localcloud's, from ${from}`);
      const info = await fetchLocalcloudInfo(from).catch(() => undefined);
      // Instances of the process runtime are processes on this host: their agents connect from
      // loopback, never from their private addresses, so the source check would refuse them all.
      if (info?.runtime === "process" && merged.agentSourceCheck) {
        merged.agentSourceCheck = false;
        log("agentSourceCheck: off (localcloud's process runtime: every agent connects from this host)");
      }
      if (info && info.timeScale !== merged.timeScale)
        log(`warning: localcloud runs at time scale ${info.timeScale} and this coordinator at ${merged.timeScale} (set timeScale)`);
    }
  }
  if (values["check-permissions"]) {
    const checks = await checkPermissions(merged);
    for (const c of checks) process.stdout.write(`${c.result.padEnd(12)} ec2:${c.action.padEnd(30)} ${c.code}\n`);
    const denied = checks.filter((c) => c.result === "denied");
    process.stdout.write(
      denied.length
        ? `denied: ${denied.map((c) => `ec2:${c.action}`).join(", ")}: attach docs/iam/coordinator-policy.json (or grant these)\n`
        : "no action the coordinator uses is denied (inconclusive: granted, but conditions on existing resources' tags need real resources)\n",
    );
    return denied.length ? 1 : 0;
  }
  // At every start: the account's policy is checked before any instance depends on it.
  void checkPermissions(merged)
    .then((checks) => {
      const denied = checks.filter((c) => c.result === "denied");
      if (denied.length)
        log(`permissions: EC2 denies ${denied.map((c) => `ec2:${c.action}`).join(", ")}: grant docs/iam/coordinator-policy.json`);
      else log(`permissions: none of the ${checks.length} EC2 actions the coordinator uses is denied`);
    })
    .catch((err: Error) => log(`permissions: the check could not run: ${err.message}`));
  merged.agentBundlePath ??= agentBundlePath();
  const calendarAt = process.env.SPOTKEEP_CALENDAR_AT;
  let calendar: (() => number) | undefined;
  if (calendarAt) {
    const at = Date.parse(calendarAt);
    if (!/^\d{4}-\d\d-\d\dT/.test(calendarAt) || Number.isNaN(at))
      throw new UsageError(`SPOTKEEP_CALENDAR_AT must be an ISO 8601 time, got ${JSON.stringify(calendarAt)}`);
    const offset = at - Date.now();
    calendar = () => Date.now() + offset;
  }
  const { startCoordinator } = await import("../../coordinator/service.js");
  // The handlers go in before the start: a SIGINT/SIGTERM that comes while the coordinator starts
  // (it prints that it listens before this function resumes) stops it cleanly once it is up, instead
  // of Node's default of dying on the spot. A second signal exits at once (a start or stop that hangs).
  let started = false;
  let stopping = false;
  let requestStop = () => {};
  const stopRequested = new Promise<void>((resolve) => {
    requestStop = resolve;
  });
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(signal === "SIGINT" ? 130 : 143);
    stopping = true;
    if (!started) log(`${signal}: stopping as soon as the coordinator has started (send it again to exit at once)`);
    requestStop();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const c = await startCoordinator(
    {
      config: merged,
      dataDir: values["data-dir"],
      log,
      calendar,
      acceptRestoredStore: !!values["accept-restored-store"],
      adoptFromEc2: !!values["adopt-from-ec2"],
    },
    hooks,
  );
  started = true;
  process.stdout.write(`coordinator listening on ${c.url}\n`);
  await stopRequested;
  await c.stop();
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  return 0;
}

/** DryRun each EC2 action the coordinator uses (allowed / denied / inconclusive per action). */
async function checkPermissions(config: { region: string; ec2Endpoint?: string; timeScale: number }): Promise<PermissionCheck[]> {
  const { createAwsGateway } = await import("../../coordinator/cloud/aws.js");
  const gw = createAwsGateway({ region: config.region, endpoint: config.ec2Endpoint, timeScale: config.timeScale, maxAttempts: 3 });
  return gw.checkPermissions!();
}

/** Break a comma-separated list into lines of at most `width` characters. */
function wrap(text: string, width: number): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line].join("\n");
}
