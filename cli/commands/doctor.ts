/**
 * `spotkeep doctor`: what an operator runs on the coordinator host before the first instance.
 * Each check says ok, warning or failure, and how to fix what is not ok. It changes nothing: the
 * store is read through a read-only connection, EC2 is asked with DryRun, SQS and EventBridge with
 * read calls, and the agent URL with one GET of the bundle.
 */
import { createHash } from "node:crypto";
import { lookup } from "node:dns/promises";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { isIP } from "node:net";
import { join, resolve } from "node:path";
import { openSqlite } from "../../coordinator/db/sqlite/driver.js";
import { EventBridgeClient, ListRuleNamesByTargetCommand } from "@aws-sdk/client-eventbridge";
import type { Command } from "../command.js";
import { parseFlags, UsageError } from "../args.js";
import { printJson } from "../client.js";
import { renderTable } from "../table.js";
import { fetchLocalcloudCertificate } from "../localcloud-control.js";
import { agentBundlePath } from "../package-root.js";
import { type CoordinatorConfig, loadConfigFile, parseConfig } from "../../coordinator/config.js";
import { isAwsEc2, shippedCertificatePath } from "../../coordinator/agents/aws-certificates.js";
import { loadCertificate } from "../../coordinator/agents/identity.js";
import { inspectWal, readStoreIdentity, STORE_FILE, STORE_IDENTITY_FILE, storeIdentityOf } from "../../coordinator/db/open.js";
import { readLockHolder } from "../../coordinator/db/datadir.js";
import { RUNTIME_ARCHES } from "../../agent/deploy/bootstrap.js";
import { AgentRuntimes } from "../../coordinator/agent-runtime/runtimes.js";

export type CheckStatus = "ok" | "warning" | "failure";
export interface CheckResult {
  check: string;
  status: CheckStatus;
  detail: string;
  /** What to do about a warning or failure (null when ok). */
  fix: string | null;
}

const POLICY = "docs/iam/coordinator-policy.json";
/** Every network question gets this long. */
const TIMEOUT_MS = 5000;

const ok = (check: string, detail: string): CheckResult => ({ check, status: "ok", detail, fix: null });
const warn = (check: string, detail: string, fix: string): CheckResult => ({ check, status: "warning", detail, fix });
const fail = (check: string, detail: string, fix: string): CheckResult => ({ check, status: "failure", detail, fix });
const message = (err: unknown) => ((err as Error)?.message ?? String(err)).split("\n")[0]!.slice(0, 300);
const errName = (err: unknown) => (err as { name?: string; Code?: string })?.name ?? "";
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

export const command: Command = {
  usage: `usage: spotkeep doctor [--config FILE] [--localcloud URL] [--data-dir DIR] [--json]

Checks a coordinator host before the first instance, changing nothing: the config parses; the store
opens and passes its checks (read-only: integrity, write-ahead log, store identity); EC2 allows
every action the coordinator uses (DryRun, as coordinator --check-permissions); an identity
certificate is there for each region in use; the agent-facing URL (publicUrl) resolves and answers
from this host with this agent bundle; the events queue exists and EventBridge rules send to it;
the agent bundle and this host's Node.js runtime, with their SHA-256; the agent runtime served to
images without Node.js (a warning for an architecture it lacks). Each check prints ok, warning
or failure with the fix (--json for scripts). Exit code 1 when any check fails.`,
  async run(argv) {
    const { values } = parseFlags(argv, {
      config: { type: "string" },
      localcloud: { type: "string" },
      "data-dir": { type: "string" },
      json: { type: "boolean" },
    });
    const localcloud = values.localcloud?.replace(/\/+$/, "");
    if (localcloud !== undefined && !/^https?:\/\/\S+$/.test(localcloud))
      throw new UsageError(`--localcloud must be an http(s) URL, got ${JSON.stringify(values.localcloud)}`);
    const results = await runChecks({ configFile: values.config, localcloud, dataDir: values["data-dir"] });
    if (values.json) printJson({ ok: !results.some((r) => r.status === "failure"), checks: results });
    else {
      process.stdout.write(
        renderTable(
          ["CHECK", "RESULT", "DETAIL"],
          results.map((r) => [r.check, r.status, r.detail]),
        ),
      );
      const fixes = results.filter((r) => r.fix);
      if (fixes.length) process.stdout.write(`\n${fixes.map((r) => `${r.status} ${r.check}: ${r.fix}`).join("\n")}\n`);
      const failures = results.filter((r) => r.status === "failure").length;
      process.stdout.write(
        failures
          ? `\n${failures} check${failures > 1 ? "s" : ""} failed\n`
          : "\nno check failed: this host is ready for its first instance\n",
      );
    }
    return results.some((r) => r.status === "failure") ? 1 : 0;
  },
};

export async function runChecks(o: { configFile?: string; localcloud?: string; dataDir?: string }): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  let config: CoordinatorConfig;
  try {
    const base = o.configFile ? loadConfigFile(o.configFile) : parseConfig({});
    config = parseConfig(
      {
        ...base,
        ...(o.localcloud && !base.ec2Endpoint ? { ec2Endpoint: o.localcloud } : {}),
        // As `spotkeep coordinator --localcloud`: this host's node is the agent runtime.
        ...(o.localcloud && !base.agentRuntime.dir ? { agentRuntime: { ...base.agentRuntime, hostNode: true } } : {}),
      },
      o.configFile ?? "defaults",
    );
    out.push(ok("config", o.configFile ? `${o.configFile} parses` : "no --config: the defaults"));
  } catch (err) {
    out.push(fail("config", message(err), `correct ${o.configFile ?? "the config"} (the message names the field)`));
    return out;
  }
  const dataDir = resolve(o.dataDir ?? config.dataDir);
  const store = checkStore(config, dataDir);
  out.push(store.result);
  out.push(await checkPermissions(config));
  out.push(await checkEbsEncryption(config));
  out.push(...(await checkIdentityCertificates(config, o.localcloud, store.regions)));
  out.push(await checkAgentUrl(config));
  out.push(...(await checkEventsQueue(config)));
  out.push(...checkArtifacts(config));
  out.push(await checkAgentRuntime(config, dataDir));
  return out;
}

/** The Node.js runtime served to images without node: what the folder holds, each file checked by SHA-256. */
async function checkAgentRuntime(config: CoordinatorConfig, dataDir: string): Promise<CheckResult> {
  const check = "agent runtime";
  if (config.agentRuntime.hostNode && !config.agentRuntime.dir)
    return ok(check, `this host's node (Node.js ${process.version}) for linux-x64 and linux-arm64 (agentRuntime.hostNode: localcloud)`);
  const r = new AgentRuntimes(config.agentRuntime.dir ? resolve(config.agentRuntime.dir) : join(dataDir, "agent-runtime"));
  r.load();
  const s = await r.verify();
  const served = RUNTIME_ARCHES.filter((a) => s.served[a]);
  const missing = RUNTIME_ARCHES.filter((a) => !s.served[a]).map((a) => `linux-${a}`);
  const fix = `spotkeep runtime fetch --dir ${s.dir} (then restart the coordinator)`;
  if (!served.length)
    return warn(
      check,
      `none in ${s.dir}: an instance whose image has no Node.js 20.19+ cannot start the agent (${s.problems.join("; ")})`,
      fix,
    );
  const detail = `Node.js ${s.version} for ${served.map((a) => `linux-${a}`).join(", ")} from ${s.dir}`;
  return missing.length ? warn(check, `${detail}; none for ${missing.join(", ")} (${s.problems.join("; ")})`, fix) : ok(check, detail);
}

/** The SQLite store through a read-only connection: integrity, the WAL, the identity beside it. */
function checkStore(config: CoordinatorConfig, dataDir: string): { result: CheckResult; regions: string[] } {
  const name = "store";
  const none = (result: CheckResult) => ({ result, regions: [] });
  if (config.store)
    return none(
      warn(
        name,
        `PostgreSQL (${new URL(config.store.url).host}): not opened by doctor`,
        "the coordinator checks it at start; run `spotkeep status` against it once it runs",
      ),
    );
  const file = join(dataDir, STORE_FILE);
  const identityFile = join(dataDir, STORE_IDENTITY_FILE);
  const restore = `restore the latest backup (spotkeep restore-backup --data-dir ${dataDir} --from BACKUP_FILE)`;
  const side = (() => {
    try {
      return { ok: true as const, id: readStoreIdentity(identityFile) };
    } catch (err) {
      return { ok: false as const, err };
    }
  })();
  if (!side.ok) return none(fail(name, `${identityFile} cannot be read: ${message(side.err)}`, restore));
  if (!existsSync(file)) {
    if (side.id) return none(fail(name, `${file} is missing, but ${identityFile} says store ${side.id.storeId} was kept there`, restore));
    if (!existsSync(dataDir))
      return none(
        warn(
          name,
          `no store yet (${dataDir} does not exist)`,
          `the coordinator creates it at first start; its parent must be writable by it`,
        ),
      );
    return none(ok(name, `no store yet in ${dataDir}: the coordinator creates it at first start`));
  }
  try {
    const wal = inspectWal(`${file}-wal`);
    if (wal.state === "damaged") return none(fail(name, `the write-ahead log of ${file} is damaged (${wal.detail})`, restore));
    // A read-only connection to a WAL database creates the -wal and -shm files when they are
    // missing (a stopped coordinator), owned by whoever runs doctor: then a copy is checked instead.
    const walFile = `${file}-wal`;
    const copyDir = existsSync(walFile) && existsSync(`${file}-shm`) ? null : mkdtempSync(join(tmpdir(), "spotkeep-doctor-"));
    let checked = file;
    if (copyDir) {
      checked = join(copyDir, STORE_FILE);
      copyFileSync(file, checked);
      if (existsSync(walFile)) copyFileSync(walFile, `${checked}-wal`);
    }
    const db = openSqlite(checked, { readonly: !copyDir, fileMustExist: true, timeout: TIMEOUT_MS });
    try {
      const bytes = statSync(file).size;
      const check = bytes < 64 * 1024 * 1024 ? "integrity_check" : "quick_check";
      const problems = (db.pragma(`${check}(20)`) as Record<string, string>[]).map((r) => Object.values(r)[0]).filter((v) => v !== "ok");
      if (problems.length) return none(fail(name, `${file} is damaged (${check}: ${problems.slice(0, 3).join("; ")})`, restore));
      const found = storeIdentityOf(db);
      if (found && side.id && found.storeId !== side.id.storeId)
        return none(fail(name, `${file} is store ${found.storeId}, but ${identityFile} says ${side.id.storeId} was kept here`, restore));
      if (found && side.id && found.generation < side.id.generation)
        return none(
          fail(name, `${file} is generation ${found.generation}, older than the ${side.id.generation} recorded beside it`, restore),
        );
      const regions = new Set<string>();
      const hasInstances = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'instances'").get();
      if (hasInstances)
        for (const row of db.prepare("SELECT spec FROM instances").all() as Array<{ spec: string }>) {
          try {
            const r = (JSON.parse(row.spec) as { region?: unknown }).region;
            if (typeof r === "string") regions.add(r);
          } catch {
            // a spec the coordinator wrote is JSON; the integrity check above covers the rest
          }
        }
      const holder = readLockHolder(dataDir);
      const inUse = holder ? `, in use by a coordinator (pid ${holder.pid})` : "";
      return {
        result: ok(name, `${file}: ${check} ok, WAL ${wal.state}, store ${found?.storeId ?? "(no identity yet)"}${inUse}`),
        regions: [...regions],
      };
    } finally {
      db.close();
      if (copyDir) rmSync(copyDir, { recursive: true, force: true });
    }
  } catch (err) {
    return none(
      fail(
        name,
        `${file} cannot be opened: ${message(err)}`,
        `check the file's owner and mode (the coordinator's user, 0600), or ${restore}`,
      ),
    );
  }
}

/** DryRun every EC2 action the coordinator uses, with this host's credentials. */
async function checkPermissions(config: CoordinatorConfig): Promise<CheckResult> {
  const name = "permissions";
  try {
    const { createAwsGateway } = await import("../../coordinator/cloud/aws.js");
    const gw = createAwsGateway({ region: config.region, endpoint: config.ec2Endpoint, timeScale: config.timeScale, maxAttempts: 2 });
    const checks = await gw.checkPermissions!();
    const denied = checks.filter((c) => c.result === "denied").map((c) => `ec2:${c.action}`);
    const unreachable = checks.filter((c) => c.code === "network");
    if (denied.length)
      return fail(name, `EC2 denies ${denied.join(", ")}`, `attach ${POLICY} to the coordinator's role (or grant ${denied.join(", ")})`);
    if (unreachable.length === checks.length)
      return fail(
        name,
        `EC2 did not answer (${unreachable[0]?.message ?? "no answer"})`,
        "check the host's route to the EC2 endpoint and its credentials",
      );
    const allowed = checks.filter((c) => c.result === "allowed").length;
    return ok(
      name,
      `none of the ${checks.length} EC2 actions the coordinator uses is denied (${allowed} allowed by DryRun, the rest granted)`,
    );
  } catch (err) {
    return fail(
      name,
      `cannot ask EC2: ${message(err)}`,
      "check the host's credentials (instance profile) and its route to the EC2 endpoint",
    );
  }
}

/** The account's EBS encryption by default: what a spec that asks for no encryption (or no key) gets. */
async function checkEbsEncryption(config: CoordinatorConfig): Promise<CheckResult> {
  const name = "EBS encryption";
  try {
    const { createAwsGateway } = await import("../../coordinator/cloud/aws.js");
    const gw = createAwsGateway({ region: config.region, endpoint: config.ec2Endpoint, timeScale: config.timeScale, maxAttempts: 2 });
    const d = await gw.ebsDefaultEncryption!();
    return ok(
      name,
      d.enabled
        ? `on by default in ${config.region} (key ${d.kmsKeyId ?? "alias/aws/ebs"}): every new volume is encrypted, also with persistence.encryption off`
        : `off by default in ${config.region}: a volume is encrypted only when its spec sets persistence.encryption.encrypted (or its snapshot is)`,
    );
  } catch (err) {
    return warn(
      name,
      `cannot read the account's EBS encryption by default: ${message(err)}`,
      "grant ec2:GetEbsEncryptionByDefault and ec2:GetEbsDefaultKmsKeyId (docs/iam/coordinator-policy.json)",
    );
  }
}

/** The certificates that verify identity documents: of every region the coordinator manages, and every region a stored spec names. */
async function checkIdentityCertificates(
  config: CoordinatorConfig,
  localcloud: string | undefined,
  specRegions: string[],
): Promise<CheckResult[]> {
  const name = (region: string) => `identity certificate ${region}`;
  if (config.identityCertificate) {
    try {
      loadCertificate(config.identityCertificate);
      const what = config.identityCertificate.includes("-----BEGIN") ? "PEM text in the config" : config.identityCertificate;
      return [ok(name(config.region), `identityCertificate: ${what}`)];
    } catch (err) {
      return [fail(name(config.region), message(err), `point identityCertificate at AWS's RSA certificate for ${config.region}`)];
    }
  }
  if (!isAwsEc2(config.ec2Endpoint)) {
    const from = localcloud ?? config.ec2Endpoint!;
    try {
      loadCertificate(await fetchLocalcloudCertificate(from));
      return [ok(name(config.region), `localcloud's, from ${from}`)];
    } catch (err) {
      return [fail(name(config.region), message(err), `start localcloud at ${from}, or set identityCertificate`)];
    }
  }
  const managed = new Set([config.region, ...config.regions]);
  const regions = [...new Set([...managed, ...specRegions])].sort();
  return regions.map((region) => {
    const file = shippedCertificatePath(region);
    if (!file)
      return fail(
        name(region),
        `no certificate ships for ${region}`,
        `save AWS's RSA certificate for ${region} (EC2 user guide, "AWS public certificates") and set identityCertificate`,
      );
    try {
      loadCertificate(file);
    } catch (err) {
      return fail(name(region), `${file}: ${message(err)}`, "reinstall spotkeep (the shipped certificate is damaged)");
    }
    if (!managed.has(region))
      return warn(
        name(region),
        `a stored spec names ${region}, which is not one of this coordinator's regions (${[...managed].join(", ")})`,
        `add ${region} to the config's regions, or run a coordinator for it`,
      );
    return ok(name(region), `shipped ${file}`);
  });
}

/** publicUrl (or the listen address) from this host: DNS, then the agent bundle it serves. */
async function checkAgentUrl(config: CoordinatorConfig): Promise<CheckResult> {
  const name = "agent URL";
  const [host, port] = [config.listen.slice(0, config.listen.lastIndexOf(":")), config.listen.slice(config.listen.lastIndexOf(":") + 1)];
  const derived = `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${port}`;
  const base = (config.publicUrl ?? derived).replace(/\/+$/, "");
  let url: URL;
  try {
    url = new URL(`${base}/agent/v1/agent.js`);
  } catch (err) {
    return fail(name, `${base} is not a URL (${message(err)})`, "set publicUrl to http(s)://HOST:PORT");
  }
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  if (!isIP(hostname)) {
    try {
      await Promise.race([
        lookup(hostname),
        new Promise((_, reject) =>
          setTimeout(() => reject(Object.assign(new Error("timed out"), { code: "ETIMEOUT" })), TIMEOUT_MS).unref(),
        ),
      ]);
    } catch (err) {
      return fail(
        name,
        `${hostname} does not resolve (${(err as NodeJS.ErrnoException).code ?? message(err)})`,
        `add a DNS record for ${hostname}, or use an address in publicUrl`,
      );
    }
  }
  let bytes: Buffer;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!res.ok) {
      await res.body?.cancel();
      return fail(
        name,
        `${url.href} answered HTTP ${res.status}`,
        "point publicUrl at this coordinator (or the proxy that forwards /agent/v1/ to it)",
      );
    }
    bytes = Buffer.from(await res.arrayBuffer());
  } catch (err) {
    const c = (err as { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } }).cause;
    const cause = c?.code ?? c?.errors?.find((e) => e.code)?.code ?? c?.message ?? message(err);
    return fail(
      name,
      `${url.href} does not answer from this host (${cause})`,
      "start the coordinator (systemctl start spotkeep-coordinator), and make publicUrl an address of it that agents reach (its port open to them)",
    );
  }
  const local = bundlePath(config);
  const served = sha256(bytes);
  if (existsSync(local) && sha256(readFileSync(local)) !== served)
    return warn(
      name,
      `${url.origin} serves an agent bundle (sha256 ${served}) other than ${local}`,
      "restart the coordinator after upgrading spotkeep",
    );
  if (!config.publicUrl && (host === "127.0.0.1" || host === "localhost" || host === "::1"))
    return warn(
      name,
      `${url.origin} answers, but it is this host's loopback (no publicUrl): agents on other instances cannot reach it`,
      "set publicUrl to the address agents use (https://… behind a TLS proxy)",
    );
  return ok(name, `${url.origin} resolves and serves the agent bundle (sha256 ${served.slice(0, 16)}…)`);
}

/** events.queueUrl: the queue answers, and EventBridge rules send to it. */
async function checkEventsQueue(config: CoordinatorConfig): Promise<CheckResult[]> {
  if (!config.events)
    return [
      warn(
        "events queue",
        "no events.queueUrl: notices come from the agents only",
        "create the queue and its rules (deploy/spotkeep.cfn.yaml) and set events.queueUrl",
      ),
    ];
  const queueUrl = config.events.queueUrl;
  const region = config.events.region ?? config.region;
  let arn: string;
  try {
    const { createSqsQueue } = await import("../../coordinator/events/sqs.js");
    const q = createSqsQueue({ queueUrl, region });
    try {
      arn = (await q.attributes()).QueueArn ?? "";
    } finally {
      q.close();
    }
    if (!arn) return [fail("events queue", `${queueUrl} has no QueueArn`, "check events.queueUrl")];
  } catch (err) {
    const gone = /NonExistentQueue|QueueDoesNotExist/.test(errName(err) + message(err));
    return [
      fail(
        "events queue",
        gone ? `${queueUrl} does not exist` : `${queueUrl}: ${message(err)}`,
        gone
          ? "create it with its rules (deploy/spotkeep.cfn.yaml, or the CloudFormation in docs/deploy-aws.md) or correct events.queueUrl"
          : `grant the ConsumeInterruptionQueue statement of ${POLICY} and check the queue URL`,
      ),
    ];
  }
  const queue = ok("events queue", `${queueUrl} exists (${arn})`);
  const local = !/(^|\.)amazonaws\.com(\.cn)?$/.test(new URL(queueUrl).hostname);
  const client = new EventBridgeClient({
    region,
    ...(local ? { endpoint: new URL(queueUrl).origin } : {}),
    ...(local && !process.env.AWS_ACCESS_KEY_ID ? { credentials: { accessKeyId: "spotkeep", secretAccessKey: "spotkeep" } } : {}),
    maxAttempts: 2,
  });
  try {
    const names: string[] = [];
    let NextToken: string | undefined;
    for (let page = 0; page < 10; page++) {
      const r = await client.send(new ListRuleNamesByTargetCommand({ TargetArn: arn, NextToken }), {
        abortSignal: AbortSignal.timeout(TIMEOUT_MS),
      });
      names.push(...(r.RuleNames ?? []));
      NextToken = r.NextToken;
      if (!NextToken) break;
    }
    if (!names.length)
      return [
        queue,
        fail(
          "events rules",
          `no EventBridge rule sends to ${arn}`,
          "create the rules (deploy/spotkeep.cfn.yaml, or the CloudFormation in docs/deploy-aws.md) with the queue as their target",
        ),
      ];
    return [queue, ok("events rules", `${names.length} rule${names.length > 1 ? "s" : ""} send to it: ${names.join(", ")}`)];
  } catch (err) {
    if (/AccessDenied/.test(errName(err)))
      return [
        queue,
        warn(
          "events rules",
          `not allowed to list the rules that target ${arn} (${message(err)})`,
          "run doctor with credentials allowed events:ListRuleNamesByTarget (the coordinator itself does not need it)",
        ),
      ];
    return [queue, fail("events rules", `EventBridge: ${message(err)}`, "check the host's route to EventBridge and its credentials")];
  } finally {
    client.destroy();
  }
}

function bundlePath(config: CoordinatorConfig): string {
  return config.agentBundlePath ? resolve(config.agentBundlePath) : agentBundlePath();
}

/** The agent bundle the coordinator serves, and the Node.js runtime on this host, with their SHA-256. */
function checkArtifacts(config: CoordinatorConfig): CheckResult[] {
  const out: CheckResult[] = [];
  const file = bundlePath(config);
  try {
    const bytes = readFileSync(file);
    out.push(ok("agent bundle", `${file}: ${bytes.length} bytes, sha256 ${sha256(bytes)}`));
  } catch (err) {
    out.push(
      fail(
        "agent bundle",
        `${file}: ${(err as NodeJS.ErrnoException).code ?? message(err)}`,
        config.agentBundlePath ? "correct agentBundlePath" : "install a spotkeep release with its dist/ (or run npm run build in a clone)",
      ),
    );
  }
  try {
    const bytes = readFileSync(process.execPath);
    const major = Number(process.versions.node.split(".")[0]);
    const line = `${process.execPath}: Node.js ${process.version}, sha256 ${sha256(bytes)}`;
    out.push(major >= 20 ? ok("runtime", line) : fail("runtime", line, "install Node.js 22 LTS"));
  } catch (err) {
    out.push(fail("runtime", `${process.execPath}: ${message(err)}`, "reinstall Node.js"));
  }
  return out;
}
