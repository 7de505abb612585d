/**
 * Crash test of import: the coordinator process is SIGKILLed right after each step of the import
 * runbook is recorded, every step of it (test/support/crash-matrix.ts), in one run of the import:
 * killed after step 1, started again, killed after step 2, ... then started unarmed
 * (test/support/crash-chain.ts). The import is of one on-demand instance, launched by hand with a
 * workload that writes numbered, fsync'd records to its data volume. The run must end with exactly
 * one instance serving (generation 1; the original terminated), the original data volume and ENI
 * (nothing orphaned, nothing else created), only generation 1's root volume left, and every
 * acknowledged record on the volume.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EC2Client, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { adminApi, coordinatorSlot, killAll, reachState, type Slot, startCoordinatorCli } from "./coordinator-process.js";
import { AGENT_RECONNECT_CAP_MS, budget, plus, runbookModel, runbookSteps } from "../support/budgets.js";
import { crashAtEveryStep } from "../support/crash-chain.js";
import { crashCases } from "../support/crash-matrix.js";
import { crashCaseEvidence, withEvidence } from "../support/evidence.js";
import { PROFILES } from "../../localcloud/profiles.js";
import {
  COORDINATOR_POLICY,
  ensureAgentBundle,
  liveInstances,
  readAcks,
  readRecords,
  STOP_WRITER,
  startEnv,
  terminateCaseInstances,
  until,
  workloadUserData,
  type Env,
} from "./harness.js";

/**
 * A coordinator's restart (about a second of real time on a loaded machine) is model time too: at
 * 0.2 it is a few model seconds, as it is in the field (at 0.03 it would be half a model minute),
 * so the chain's many restarts do not stretch the import's model time far beyond a field run's.
 */
const SCALE = 0.2;
/** Every step of the import (test/support/crash-matrix.ts). */
const CASES = crashCases("import");

// What each phase may take (test/support/budgets.ts): the import's spec keeps the root (as an
// image) and the one data volume, with the 30 s default hooks.
const SHAPE = { hooksTimeoutSeconds: 30, root: true };
const P = PROFILES.realistic;
/** The original, launched with its data volume, until it runs. */
const ORIGINAL = budget({
  scale: SCALE,
  model: { "launch call": P.runInstancesCall, "create volume": P.createVolume, "pending → running": P.pendingToRunning },
  starts: { localcloud: 1 },
});
/** The original's workload boots and acknowledges its first records. */
const RECORDS = budget({ scale: SCALE, model: { boot: P.bootToUserData }, starts: { workload: 1 } });
/** One kill, or the end after the last: the agent finds the new coordinator, and the rest of the import (at most all of it). */
const RECOVERED = budget({
  scale: SCALE,
  model: { "agent reconnect": AGENT_RECONNECT_CAP_MS, ...runbookModel("import", SHAPE) },
  steps: runbookSteps("import"),
  starts: { coordinator: 1, agent: 1 },
});
/** The original's root volume goes once the workflow has ended. */
const SETTLED = budget({ scale: SCALE, model: { "delete old root": runbookModel("import", SHAPE)["delete old root"]! } });

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();
/** The one original the chain imports, launched before it runs (with localcloud's policy briefly lifted, as a user would). */
let original: { instanceId: string; dataVolume: string; eniId: string; privateIp: string; acks: string };

const slot = (id: string) => coordinatorSlot(env, dir, id, SCALE);
const api = (s: Slot, method: string, path: string, body?: unknown) => adminApi(`http://127.0.0.1:${s.port}`).ok(method, path, body);

/** The harness workload, writing to the data volume through its device link until the agent mounts it at /data. */
function userData(acks: string): string {
  const [first, ...rest] = workloadUserData(acks).split("\n");
  return [first, 'D="$R/data"; [ -d "$D" ] || D="$SPOTKEEP_DEV_DIR/sdf"', ...rest]
    .join("\n")
    .replace('"$R/data/records.log"', '"$D/records.log"');
}

beforeAll(
  async () => {
    ensureAgentBundle();
    dir = mkdtempSync(join(tmpdir(), "spotkeep-crash-import-"));
    env = await startEnv(dir, SCALE);
    const sdk = new EC2Client({ endpoint: env.lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "x" } });
    const acks = join(dir, "import.acks");
    await env.control("DELETE", "iam/policy");
    try {
      const out = await sdk.send(
        new RunInstancesCommand({
          ImageId: env.lc.world.baseImageId,
          InstanceType: "m5.large",
          MinCount: 1,
          MaxCount: 1,
          SubnetId: env.subnets[0]!.id,
          UserData: Buffer.from(userData(acks)).toString("base64"),
          BlockDeviceMappings: [{ DeviceName: "/dev/sdf", Ebs: { VolumeSize: 1, VolumeType: "gp3", DeleteOnTermination: true } }],
        }),
      );
      const i = out.Instances![0]!;
      original = {
        instanceId: i.InstanceId!,
        dataVolume: "",
        eniId: i.NetworkInterfaces![0]!.NetworkInterfaceId!,
        privateIp: i.PrivateIpAddress!,
        acks,
      };
    } finally {
      sdk.destroy();
      await env.control("PUT", "iam/policy", JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")));
    }
    const inst = await until(
      `${original.instanceId} running`,
      async () => {
        const [i] = await env.ec2.describeInstances([original.instanceId]);
        return i?.state === "running" && i.volumes.some((v) => v.deviceName === "/dev/sdf") ? i : null;
      },
      ORIGINAL,
    );
    original.dataVolume = inst.volumes.find((v) => v.deviceName === "/dev/sdf")!.volumeId;
  },
  plus(budget({ scale: SCALE, starts: { "agent bundle build": 1 }, steps: { "RunInstances call": 1 } }), ORIGINAL).ms,
);

afterAll(async () => {
  killAll(children);
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("coordinator crash at every step boundary of import", () => {
  it("SIGKILL after each step of import in turn: one instance serving, the same volume and ENI, nothing orphaned, the data intact", {
    timeout: plus(RECORDS, ...CASES.map(() => RECOVERED), RECOVERED, SETTLED).ms,
  }, async (ctx) => {
    const name = "crash-import";
    const o = original;
    const s = await slot("import");
    const runs: Array<Awaited<ReturnType<typeof startCoordinatorCli>>> = [];
    const evidence = crashCaseEvidence({
      runs,
      call: (m, p) => adminApi(`http://127.0.0.1:${s.port}`).call(m, p),
      name,
      world: env.lc.world,
    });
    try {
      await withEvidence(ctx, import.meta.filename, evidence, async () => {
        await crashAtEveryStep({
          cases: CASES,
          runs,
          eachKill: RECOVERED,
          start: (crash, first) => startCoordinatorCli(s, { ownerDir: dir, children, crash, firstStart: first }),
          async begin() {
            await until("records to be acknowledged", () => readAcks(o.acks).length > 10, RECORDS);
            await api(s, "POST", "import", {
              instanceId: o.instanceId,
              name,
              overrides: { persistence: { volumes: [{ device: "/dev/sdf", mountPoint: "/data" }] }, hooks: { preStop: STOP_WRITER } },
            });
          },
        });
        const after = await reachState(`http://127.0.0.1:${s.port}`, name, "running", 1, RECOVERED);
        expect(after.privateIp).toBe(o.privateIp);
        expect(after.resources.volumes[0].volumeId).toBe(o.dataVolume);
        expect(after.resources.network.eniId).toBe(o.eniId);
        // One instance serving: generation 1; the original is gone; no duplicate launch.
        expect((await env.ec2.describeInstances([o.instanceId]))[0]?.state).toBe("terminated");
        expect((await liveInstances(env, name)).map((i) => i.instanceId)).toEqual([after.instanceId]);
        const gen1 = await env.ec2.findInstances({ "spotkeep:instance": name, "spotkeep:generation": "1" });
        expect(gen1.map((i) => i.instanceId)).toEqual([after.instanceId]);
        // Nothing orphaned: the one data volume (attached to generation 1), the one ENI, one root image,
        // and once the workflow ends only generation 1's root volume.
        const vol = await env.ec2.describeVolume(o.dataVolume);
        expect(vol?.attachments.map((a) => a.instanceId)).toEqual([after.instanceId]);
        const enis = [...env.lc.world.enis.values()].filter((e) => e.tags.get("spotkeep:instance") === name);
        expect(enis.map((e) => e.id)).toEqual([o.eniId]);
        const images = [...env.lc.world.images.values()].filter((i) => i.tags.get("spotkeep:instance") === name && i.state !== "failed");
        expect(images).toHaveLength(1);
        const roots = () =>
          [...env.lc.world.volumes.values()]
            .filter((v) => v.tags.get("spotkeep:instance") === name && v.tags.get("spotkeep:root") === "true")
            .filter((v) => v.state !== "deleted" && v.state !== "deleting")
            .map((v) => v.attachment?.instanceId ?? v.id);
        await until(
          "only generation 1's root volume",
          () => (JSON.stringify(roots()) === JSON.stringify([after.instanceId]) ? true : null),
          SETTLED,
        );
        // Every acknowledged record is on the data volume, as generation 1 sees it.
        const acked = readAcks(o.acks);
        const records = readRecords(join(env.rootDir(after.instanceId), "data", "records.log"));
        expect(acked.length).toBeGreaterThan(10);
        expect(acked.filter((x) => !records.has(x))).toEqual([]);
      });
    } finally {
      killAll(new Set(runs.map((r) => r.child)));
      await Promise.all(runs.map((r) => r.exited));
      await terminateCaseInstances(env, name);
      // The original carries the case's tags only once adopted: a chain that failed before may leave it running.
      await env.ec2.terminateInstance(o.instanceId).catch(() => undefined);
    }
  });
});
