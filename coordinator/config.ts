/**
 * Coordinator configuration (`spotkeep coordinator --config FILE`), JSON or YAML, validated with
 * errors that name the field (`listen: "nope" is not host:port`).
 */
import { z } from "zod";
import YAML from "yaml";
import { readFileSync } from "node:fs";
import { ValidationError } from "../shared/errors.js";
import { zodToValidationError } from "../shared/zod-errors.js";
import { HaConfig } from "./ha/config.js";

const hostPort = z.string().regex(/^[^\s:]+:\d{1,5}$/, { message: "must be host:port, such as 127.0.0.1:7400" });
const region = z.string().regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, { message: "is not an AWS region (such as us-east-1)" });
const url = z.string().regex(/^https?:\/\/[^\s]+$/, { message: "must be an http:// or https:// URL" });

export const CoordinatorConfig = z
  .object({
    listen: hostPort.default("127.0.0.1:7400"),
    dataDir: z.string().min(1, { message: "must not be empty" }).default("./spotkeep-data"),
    region: region.default("us-east-1"),
    /**
     * Further regions this coordinator may launch and manage instances in (a spec's `region`); the
     * home `region` is always one. A spec naming any other region is refused.
     */
    regions: z
      .array(region)
      .max(32)
      .refine((rs) => new Set(rs).size === rs.length, { message: "names a region twice" })
      .default([]),
    /** EC2 endpoint override, e.g. localcloud's http://127.0.0.1:4566. */
    ec2Endpoint: url.optional(),
    /** ELBv2 endpoint override (spec.loadBalancers); default: ec2Endpoint when that is not an AWS one (localcloud serves both), else AWS. */
    elbEndpoint: url.optional(),
    /** PEM text or a path to the certificate that signs instance identity documents (required to accept agents). */
    identityCertificate: z.string().min(1).optional(),
    /** real = model × timeScale; scales every coordinator poll, waiter and heartbeat to match a time-scaled localcloud. */
    timeScale: z.number().positive({ message: "must be positive" }).max(100).default(1),
    /** Bearer token for /api/v1; generated and stored in dataDir when absent. */
    adminToken: z.string().min(16, { message: "must be at least 16 characters" }).optional(),
    /**
     * PEM text or a path: the CA certificate that signs the coordinator's TLS certificate when it is
     * a private CA. The user-data carries it so agents verify the coordinator (they never skip it).
     */
    agentCaCertificate: z.string().min(1).optional(),
    /** The coordinator URL agents use (http://host:port); default derived from listen. */
    publicUrl: url.optional(),
    /** Where the agent bundle is served from; default dist/spotkeep-agent.js of this package. */
    agentBundlePath: z.string().min(1).optional(),
    /**
     * The Node.js runtime served to instances whose image has no node 20.19+: `dir` holds what
     * `spotkeep runtime fetch` wrote (default <dataDir>/agent-runtime); `hostNode` serves this
     * coordinator's own node binary for both architectures instead (localcloud, where arm64
     * instances run on the host's processor; `--localcloud` turns it on).
     */
    agentRuntime: z
      .object({ dir: z.string().min(1).optional(), hostNode: z.boolean().default(false) })
      .strict()
      .default({ hostNode: false }),
    /** Workflows mostly wait on EC2 and agents (the pacer bounds API use), so many run at once. */
    maxConcurrentWorkflows: z.number().int().min(1).max(10_000).default(512),
    /** Model ms between batched DescribeInstances sweeps that detect lost instances. */
    lostCheckIntervalMs: z.number().int().min(100).max(3_600_000).default(15_000),
    /** Model minutes between attempts to move an on-demand generation back to spot (launch.market.revertToSpot). */
    revertToSpotIntervalMinutes: z.number().min(0.01).max(10_080).default(15),
    /** Fraction of AWS's API buckets spotkeep uses; 0 turns client-side pacing off. */
    apiHeadroom: z.number().min(0).max(1).default(0.8),
    /** Model seconds before the notice deadline by which quiesce must be done. */
    quiesceMarginSeconds: z.number().min(0).max(110).default(20),
    /**
     * An agent session must come from one of its instance's private addresses (and never from
     * loopback). Turn off only where instances share the coordinator's address, such as
     * localcloud's process runtime.
     */
    agentSourceCheck: z.boolean().default(true),
    /** Addresses or CIDRs of TLS-terminating proxies whose X-Forwarded-For names the agent's address. */
    trustProxy: z.array(z.string().min(1).max(64)).max(64).default([]),
    /**
     * The SQS queue an EventBridge rule fills with EC2's spot interruption warnings, rebalance
     * recommendations, state changes and AWS Health scheduled changes: a second source of notices
     * beside the agents (an http:// queue URL is taken as localcloud's).
     */
    events: z
      .object({
        queueUrl: z.string().regex(/^https?:\/\/[^\s/]+\/\d{12}\/[A-Za-z0-9_-]{1,80}$/, {
          message: "must be an SQS queue URL, such as https://sqs.us-east-1.amazonaws.com/123456789012/spotkeep-events",
        }),
        region: region.optional(),
        /** Long polls in flight. */
        pollers: z.number().int().min(1).max(10).default(2),
        /** Seconds a received message stays hidden while it is recorded (extended at half of it). */
        visibilityTimeoutSeconds: z.number().int().min(5).max(43_200).default(30),
      })
      .strict()
      .optional(),
    /**
     * On-demand USD per hour by instance type for the savings report, laid over the built-in
     * us-east-1 Linux list prices (coordinator/savings.ts DEFAULT_ON_DEMAND_PRICES).
     */
    onDemandPrices: z
      .record(z.string(), z.number().positive().max(1000))
      .superRefine((prices, ctx) => {
        for (const k of Object.keys(prices))
          if (!/^[a-z][a-z0-9-]*\.[a-z0-9]+$/.test(k))
            ctx.addIssue({ code: "custom", path: [k], message: "is not an instance type (such as m5.large)" });
      })
      .default({}),
    /**
     * Start on an empty store even though this data directory held one before (after a deliberate
     * reset), or although EC2 holds resources spotkeep tagged (they stay unmanaged; the log names them).
     * With store.url only the second applies.
     */
    acceptEmptyStore: z.boolean().default(false),
    /**
     * Keep the store in PostgreSQL instead of the SQLite file in dataDir (which still holds the
     * token and the lock). The password comes from the URL or PGPASSWORD.
     */
    store: z
      .object({
        url: z.string().regex(/^postgres(ql)?:\/\/\S+$/, {
          message: "must be a postgres:// or postgresql:// URL, such as postgres://spotkeep@db.example.internal:5432/spotkeep",
        }),
        /** Connections the coordinator keeps open. */
        poolSize: z.number().int().min(2).max(100).default(10),
        /** Give up connecting (at start and later) after this many seconds. */
        connectTimeoutSeconds: z.number().min(1).max(300).default(10),
      })
      .strict()
      .optional(),
    /** Leader election among coordinators sharing one PostgreSQL store (coordinator/ha/config.ts). */
    ha: HaConfig.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.ha && !c.store)
      ctx.addIssue({
        code: "custom",
        path: ["ha"],
        message: "needs store.url: coordinators share their store and the leadership lease in PostgreSQL",
      });
  });

export type CoordinatorConfig = z.infer<typeof CoordinatorConfig>;
export type CoordinatorConfigInput = z.input<typeof CoordinatorConfig>;

export function parseConfig(input: unknown, source = "config"): CoordinatorConfig {
  let data = input;
  if (typeof input === "string") {
    try {
      data = YAML.parse(input);
    } catch (err) {
      throw new ValidationError([{ path: source, reason: `is not valid JSON or YAML: ${(err as Error).message.split("\n")[0]}` }], {
        cause: err,
      });
    }
  }
  if (data === null || data === undefined) data = {};
  if (typeof data !== "object" || Array.isArray(data))
    throw new ValidationError([{ path: source, reason: "must be a mapping of settings" }]);
  const parsed = CoordinatorConfig.safeParse(data);
  if (!parsed.success) throw zodToValidationError(parsed.error);
  return parsed.data;
}

export function loadConfigFile(path: string): CoordinatorConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ValidationError([{ path: "--config", reason: `cannot read ${path}: ${(err as Error).message}` }], { cause: err });
  }
  return parseConfig(text, path);
}
