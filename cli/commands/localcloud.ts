import type { Command } from "../command.js";
import { choiceFlag, numberFlag, parseFlags, UsageError } from "../args.js";
import { printJson } from "../client.js";
import { fetchLocalcloudIds } from "../localcloud-control.js";
import { renderSpecIds } from "../spec-ids.js";

/** `spotkeep localcloud ids`: a running localcloud's ids again (they are new at every start). */
async function ids(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, { url: { type: "string" }, json: { type: "boolean" } });
  const found = await fetchLocalcloudIds(values.url ?? "http://127.0.0.1:4566");
  if (values.json) printJson(found);
  else process.stdout.write(renderSpecIds(found));
  return 0;
}

export const command: Command = {
  usage: [
    "usage: spotkeep localcloud [--port 4566] [--host 127.0.0.1] [--state-dir DIR] [--profile instant|realistic]",
    "                           [--time-scale N] [--runtime process|linux|none] [--throttle on|off] [--events-queue NAME]",
    "                           [--iam-policy FILE] [--regions us-east-1,us-west-2]",
    "       spotkeep localcloud ids [--url http://127.0.0.1:4566] [--json]",
    "",
    "Runs localcloud: an EC2-compatible endpoint for the unmodified AWS SDK, per-instance IMDS, and the",
    "control API under /_localcloud/v1/. Prints `localcloud listening on URL` when ready; SIGINT/SIGTERM",
    "stop every instance and exit 0. --port 0 picks a free port. --time-scale 0.1 runs ten times faster.",
    "--events-queue NAME creates an SQS queue (same endpoint, AWS JSON protocol) and an EventBridge-style rule",
    "that sends every EC2 spot interruption warning, rebalance recommendation and state change to it, so the",
    "coordinator (events.queueUrl) and your own tools can consume them.",
    "--iam-policy FILE enforces that identity-based IAM policy on every EC2 request, as AWS would for the caller",
    "(e.g. docs/iam/coordinator-policy.json): a request it does not allow gets 403 UnauthorizedOperation with an",
    "encoded message; POST /_localcloud/v1/iam/decode-authorization-message decodes it, PUT/DELETE iam/policy change it.",
    "At start it prints the ids a spec needs (new at every start): the default VPC's subnet in each AZ, its",
    "security group and the base image per architecture, with a sed line that puts them in a file from examples/.",
    "`spotkeep localcloud ids` prints them again from a running localcloud (GET /_localcloud/v1/ids); --json for scripts.",
    "--regions serves those regions on the one endpoint (default us-east-1; the first is the home region); a request is for",
    "the region its SDK client signs for. The linux runtime serves one region.",
  ].join("\n"),
  async run(argv) {
    if (argv[0] === "ids") return ids(argv.slice(1));
    const { values } = parseFlags(argv, {
      port: { type: "string" },
      host: { type: "string" },
      "state-dir": { type: "string" },
      profile: { type: "string" },
      "time-scale": { type: "string" },
      runtime: { type: "string" },
      throttle: { type: "string" },
      "events-queue": { type: "string" },
      "iam-policy": { type: "string" },
      regions: { type: "string" },
    });
    const port = numberFlag("port", values.port, { min: 0, max: 65535, integer: true }) ?? 4566;
    const timeScale = numberFlag("time-scale", values["time-scale"], { min: 0.0001, max: 1000 }) ?? 1;
    const profile = choiceFlag("profile", values.profile, ["instant", "realistic"] as const) ?? "realistic";
    const runtime = choiceFlag("runtime", values.runtime, ["process", "linux", "none"] as const) ?? "process";
    const throttle = choiceFlag("throttle", values.throttle, ["on", "off"] as const);
    const eventsQueue = values["events-queue"];
    if (eventsQueue !== undefined && !/^[A-Za-z0-9_-]{1,80}$/.test(eventsQueue))
      throw new UsageError(`--events-queue: ${JSON.stringify(eventsQueue)} is not a queue name (1 to 80 letters, digits, - and _)`);
    const regions = values.regions === undefined ? undefined : values.regions.split(",").map((r) => r.trim());
    const { checkRegions } = await import("../../localcloud/regions.js");
    try {
      checkRegions(regions);
    } catch (err) {
      throw new UsageError(`--${(err as Error).message}`);
    }
    const { startLocalCloud, RuntimeUnavailableError } = await import("../../localcloud/index.js");
    const { PolicyError } = await import("../../localcloud/iam/policy.js");
    let cloud;
    try {
      cloud = await startLocalCloud({
        port,
        host: values.host ?? "127.0.0.1",
        stateDir: values["state-dir"],
        profile,
        timeScale,
        runtime,
        throttle: throttle === undefined ? undefined : throttle === "on",
        eventsQueue,
        iamPolicy: values["iam-policy"],
        regions,
      });
    } catch (err) {
      if (
        err instanceof RuntimeUnavailableError ||
        err instanceof PolicyError ||
        (err instanceof RangeError && err.message.startsWith("regions:"))
      ) {
        process.stderr.write(`spotkeep localcloud: ${err.message}\n`);
        return 1;
      }
      throw err;
    }
    process.stdout.write(`localcloud listening on ${cloud.endpoint}\n`);
    process.stdout.write(
      `  control API ${cloud.controlUrl}  state dir ${cloud.stateDir}  profile ${profile}  time scale ${timeScale}  runtime ${runtime}\n`,
    );
    if (values["iam-policy"]) process.stdout.write(`  IAM policy ${values["iam-policy"]} enforced\n`);
    if (cloud.eventsQueueUrl) process.stdout.write(`  events queue ${cloud.eventsQueueUrl} (rule spotkeep-interruptions)\n`);
    const { specIds } = await import("../../localcloud/world/spec-ids.js");
    for (const w of cloud.worlds.values()) process.stdout.write(renderSpecIds(specIds(w)));
    return await new Promise<number>((resolve) => {
      let stopping = false;
      const stop = (sig: string) => {
        if (stopping) return;
        stopping = true;
        process.stderr.write(`localcloud: ${sig}: stopping instances\n`);
        cloud
          .stop()
          .then(() => resolve(0))
          .catch((err: unknown) => {
            process.stderr.write(`localcloud: stopping: ${(err as Error)?.message ?? String(err)}\n`);
            resolve(1);
          });
      };
      process.once("SIGINT", () => stop("SIGINT"));
      process.once("SIGTERM", () => stop("SIGTERM"));
    });
  },
};
