/**
 * Workflows recorded mid-way by the previous version finish after an upgrade. The previous version
 * wrote the bring-up and retire steps out in each runbook, under names of their own
 * (`delete-old-roots` in resume, `delete-root` and `terminate` in pause, `delete-original-root` in
 * import), and
 * neither the import nor the make-before-break cutover registered target groups. Each case stops
 * a coordinator (SIGKILL, right after a chosen step is recorded) and leaves the store exactly as
 * the previous version would have left it at that point: the same steps in the same order with
 * the same results, under the names it used, then starts the current version on it.
 *
 *  - pause and resume stopped right after their renamed root-deletion step: both finish;
 *  - an import with `loadBalancers` stopped right after `finish`: the current version registers
 *    generation 1 (nothing was recorded after `finish`, so it takes the new path);
 *  - a make-before-break cutover with `loadBalancers` stopped right after its quiesce, which the
 *    previous version ran without deregistering: it finishes without a deregistration it can no
 *    longer place before the quiesce, and registers the new generation.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DescribeTargetHealthCommand, ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STORE_FILE } from "../../coordinator/db/open.js";
import { openSqlite } from "../../coordinator/db/sqlite/driver.js";
import { budget, plus, runbookModel, runbookSteps } from "../support/budgets.js";
import { crashCaseEvidence, withEvidence } from "../support/evidence.js";
import { adminApi, coordinatorSlot, killAll, reachState, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import {
  COORDINATOR_POLICY,
  ensureAgentBundle,
  type Env,
  liveInstances,
  readAcks,
  readRecords,
  STOP_WRITER,
  startEnv,
  until,
} from "./harness.js";

const SCALE = 0.03;
const SHAPE = { hooksTimeoutSeconds: 30, root: true };
const HEALTH = { intervalSeconds: 5, healthyThreshold: 2 };
const run = (kind: Parameters<typeof runbookModel>[0], o: { root?: boolean; extra?: Record<string, number> } = {}) =>
  budget({
    scale: SCALE,
    model: { ...runbookModel(kind, { ...SHAPE, root: o.root ?? true }), ...o.extra },
    steps: runbookSteps(kind),
    starts: { coordinator: 1, agent: 1, workload: 1 },
  });
const CREATE = run("create");
const PAUSE = run("pause");
const RESUME = run("resume");
const IMPORT = run("import", { extra: { "turn healthy": 10_000 } });
const RECYCLE = run("replace-mbb", { root: false, extra: { "turn healthy": 10_000 } });

let dir: string;
let env: Env;
let elb: ElasticLoadBalancingV2Client;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-upgrade-"));
  env = await startEnv(dir, SCALE);
  elb = new ElasticLoadBalancingV2Client({
    endpoint: env.lc.endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "x", secretAccessKey: "x" },
    maxAttempts: 1,
  });
});
afterAll(async () => {
  killAll(children);
  elb?.destroy();
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const api = (s: Slot) => adminApi(`http://127.0.0.1:${s.port}`);

/**
 * The store of a stopped slot's coordinator, opened for `edit` and closed again. Closing folds the
 * write-ahead log of the killed coordinator into the database and removes it, so the next start
 * adopts the store deliberately (`acceptRestored`), as after any edit with another tool.
 */
function editStore(id: string, edit: (db: ReturnType<typeof openSqlite>) => void): void {
  const db = openSqlite(join(dir, `coord-${id}`, STORE_FILE));
  try {
    edit(db);
  } finally {
    db.close();
  }
}

/** Rename what step `seq` of `workflowId` was recorded as: the name the previous version used. */
function recordAs(id: string, workflowId: string, seq: number, from: string, to: string): void {
  editStore(id, (db) => {
    const r = db.prepare("UPDATE steps SET name = ? WHERE workflow_id = ? AND seq = ? AND name = ?").run(to, workflowId, seq, from);
    expect(r.changes, `step ${seq} of ${workflowId} recorded as ${from}`).toBe(1);
  });
}

async function stepNames(s: Slot, workflowId: string): Promise<string[]> {
  return (await api(s).ok("GET", `workflows/${workflowId}`)).steps.map((x: { name: string }) => x.name);
}

function targetGroup(name: string) {
  const g = env.lc.elbv2.createTargetGroup({
    name,
    protocol: "HTTP",
    port: 8080,
    vpcId: env.lc.world.defaultVpc().id,
    targetType: "instance",
    healthCheck: HEALTH,
  });
  g.deregistrationDelaySeconds = 10;
  return g;
}

async function targets(arn: string): Promise<Array<[string | undefined, string | undefined]>> {
  const out = await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn }));
  return (out.TargetHealthDescriptions ?? []).map((d) => [d.Target?.Id, d.TargetHealth?.State]);
}

/** Start the slot's coordinator armed to SIGKILL itself after step `n` of a `kind` workflow; `go` starts that workflow. */
async function stopAfter(
  s: Slot,
  o: {
    kind: string;
    n: number;
    firstStart?: boolean;
    acceptRestored?: boolean;
    runs: Array<Awaited<ReturnType<typeof startCoordinatorCli>>>;
  },
  go: () => Promise<void>,
  limit: { ms: number },
) {
  const c = await startCoordinatorCli(s, {
    ownerDir: dir,
    children,
    crash: { kind: o.kind, n: o.n },
    firstStart: o.firstStart,
    acceptRestored: o.acceptRestored,
  });
  o.runs.push(c);
  await go();
  const how = await Promise.race([c.exited, new Promise((r) => setTimeout(() => r("no-crash"), limit.ms))]);
  expect(how, c.log.join("")).toMatchObject({ signal: "SIGKILL" });
}

describe.concurrent("workflows recorded by the previous version finish after the upgrade", () => {
  it("pause stopped after `delete-root` and resume stopped after `delete-old-roots`: both finish; same IP, volume and data", {
    timeout: plus(CREATE, PAUSE, PAUSE, RESUME, RESUME).ms,
  }, async (ctx) => {
    const name = "upgrade-pause";
    const id = "pause";
    const s = await coordinatorSlot(env, dir, id, SCALE);
    const runs: Array<Awaited<ReturnType<typeof startCoordinatorCli>>> = [];
    const evidence = crashCaseEvidence({ runs, call: (m, p) => api(s).call(m, p), name, world: env.lc.world });
    try {
      await withEvidence(ctx, import.meta.filename, evidence, async () => {
        const acks = join(dir, `${name}.acks`);
        let pauseId = "";
        let before: { ip: string; eni: string; volume: string } | null = null;
        // pause: begin, quiesce, snapshot-root, terminate-old, wait-old-terminated, image, delete-old-root (7), finish
        await stopAfter(
          s,
          { kind: "pause", n: 7, firstStart: true, runs },
          async () => {
            await api(s).ok("POST", "instances", env.spec(name, { acks }));
            const created = await reachState(`http://127.0.0.1:${s.port}`, name, "running", 1, CREATE);
            before = { ip: created.privateIp, eni: created.resources.network.eniId, volume: created.resources.volumes[0].volumeId };
            await until("records to be acknowledged", () => readAcks(acks).length > 10, CREATE);
            pauseId = (await api(s).ok("POST", `instances/${name}/pause`)).workflowId;
          },
          plus(CREATE, PAUSE),
        );
        expect(before).toBeTruthy();
        recordAs(id, pauseId, 4, "terminate-old", "terminate");
        recordAs(id, pauseId, 5, "wait-old-terminated", "wait-terminated");
        recordAs(id, pauseId, 7, "delete-old-root", "delete-root");

        // resume: begin, subnets, launch, wait-running, attach /dev/sdf, restore, finish, delete-old-roots (8), retention
        let resumeId = "";
        await stopAfter(
          s,
          { kind: "resume", n: 8, acceptRestored: true, runs },
          async () => {
            const paused = await reachState(`http://127.0.0.1:${s.port}`, name, "paused", null, PAUSE);
            expect(paused.state).toBe("paused");
            expect(await stepNames(s, pauseId)).toEqual([
              "begin",
              "quiesce",
              "snapshot-root",
              "terminate",
              "wait-terminated",
              "image",
              "delete-root",
              "finish",
            ]);
            resumeId = (await api(s).ok("POST", `instances/${name}/resume`)).workflowId;
          },
          RESUME,
        );
        recordAs(id, resumeId, 8, "delete-old-root", "delete-old-roots");

        const current = await startCoordinatorCli(s, { ownerDir: dir, children, acceptRestored: true });
        runs.push(current);
        const after = await reachState(`http://127.0.0.1:${s.port}`, name, "running", 2, RESUME);
        const wf = await until(
          "the resume to succeed",
          async () => {
            const w = await api(s).ok("GET", `workflows/${resumeId}`);
            return w.status === "succeeded" ? w : null;
          },
          RESUME,
        );
        expect(wf.steps.map((x: { name: string }) => x.name).slice(-2)).toEqual(["delete-old-roots", "retention"]);
        expect(after.privateIp).toBe(before!.ip);
        expect(after.resources.network.eniId).toBe(before!.eni);
        expect(after.resources.volumes[0].volumeId).toBe(before!.volume);
        expect((await liveInstances(env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
        const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
        const records = readRecords(join(env.rootDir(after.instanceId), "data", "records.log"));
        expect(acked.filter((x) => !records.has(x))).toEqual([]);
      });
    } finally {
      for (const c of runs) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
    }
  });

  it("an import with loadBalancers stopped right after `finish` registers generation 1 after the upgrade", {
    timeout: plus(IMPORT, IMPORT).ms + 60_000,
  }, async (ctx) => {
    const name = "upgrade-import";
    const id = "import";
    const s = await coordinatorSlot(env, dir, id, SCALE);
    const group = targetGroup("upgrade-import-web");
    const runs: Array<Awaited<ReturnType<typeof startCoordinatorCli>>> = [];
    const evidence = crashCaseEvidence({ runs, call: (m, p) => api(s).call(m, p), name, world: env.lc.world });
    const sdk = new EC2Client({ endpoint: env.lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "x" } });
    try {
      await withEvidence(ctx, import.meta.filename, evidence, async () => {
        await env.control("DELETE", "iam/policy");
        let original: string;
        try {
          const out = await sdk.send(
            new RunInstancesCommand({
              ImageId: env.lc.world.baseImageId,
              InstanceType: "m5.large",
              MinCount: 1,
              MaxCount: 1,
              SubnetId: env.subnets[0]!.id,
              BlockDeviceMappings: [{ DeviceName: "/dev/sdf", Ebs: { VolumeSize: 1, VolumeType: "gp3", DeleteOnTermination: true } }],
            }),
          );
          original = out.Instances![0]!.InstanceId!;
        } finally {
          await env.control("PUT", "iam/policy", JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")));
        }
        await until(`${original} running`, async () => (await env.ec2.describeInstances([original]))[0]?.state === "running", IMPORT);
        // load, adopt, keep-volumes, keep-eni, stop, snapshot-root, image, terminate-original,
        // wait-original-terminated, subnets, launch, wait-running, attach /dev/sdf, restore, finish (15)
        let importId = "";
        await stopAfter(
          s,
          { kind: "import", n: 15, firstStart: true, runs },
          async () => {
            importId = (
              await api(s).ok("POST", "import", {
                instanceId: original,
                name,
                overrides: {
                  persistence: { volumes: [{ device: "/dev/sdf", mountPoint: "/data" }] },
                  hooks: { preStop: STOP_WRITER },
                  loadBalancers: { targetGroupArns: [group.arn], drainingSeconds: 30 },
                },
              })
            ).workflowId;
          },
          IMPORT,
        );
        // Up to `finish` the previous version recorded the same steps under the same names.
        expect(await targets(group.arn)).toEqual([]);

        const current = await startCoordinatorCli(s, { ownerDir: dir, children });
        runs.push(current);
        const wf = await until(
          "the import to succeed",
          async () => {
            const w = await api(s).ok("GET", `workflows/${importId}`);
            if (w.status === "failed") throw new Error(`the import failed: ${w.error}`);
            return w.status === "succeeded" ? w : null;
          },
          IMPORT,
        );
        const names = wf.steps.map((x: { name: string }) => x.name);
        expect(names.slice(names.indexOf("finish"))).toEqual([
          "finish",
          "register-targets",
          "wait-targets-healthy",
          "delete-old-root",
          "retention",
        ]);
        const d = await api(s).ok("GET", `instances/${name}`);
        expect(await targets(group.arn)).toEqual([[d.instanceId, "healthy"]]);
      });
    } finally {
      sdk.destroy();
      for (const c of runs) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
    }
  });

  it("a make-before-break cutover with loadBalancers stopped after its quiesce (no deregistration recorded) finishes and registers the new generation", {
    timeout: plus(CREATE, RECYCLE, RECYCLE).ms,
  }, async (ctx) => {
    const name = "upgrade-mbb";
    const id = "mbb";
    const s = await coordinatorSlot(env, dir, id, SCALE);
    const group = targetGroup("upgrade-mbb-web");
    const runs: Array<Awaited<ReturnType<typeof startCoordinatorCli>>> = [];
    const evidence = crashCaseEvidence({ runs, call: (m, p) => api(s).call(m, p), name, world: env.lc.world });
    try {
      await withEvidence(ctx, import.meta.filename, evidence, async () => {
        const acks = join(dir, `${name}.acks`);
        const base = env.spec(name, { root: false, acks });
        const spec = { ...base, persistence: { ...base.persistence, network: { privateIp: "same-eni", attach: "secondary" } } };
        // recycle (make-before-break): begin, mbb-subnets, mbb-launch, mbb-wait-ready, cutover-quiesce (5)
        let recycleId = "";
        let before: { instanceId: string; privateIp: string } | null = null;
        await stopAfter(
          s,
          { kind: "recycle", n: 5, firstStart: true, runs },
          async () => {
            await api(s).ok("POST", "instances", spec);
            before = await reachState(`http://127.0.0.1:${s.port}`, name, "running", 1, CREATE);
            await until("records to be acknowledged", () => readAcks(acks).length > 10, CREATE);
            recycleId = (await api(s).ok("POST", `instances/${name}/recycle`)).workflowId;
          },
          plus(CREATE, RECYCLE),
        );
        // The previous version recorded a spec with loadBalancers, and ran the cutover up to its
        // quiesce without deregistering: the same steps and results as here, with that spec.
        const lb = { targetGroupArns: [group.arn], drainingSeconds: 30 };
        editStore(id, (db) => {
          const row = db.prepare("SELECT result FROM steps WHERE workflow_id = ? AND seq = 1 AND name = 'begin'").get(recycleId) as {
            result: string;
          };
          const begin = JSON.parse(row.result);
          begin.spec.loadBalancers = lb;
          db.prepare("UPDATE steps SET result = ? WHERE workflow_id = ? AND seq = 1").run(JSON.stringify(begin), recycleId);
          const inst = db.prepare("SELECT spec FROM instances WHERE name = ?").get(name) as { spec: string };
          db.prepare("UPDATE instances SET spec = ? WHERE name = ?").run(
            JSON.stringify({ ...JSON.parse(inst.spec), loadBalancers: lb }),
            name,
          );
        });

        const current = await startCoordinatorCli(s, { ownerDir: dir, children, acceptRestored: true });
        runs.push(current);
        const wf = await until(
          "the recycle to succeed",
          async () => {
            const w = await api(s).ok("GET", `workflows/${recycleId}`);
            if (w.status === "failed") throw new Error(`the recycle failed: ${w.error}`);
            return w.status === "succeeded" ? w : null;
          },
          RECYCLE,
        );
        const names: string[] = wf.steps.map((x: { name: string }) => x.name);
        expect(names).not.toContain("deregister-targets");
        expect(names.slice(names.indexOf("finish"), names.indexOf("finish") + 3)).toEqual([
          "finish",
          "register-targets",
          "wait-targets-healthy",
        ]);
        const after = await reachState(`http://127.0.0.1:${s.port}`, name, "running", 2, RECYCLE);
        expect(after.privateIp).toBe(before!.privateIp);
        expect(await targets(group.arn)).toEqual([[after.instanceId, "healthy"]]);
        await until("the old instance to terminate", async () => (await liveInstances(env, name)).length === 1, RECYCLE);
        const acked = readAcks(acks); // acks first: a record is on disk before its ack is written
        const records = readRecords(join(env.rootDir(after.instanceId), "data", "records.log"));
        expect(acked.filter((x) => !records.has(x))).toEqual([]);
      });
    } finally {
      for (const c of runs) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
    }
  });
});
