/**
 * The demo scenario, the five-minute proof. Starts localcloud (process runtime, realistic profile,
 * time-scaled) and a coordinator on a temp data dir, creates a stateful instance whose workload
 * appends fsync'd, numbered records to its data volume, interrupts it like AWS would, follows the
 * recovery live and verifies what a user cares about: same private IP and ENI, same data volume,
 * root disk kept, no acknowledged write lost, and how long it all took against the profile's
 * critical-path lower bound.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAwsGateway } from "../../coordinator/cloud/aws.js";
import { startCoordinator } from "../../coordinator/service.js";
import { cutoverCriticalPath, PROFILES, replacementCriticalPath, startLocalCloud } from "../../localcloud/index.js";
import { CreateResponse, EventsResponse, InstanceDetail } from "../../shared/api.js";
import { ApiClient, CliError } from "../client.js";
import { followWorkflow } from "../follow.js";
import { agentBundlePath, packageRoot } from "../package-root.js";
import { type DemoResult, printReport } from "./report.js";
import { readFileText, readLines, STOP_WORKLOAD, saveInstanceLogs, workloadUserData } from "./workload.js";

const NAME = "demo-db";

export async function runDemo(opts: {
  timeScale: number;
  dataMethod: "reattach" | "snapshot";
  /** secondary: make-before-break (the stable ENI at device index 1; no root persistence). */
  network?: "primary" | "secondary";
  keep: boolean;
  json: boolean;
}): Promise<DemoResult> {
  // Progress goes to stderr with --json so stdout carries exactly one JSON object.
  const out = opts.json ? process.stderr : process.stdout;
  const secondary = opts.network === "secondary";
  const t0 = Date.now();
  const say = (msg: string) => out.write(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`);
  const agentBundle = agentBundlePath();
  if (!existsSync(agentBundle)) throw new CliError(`the agent bundle ${agentBundle} is missing: run npm run build (npm ci does it)`);

  const dir = mkdtempSync(join(tmpdir(), "spotkeep-demo-"));
  type Stoppable = { stop(): Promise<void> };
  const running: Stoppable[] = [];
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    // localcloud removes its instances on stop: with --keep, save their console logs first.
    if (opts.keep) saveInstanceLogs(join(dir, "localcloud", "instances"), join(dir, "logs"));
    for (const s of running.reverse()) await s.stop().catch(() => undefined);
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    else out.write(`kept ${dir} (coordinator database, instance console logs in logs/)\n`);
  };
  const onSignal = (sig: NodeJS.Signals) => {
    out.write(`\n${sig}: stopping the demo and cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    out.write(
      `spotkeep demo: ${NAME} through a spot interruption on localcloud (realistic profile, ` +
        `time scale ${opts.timeScale}: one model second takes ${opts.timeScale} s)\n\n`,
    );
    const lc = await startLocalCloud({
      port: 0,
      profile: "realistic",
      timeScale: opts.timeScale,
      runtime: "process",
      stateDir: join(dir, "localcloud"),
      throttle: true,
      log: () => undefined,
      // The least-privilege policy spotkeep ships, enforced: the demo shows it is sufficient.
      iamPolicy: join(packageRoot(), "docs", "iam", "coordinator-policy.json"),
    });
    running.push(lc);
    say(`localcloud up at ${lc.endpoint} (process runtime: instances are local processes, volumes are folders)`);
    say("IAM: localcloud enforces docs/iam/coordinator-policy.json on every EC2 call the coordinator makes");

    const coord = await startCoordinator({
      config: {
        listen: "127.0.0.1:0",
        dataDir: join(dir, "coordinator"),
        ec2Endpoint: lc.endpoint,
        identityCertificate: lc.certificatePem,
        timeScale: opts.timeScale,
        agentBundlePath: agentBundle,
        // localcloud's process runtime: every instance connects from this host's loopback address.
        agentSourceCheck: false,
        // The instances boot a stock image with no Node.js: the agent runs on the runtime the
        // coordinator serves (in localcloud, this host's own node).
        agentRuntime: { hostNode: true },
      },
    });
    running.push(coord);
    say(`coordinator up at ${coord.url} (SQLite store in ${join(dir, "coordinator")})`);
    const client = new ApiClient(coord.url, coord.adminToken);
    const ec2 = createAwsGateway({ region: "us-east-1", endpoint: lc.endpoint, pacingHeadroom: 0 });

    const subnet = [...lc.world.subnets.values()].sort((a, b) => a.az.localeCompare(b.az))[0]!;
    const acks = join(dir, "acks.log");
    const spec = {
      name: NAME,
      launch: {
        imageId: lc.world.stockImageIds.x86_64,
        instanceTypes: ["m6i.large", "m5.large"],
        subnetIds: [subnet.id],
        userData: workloadUserData(acks),
        tags: { app: "demo" },
      },
      persistence: {
        root: !secondary,
        volumes: [{ device: "/dev/sdf", sizeGiB: 1, type: "gp3", mountPoint: "/data", fsType: "ext4" }],
        dataMethod: opts.dataMethod,
        network: { privateIp: "same-eni", attach: secondary ? "secondary" : "primary" },
      },
      hooks: { preStop: STOP_WORKLOAD, timeoutSeconds: 30 },
    };
    say(
      secondary
        ? `creating ${NAME}: a 1 GiB data volume at /data (reattach), the stable private IP on a secondary ENI (make-before-break), spot`
        : `creating ${NAME}: root persistence, a 1 GiB data volume at /data (${opts.dataMethod}), same-ENI private IP, spot`,
    );
    say(
      `image: localcloud's stock ${lc.world.stockImageIds.x86_64} (no Node.js): the bootstrap downloads the coordinator's runtime for the agent`,
    );
    const created = await client.post("/api/v1/instances", JSON.stringify(spec), CreateResponse);
    const createWf = await followWorkflow(client, created.workflowId, { timeoutMs: 600_000, quiet: false, out, intervalMs: 200 });
    if (createWf.status !== "succeeded") throw new CliError(`creating ${NAME} failed: ${createWf.error ?? createWf.status}`);
    const before = await client.get(`/api/v1/instances/${NAME}`, InstanceDetail);
    const oldId = before.instanceId!;
    say(
      `${NAME} is running on ${oldId} (${before.instanceType}, ${before.availabilityZone}, ` +
        `${before.lifecycle}) at ${before.privateIp} via ${before.resources.network.eniId}, data on ${before.resources.volumes[0]?.volumeId}`,
    );

    await waitFor(() => readLines(acks).length >= 30, 120_000, "the workload to acknowledge its first records");
    say(
      `the workload has acknowledged ${readLines(acks).length} fsync'd records; AWS now reclaims ${oldId} (spot interruption notice, ` +
        `terminate in 120 model seconds)`,
    );
    const res = await fetch(`${lc.controlUrl}/instances/${oldId}/interrupt`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ action: "terminate", noticeSeconds: 120 }),
    });
    if (!res.ok) throw new CliError(`localcloud refused the interruption: ${res.status} ${await res.text()}`);
    const noticeAt = Date.now();

    const replaceId = await waitFor(
      async () => {
        const ev = await client.get(`/api/v1/instances/${NAME}/events`, EventsResponse);
        return ev.timelines.find((t) => t.kind !== "create")?.workflowId;
      },
      60_000,
      "the coordinator to start the replacement",
    );
    say(`notice seen; replacement workflow ${replaceId} started ${((Date.now() - noticeAt) / 1000).toFixed(1)} s after the notice`);
    const replaceWf = await followWorkflow(client, replaceId, { timeoutMs: 600_000, quiet: false, out, intervalMs: 200 });
    const after = await client.get(`/api/v1/instances/${NAME}`, InstanceDetail);
    const newId = after.instanceId;
    say(
      replaceWf.status === "succeeded"
        ? `${NAME} is back on ${newId} (generation ${after.generation})`
        : `the replacement ${replaceWf.status}: ${replaceWf.error}`,
    );

    // Verify against EC2 itself, not only the coordinator's records.
    const [inst] = newId ? await ec2.describeInstances([newId]) : [];
    // The stable ENI: the primary one (device index 0), or with --network secondary the one at index 1.
    const primaryEni = inst?.enis.find((e) => e.deviceIndex === (secondary ? 1 : 0))?.eniId ?? null;
    const stableIp = secondary
      ? ((before.resources.network.eniId ? await ec2.describeNetworkInterface(before.resources.network.eniId) : null)?.privateIp ?? null)
      : (inst?.privateIp ?? null);
    const oldVolume = before.resources.volumes[0]?.volumeId ?? null;
    const newVolume = after.resources.volumes[0]?.volumeId ?? null;
    const runtime = lc.runtime as unknown as { rootDir(id: string): string; logPath(id: string): string };
    const bootLog = (id: string | null) => (id ? readFileText(runtime.logPath(id)) : "");
    const root = newId ? runtime.rootDir(newId) : "";
    const records = join(root, "data", "records.log");
    let workloadResumed = false;
    if (newId && replaceWf.status === "succeeded") {
      workloadResumed = await waitFor(
        () => readFileText(records).includes(` ${newId} `),
        60_000,
        "the workload to write on the new generation",
      ).then(
        () => true,
        () => false,
      );
    }
    const acked = readLines(acks).map(Number);
    const found = new Set(readLines(records).map((l) => Number(/^record (\d+) /.exec(l)?.[1] ?? NaN)));
    const lost = acked.filter((n) => !found.has(n));
    const marker = readFileText(join(root, "etc", "demo-marker"));
    const events = await client.get(`/api/v1/instances/${NAME}/events`, EventsResponse);
    const timeline = events.timelines.find((t) => t.workflowId === replaceId) ?? null;
    const criticalPathSeconds = (secondary ? cutoverCriticalPath(PROFILES.realistic) : replacementCriticalPath(PROFILES.realistic)) / 1000;

    const result: DemoResult = {
      recovered: replaceWf.status === "succeeded" && after.state === "running" && !!inst && inst.state === "running",
      samePrivateIp: !!before.privateIp && stableIp === before.privateIp && after.privateIp === before.privateIp,
      sameEni: !!before.resources.network.eniId && primaryEni === before.resources.network.eniId,
      sameDataVolume: !!oldVolume && newVolume === oldVolume && !!inst?.volumes.some((v) => v.volumeId === oldVolume),
      sameRootDisk: secondary ? null : marker.includes(`first-boot ${oldId}`),
      workloadResumed,
      agentRuntime: {
        downloadedAtFirstBoot: /no Node\.js 20\.19\+ on the image: downloading Node\.js/.test(bootLog(oldId)),
        keptByReplacement: secondary ? null : /using Node\.js \S+ kept on the root disk/.test(bootLog(newId)),
      },
      acknowledgedWrites: acked.length,
      lostWrites: lost.length,
      downtimeSeconds: timeline?.downtimeSeconds ?? null,
      recoverySeconds: timeline?.recoverySeconds ?? null,
      criticalPathSeconds,
      downtimeOverCriticalPath: timeline?.downtimeSeconds != null ? round(timeline.downtimeSeconds / criticalPathSeconds, 3) : null,
      timeScale: opts.timeScale,
      dataMethod: opts.dataMethod,
      network: secondary ? "secondary" : "primary",
      realSeconds: round((Date.now() - t0) / 1000, 1),
      before: { instanceId: oldId, privateIp: before.privateIp, eniId: before.resources.network.eniId, volumeId: oldVolume },
      after: {
        instanceId: newId,
        privateIp: stableIp,
        eniId: primaryEni,
        volumeId: newVolume,
        generation: after.generation,
      },
      timeline,
    };
    printReport(out, result);
    return result;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }
}

async function waitFor<T>(f: () => T | Promise<T>, ms: number, what: string): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new CliError(`timed out after ${Math.round(ms / 1000)} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}
