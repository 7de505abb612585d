/**
 * EBS encryption end to end on localcloud (process runtime, real agent) under the IAM policy
 * spotkeep ships: an instance whose spec asks for a customer-managed KMS key (by alias) and a
 * larger root volume survives an interruption and a pause/resume; every volume, snapshot and image
 * it ever had is encrypted with that key, every generation's root has the spec's size, and every
 * acknowledged write is on the last generation. Create refuses a key KMS does not have (naming the
 * field) and update refuses a change of encryption.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSpec } from "../../shared/spec.js";
import type { Coordinator } from "../../coordinator/service.js";
import { TAG } from "../../coordinator/cloud/gateway.js";
import {
  COORDINATOR_POLICY,
  ensureAgentBundle,
  type Env,
  inProcessCoordinator,
  readAcks,
  readRecords,
  startEnv,
  until,
} from "./harness.js";

const SCALE = 0.03;
let dir: string;
let env: Env;
let coord: Coordinator;
let key: { keyId: string; arn: string; alias: string };

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-encryption-"));
  env = await startEnv(dir, SCALE);
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE);
  key = await env.control("POST", "kms/keys", { alias: "alias/enc-db", description: "spotkeep test" });
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function encryptedSpec(name: string, encryption: Record<string, unknown>) {
  const s = env.spec(name, { acks: join(dir, `${name}.acks`) });
  return parseSpec({
    ...s,
    launch: { ...s.launch, rootVolume: { sizeGiB: 12, type: "gp3" } },
    persistence: { ...s.persistence, encryption },
  });
}

async function settle(name: string, kind: string, seen: Set<string>) {
  const wf = await until(`a ${kind} workflow`, async () =>
    (await coord.store.workflows.listFor(name)).find((w) => w.kind === kind && !seen.has(w.id)),
  );
  seen.add(wf.id);
  const done = await coord.engine.wait(wf.id);
  expect(done.error).toBeNull();
  expect(done.status).toBe("succeeded");
}

/** Every volume, snapshot and image EC2 holds for `name` (live or not yet deleted), as EC2 describes them. */
async function tagged(name: string) {
  const all = await env.ec2.findTagged!(TAG.instance);
  const mine = <T extends { tags: Record<string, string> }>(xs: T[]) => xs.filter((x) => x.tags[TAG.instance] === name);
  return { volumes: mine(all.volumes), snapshots: mine(all.snapshots), images: mine(all.images) };
}

describe("EBS encryption with a customer-managed key, under the shipped IAM policy", () => {
  it("every volume, snapshot and image of an interrupted, paused and resumed instance is encrypted with the spec's key", async () => {
    const name = "enc-db";
    const acks = join(dir, `${name}.acks`);
    const seen = new Set<string>();
    const everVolumes = new Set<string>();
    const everSnapshots = new Set<string>();
    const everImages = new Set<string>();
    const record = async () => {
      const t = await tagged(name);
      for (const v of t.volumes) {
        everVolumes.add(v.volumeId);
        expect({ id: v.volumeId, encrypted: v.encrypted, key: v.kmsKeyId }).toEqual({ id: v.volumeId, encrypted: true, key: key.arn });
      }
      for (const s of t.snapshots) {
        everSnapshots.add(s.snapshotId);
        expect({ id: s.snapshotId, encrypted: s.encrypted, key: s.kmsKeyId }).toEqual({ id: s.snapshotId, encrypted: true, key: key.arn });
      }
      for (const i of t.images) everImages.add(i.imageId);
      for (const i of t.images) {
        const root = i.rootSnapshotId ? await env.ec2.describeSnapshot(i.rootSnapshotId) : null;
        expect({ image: i.imageId, encrypted: root?.encrypted, key: root?.kmsKeyId }).toEqual({
          image: i.imageId,
          encrypted: true,
          key: key.arn,
        });
      }
    };
    const rootSize = async () => {
      const d = (await coord.views.getInstance(name))!;
      const [inst] = await env.ec2.describeInstances([d.instanceId!]);
      const rootId = inst!.volumes.find((v) => v.deviceName === "/dev/xvda")?.volumeId;
      return (await env.ec2.describeVolume(rootId!))?.sizeGiB;
    };

    await coord.views.createInstance(encryptedSpec(name, { encrypted: true, kmsKeyId: key.alias }));
    await settle(name, "create", seen);
    expect(await rootSize()).toBe(12);
    await record();
    await until("the workload to acknowledge records", () => readAcks(acks).length > 10);

    // An interruption: quiesce, root image, new generation on the same volumes.
    const first = (await coord.views.getInstance(name))!;
    await env.control("POST", `instances/${first.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    await settle(name, "replace", seen);
    expect((await coord.views.getInstance(name))!.generation).toBe(2);
    expect(await rootSize()).toBe(12);
    await record();

    // A data snapshot, then pause and resume.
    const snap = await coord.operations.run(name, "snapshot");
    expect((await coord.engine.wait(snap.workflowId)).status).toBe("succeeded");
    await record();
    const pause = await coord.operations.run(name, "pause");
    expect((await coord.engine.wait(pause.workflowId)).error).toBeNull();
    await record();
    const resume = await coord.operations.run(name, "resume");
    expect((await coord.engine.wait(resume.workflowId)).error).toBeNull();
    const last = (await coord.views.getInstance(name))!;
    expect(last.state).toBe("running");
    expect(last.generation).toBe(3);
    expect(await rootSize()).toBe(12);
    await record();
    expect(everVolumes.size).toBeGreaterThanOrEqual(3);
    expect(everSnapshots.size).toBeGreaterThanOrEqual(2);
    expect(everImages.size).toBeGreaterThanOrEqual(1);

    // No acknowledged write lost across the three generations.
    const root = env.rootDir(last.instanceId!);
    // Acks first: the writer is still running, and a record is on disk before its ack is written.
    const acked = readAcks(acks);
    const records = readRecords(join(root, "data", "records.log"));
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
    expect(readFileSync(join(root, "etc", "spotkeep-marker"), "utf8")).toContain(`first-boot ${first.instanceId}`);

    // A change of key is refused, naming the field; nothing changes.
    await expect(coord.operations.update(name, encryptedSpec(name, { encrypted: true }), { recycle: false })).rejects.toThrow(
      /persistence\.encryption: cannot change/,
    );
  });

  it("refuses a key KMS does not have, and one that is disabled, naming the field, before recording anything", async () => {
    await expect(
      coord.views.createInstance(encryptedSpec("enc-nokey", { encrypted: true, kmsKeyId: "alias/no-such-key" })),
    ).rejects.toThrow(/persistence\.encryption\.kmsKeyId: KMS has no key alias\/no-such-key in us-east-1/);
    const off = await env.control("POST", "kms/keys", { alias: "alias/enc-off" });
    env.lc.world.kms.keys.get(off.keyId)!.state = "Disabled";
    await expect(coord.views.createInstance(encryptedSpec("enc-off", { encrypted: true, kmsKeyId: "alias/enc-off" }))).rejects.toThrow(
      /persistence\.encryption\.kmsKeyId: arn:aws:kms:us-east-1:\d{12}:key\/[0-9a-f-]+ is Disabled, not Enabled/,
    );
    expect(await coord.views.getInstance("enc-nokey")).toBeNull();
    expect(await coord.views.getInstance("enc-off")).toBeNull();
  });

  it("without the policy's statements that let EC2 use the key, create fails saying which KMS permissions EC2 lacked", async () => {
    const policy = JSON.parse(readFileSync(COORDINATOR_POLICY, "utf8")) as { Statement: Array<{ Sid?: string }> };
    policy.Statement = policy.Statement.filter((st) => st.Sid !== "LetEc2GrantItselfKmsKeysForEbs");
    const file = join(dir, "policy-without-create-grant.json");
    writeFileSync(file, JSON.stringify(policy));
    const env2 = await startEnv(join(dir, "no-grant"), SCALE, { iamPolicy: file });
    const coord2 = await inProcessCoordinator(env2, join(dir, "no-grant", "coord"), SCALE);
    try {
      const k = await env2.control("POST", "kms/keys", { alias: "alias/enc-nogrant" });
      const s = env2.spec("enc-nogrant", { workload: false });
      const { workflowId } = await coord2.views.createInstance(
        parseSpec({ ...s, persistence: { ...s.persistence, encryption: { encrypted: true, kmsKeyId: k.arn } } }),
      );
      const done = await coord2.engine.wait(workflowId);
      expect(done.status).toBe("failed");
      expect(done.error).toMatch(/vanished after CreateVolume: EC2 could not use the KMS key arn:aws:kms:.* lacks kms:CreateGrant/);
    } finally {
      await coord2.stop();
      await env2.stop();
    }
  });
});
