/**
 * Disaster recovery end to end on localcloud (process runtime, two regions, time-scaled) with the
 * real agent bundle and the workload of harness.ts: an instance in us-east-1 with
 * copyToRegions [us-west-2] and a persisted root has its writer stopped (so every acknowledged
 * record is in the snapshot that follows; a restore brings back what the latest copy holds), is
 * snapshotted and paused (its root becomes an image); once the copies are in us-west-2, `restore --region us-west-2` brings it back there. The
 * root marker of its first boot and every acknowledged record are on the new generation, which runs
 * in us-west-2 with a new private IP, and the timeline says so.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Coordinator } from "../../coordinator/service.js";
import { main } from "../../cli/main.js";
import { parseSpec } from "../../shared/spec.js";
import { type Env, ensureAgentBundle, inProcessCoordinator, readAcks, readRecords, startEnv, until } from "./harness.js";

const SCALE = 0.03;
const WEST = "us-west-2";
let dir: string;
let env: Env;
let coord: Coordinator;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-relocate-e2e-"));
  env = await startEnv(dir, SCALE, { regions: ["us-east-1", WEST] });
  coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE, { regions: [WEST] });
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The CLI in this process against the coordinator: exit code and output. */
async function cli(...args: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = "";
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await main([...args, "--url", coord.url, "--token", coord.adminToken]), stdout };
  } finally {
    process.stdout.write = write;
  }
}

describe("restore --region end to end (localcloud process runtime, two regions, real agent)", () => {
  it("brings the instance back in us-west-2 with its root and every acknowledged record; the IP changes", async () => {
    const name = "dr-e2e";
    const acks = join(dir, `${name}.acks`);
    const spec = { ...env.spec(name, { acks }), snapshots: { copyToRegions: [WEST] } };
    const created = await coord.views.createInstance(parseSpec(spec));
    expect((await coord.engine.wait(created.workflowId)).error).toBeNull();
    const first = (await coord.views.getInstance(name))!;
    await until("the workload to acknowledge records", () => readAcks(acks).length > 20, 60_000);

    // The workload stops writing (as its preStop hook does), so the snapshot holds every acknowledged record.
    const pid = Number(readFileSync(join(env.rootDir(first.instanceId!), "run", "writer.pid"), "utf8"));
    process.kill(pid, "SIGTERM");
    // Gone, or exited and not yet reaped (a zombie still answers signal 0).
    await until("the writer to exit", () => {
      try {
        process.kill(pid, 0);
        return /^State:\s*Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
      } catch {
        return true;
      }
    });
    expect((await cli("snapshot", name, "--wait")).code).toBe(0);
    expect((await cli("pause", name, "--wait")).code).toBe(0);
    const acked = readAcks(acks);
    expect(acked.length).toBeGreaterThan(20);
    const westWorld = env.lc.worldFor(WEST);
    await until(
      "the snapshot's and the root image's copies in us-west-2",
      async () => {
        const snaps = (await coord.store.artifacts.list(name, "snapshot-copy")).filter((c) => c.region === WEST);
        const images = (await coord.store.artifacts.list(name, "image-copy")).filter((c) => c.region === WEST);
        return (
          snaps.some((c) => westWorld.snapshots.get(c.id)?.state === "completed") &&
          images.some((c) => westWorld.images.get(c.id)?.state === "available")
        );
      },
      120_000,
      200,
    );

    const file = join(dir, "overrides.yaml");
    // Subnets whose CIDR differs from the old one's (both regions' default VPCs are 172.31.0.0/16): the new address must differ.
    const oldCidr = env.lc.world.subnets.get(env.lc.world.enis.get(first.resources.network.eniId!)!.subnetId)!.cidr;
    const subnets = [...westWorld.subnets.values()].filter((s) => s.cidr !== oldCidr).map((s) => s.id);
    writeFileSync(file, `launch:\n  subnetIds: [${subnets.join(", ")}]\n`);
    const out = await cli("restore", name, "--region", WEST, "-f", file, "--wait");
    expect(out.code).toBe(0);

    const after = (await coord.views.getInstance(name))!;
    expect(after.state).toBe("running");
    expect(westWorld.instances.get(after.instanceId!)?.state).toBe("running");
    expect(after.privateIp).not.toBe(first.privateIp);
    const root = env.rootDir(after.instanceId!);
    // The root came back through the image copy: the marker of the first boot is there.
    expect(readFileSync(join(root, "etc", "spotkeep-marker"), "utf8")).toContain(`first-boot ${first.instanceId}`);
    // Every record acknowledged before the restore is on the new generation's data volume (made from the copy).
    const records = readRecords(join(root, "data", "records.log"));
    expect(acked.filter((n) => !records.has(n))).toEqual([]);
    await until("the workload to write on the restored generation", () =>
      readFileSync(join(root, "data", "records.log"), "utf8").includes(after.instanceId!),
    );
    const events = await coord.store.events.list(name, 300);
    expect(events.find((e) => e.kind === "ip-changed")?.message).toContain(
      `${first.privateIp} in us-east-1 → ${after.privateIp} in ${WEST}`,
    );
    // Exactly one EC2 instance runs for it, in us-west-2.
    const live = [...env.lc.worlds.values()].flatMap((w) => [...w.instances.values()]).filter((i) => i.state === "running");
    expect(live.map((i) => i.id)).toEqual([after.instanceId]);
  });
});
