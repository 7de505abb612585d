/**
 * `spotkeep coordinator --config FILE [--data-dir DIR]`: run the coordinator service until
 * SIGINT/SIGTERM. Env SPOTKEEP_CRASH_AFTER_STEP=<n> (tests only) SIGKILLs the process right after
 * step n of a replace workflow is recorded (SPOTKEEP_CRASH_KIND picks another runbook).
 */
import type { Command } from "./main.js";
import { parseFlags, UsageError } from "./args.js";
import { loadConfigFile, parseConfig } from "../config.js";

export const command: Command = {
  usage: `usage: spotkeep coordinator [--config FILE] [--data-dir DIR] [--listen HOST:PORT]

Runs the coordinator: HTTP API, agent WebSocket (/agent/v1/ws), agent bundle (/agent/v1/agent.js).
Config (JSON or YAML): listen, dataDir, region, ec2Endpoint, identityCertificate, localcloudControlUrl,
timeScale, adminToken, publicUrl, agentBundlePath, maxConcurrentWorkflows, lostCheckIntervalMs, apiHeadroom,
quiesceMarginSeconds.`,
  async run(argv) {
    const { values } = parseFlags(argv, { config: { type: "string" }, "data-dir": { type: "string" }, listen: { type: "string" } });
    const config = values.config ? loadConfigFile(values.config) : parseConfig({});
    const merged = parseConfig({ ...config, ...(values.listen ? { listen: values.listen } : {}) }, "--listen");
    const crashN = process.env.SPOTKEEP_CRASH_AFTER_STEP;
    let crashAfterStep: { kind: string; seq: number } | undefined;
    if (crashN) {
      const n = Number(crashN);
      if (!Number.isInteger(n) || n < 1)
        throw new UsageError(`SPOTKEEP_CRASH_AFTER_STEP must be a positive integer, got ${JSON.stringify(crashN)}`);
      crashAfterStep = { kind: process.env.SPOTKEEP_CRASH_KIND || "replace", seq: n };
    }
    const { startCoordinator } = await import("../service.js");
    const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
    const c = await startCoordinator({ config: merged, dataDir: values["data-dir"], log, crashAfterStep });
    process.stdout.write(`coordinator listening on ${c.url}\n`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    await c.stop();
    return 0;
  },
};
