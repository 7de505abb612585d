/**
 * `spotkeep restore NAME --region R` (a relocate), in process (test/support/in-process.ts: localcloud
 * serving us-east-1 and us-west-2 without a runtime, the coordinator managing both, fake agents):
 * what it refuses (state, region, missing regional overrides, missing copies) without changing
 * anything, and a paused instance with copyToRegions brought back in us-west-2 from its copies
 * there: data volume and root from the copies, a new ENI and private IP (the timeline says so),
 * the old region's resources kept and untouched, then managed in us-west-2 (pause, resume, delete);
 * a failed instance brought back; a restore that fails there continued by resume; an instance
 * encrypted with a customer key back with every volume under the us-west-2 key its overrides name.
 * What only a real workload shows (the records and the root marker on the restored generation) is
 * test/coordinator/relocate-e2e.test.ts.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseSpec } from "../../shared/spec.js";
import { type InProcess, startInProcess } from "../support/in-process.js";
import { until } from "./harness.js";

let h: InProcess;
beforeAll(async () => {
  h = await startInProcess({
    prefix: "spotkeep-inproc-relocate-",
    regions: ["us-east-1", "us-west-2"],
    config: { regions: ["us-west-2"] },
  });
});
afterAll(async () => {
  await h?.stop();
});

const WEST = "us-west-2";
const west = () => h.env.lc.worldFor(WEST);
/** us-west-2's subnets whose CIDR differs from `eniId`'s (both regions' default VPCs are 172.31.0.0/16): a new address differs. */
const westSubnets = (eniId: string) => {
  const cidr = h.env.lc.world.subnets.get(h.env.lc.world.enis.get(eniId)!.subnetId)!.cidr;
  return [...west().subnets.values()].filter((s) => s.cidr !== cidr).map((s) => s.id);
};

/** Every data snapshot and root image of `name` has a completed / available copy in us-west-2. */
async function copiesDone(name: string): Promise<boolean> {
  const store = h.coord.store;
  const snaps = await store.artifacts.list(name, "data-snapshot");
  const images = await store.artifacts.list(name, "image");
  const snapCopies = (await store.artifacts.list(name, "snapshot-copy")).filter((c) => c.region === WEST);
  const imageCopies = (await store.artifacts.list(name, "image-copy")).filter((c) => c.region === WEST);
  if (snaps.length === 0 || images.length === 0) return false;
  if (!snaps.every((s) => snapCopies.some((c) => c.sourceId === s.id))) return false;
  if (!images.every((s) => imageCopies.some((c) => c.sourceId === s.id))) return false;
  return (
    snapCopies.every((c) => west().snapshots.get(c.id)?.state === "completed") &&
    imageCopies.every((c) => west().images.get(c.id)?.state === "available")
  );
}

describe("restore --region (relocate)", () => {
  it("brings a paused instance back in us-west-2 from its copies, with a new ENI and IP; refusals change nothing", async () => {
    const name = "dr";
    const spec = { ...h.spec(name), snapshots: { copyToRegions: [WEST], consistency: "crash" } };
    const created = await h.coord.views.createInstance(parseSpec(spec));
    expect((await h.coord.engine.wait(created.workflowId)).error).toBeNull();
    const overrides = { launch: { subnetIds: westSubnets((await h.coord.views.getInstance(name))!.resources.network.eniId!) } };

    // Running: refused by state.
    const running = await h.api("POST", `instances/${name}/restore`, { region: WEST, overrides });
    expect(running.status, JSON.stringify(running.body)).toBe(409);
    expect(running.body.error.message).toBe("dr is running; relocate is allowed from paused, failed");

    expect((await h.cli("snapshot", name, "--wait")).code).toBe(0);
    const before = (await h.coord.views.getInstance(name))!;
    expect((await h.cli("pause", name, "--wait")).code).toBe(0);
    await until("copies of the snapshot and the root image in us-west-2", () => copiesDone(name), 60_000, 100);

    // Refusals, each naming the field; nothing changes.
    const counts = await h.coord.store.counts();
    const refused = async (body: unknown, status: number, message: string | RegExp) => {
      const r = await h.api("POST", `instances/${name}/restore`, body);
      expect(r.status, JSON.stringify(r.body)).toBe(status);
      if (typeof message === "string") expect(r.body.error.message).toBe(message);
      else expect(r.body.error.message).toMatch(message);
    };
    await refused(
      { region: "eu-west-1", overrides },
      400,
      "region: eu-west-1 is not a region this coordinator manages (us-east-1, us-west-2)",
    );
    await refused({ region: "us-east-1", overrides }, 400, /^region: dr is in us-east-1 already/);
    await refused({ region: WEST }, 400, /^overrides\.launch\.subnetIds: is required: subnets are regional; give subnets of us-west-2/);
    await refused(
      { region: WEST, overrides: { launch: { subnetIds: (before.spec as { launch: { subnetIds: string[] } }).launch.subnetIds } } },
      400,
      /^launch\.subnetIds: subnet-\w+.* not exist in us-west-2$/,
    );
    await refused({ region: WEST, overrides, extra: 1 }, 400, "body.extra: unknown field (allowed: region, overrides)");
    await refused(
      { region: WEST, overrides: { ...overrides, persistence: { volumes: [{ device: "/dev/sdz", sizeGiB: 2 }] } } },
      400,
      /overrides\.persistence\.volumes\[0\]\.device: \/dev\/sdz is not a data volume of the instance \(it has: \/dev\/sdf\)/,
    );
    expect(await h.coord.store.counts()).toEqual(counts);
    expect((await h.coord.store.instances.get(name))!.spec.region).toBe("us-east-1");

    // The restore.
    const file = join(h.dir, "overrides.json");
    writeFileSync(file, JSON.stringify(overrides));
    const out = await h.cli("restore", name, "--region", WEST, "-f", file, "--wait");
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`${name} is running in ${WEST}`);

    const after = (await h.coord.views.getInstance(name))!;
    expect(after.state).toBe("running");
    expect((after.spec as { region: string }).region).toBe(WEST);
    expect((after.spec as { snapshots: { copyToRegions: unknown[] } }).snapshots.copyToRegions).toEqual([]);
    expect(after.generation).toBe(before.generation + 1);
    expect(west().instances.get(after.instanceId!)?.state).toBe("running");
    const copies = (await h.coord.store.artifacts.list(name, "data-snapshot")).map((a) => a.id);
    const vol = west().volumes.get(after.resources.volumes[0]!.volumeId!)!;
    expect(vol).toBeDefined();
    expect(copies).toContain(vol.snapshotId);
    expect(west().images.has(after.resources.root.imageId!)).toBe(true);
    // A new ENI and address in us-west-2; the timeline says the IP changed.
    expect(after.resources.network.eniId).not.toBe(before.resources.network.eniId);
    expect(west().enis.has(after.resources.network.eniId!)).toBe(true);
    expect(after.privateIp).not.toBe(before.privateIp);
    const events = await h.coord.store.events.list(name, 200);
    expect(events.find((e) => e.kind === "ip-changed")?.message).toContain(
      `${before.privateIp} in us-east-1 → ${after.privateIp} in ${WEST}`,
    );
    // The old region's volume and ENI are kept, untouched, and no longer the instance's.
    const kept = (await h.coord.store.deletions.kept(name)).map((k) => k.resourceId);
    expect(kept).toEqual(expect.arrayContaining([before.resources.volumes[0]!.volumeId!, before.resources.network.eniId!]));
    expect((await h.coord.store.deletions.kept(name)).every((k) => k.expiresAt === null)).toBe(true);
    const described = (await h.api("GET", `instances/${name}`)).body as { kept: Array<{ resourceId: string; expiresAt: string | null }> };
    expect(described.kept.map((k) => k.resourceId)).toEqual(expect.arrayContaining(kept));
    expect(described.kept.every((k) => k.expiresAt === null)).toBe(true);
    expect(h.env.lc.world.volumes.get(before.resources.volumes[0]!.volumeId!)?.state).toBe("available");
    expect(h.env.lc.world.enis.has(before.resources.network.eniId!)).toBe(true);
    // One live generation, in us-west-2.
    const live = [...h.env.lc.worlds.values()].flatMap((w) => [...w.instances.values()]).filter((i) => i.state === "running");
    expect(live.map((i) => i.id)).toEqual([after.instanceId]);

    // Managed in us-west-2 like any other: pause and resume there.
    expect((await h.cli("pause", name, "--wait")).code).toBe(0);
    expect((await h.cli("resume", name, "--wait")).code).toBe(0);
    const resumed = (await h.coord.views.getInstance(name))!;
    expect(resumed.state).toBe("running");
    expect(west().instances.get(resumed.instanceId!)?.state).toBe("running");
    expect(resumed.privateIp).toBe(after.privateIp);
    // And deleted there: its us-west-2 volume goes; what it kept in us-east-1 stays.
    const westVolume = resumed.resources.volumes[0]!.volumeId!;
    expect((await h.cli("delete", name, "--wait")).code).toBe(0);
    expect(["deleted", undefined]).toContain(west().volumes.get(westVolume)?.state);
    expect(h.env.lc.world.volumes.get(before.resources.volumes[0]!.volumeId!)?.state).toBe("available");
  });

  it("refuses what is regional and missing from the overrides, and a region without copies, naming each; changes nothing", async () => {
    const name = "dr-bare";
    const east = h.env.lc.world;
    const eastSg = [...east.securityGroups.values()][0]!.id;
    const eastKey = (await h.env.control("POST", "kms/keys", { region: "us-east-1", description: "east key" })).arn as string;
    const base = h.spec(name);
    const spec = {
      ...base,
      launch: { ...base.launch, securityGroupIds: [eastSg] },
      persistence: { ...base.persistence, encryption: { encrypted: true, kmsKeyId: eastKey } },
    };
    const created = await h.coord.views.createInstance(parseSpec(spec));
    expect((await h.coord.engine.wait(created.workflowId)).error).toBeNull();
    expect((await h.cli("pause", name, "--wait")).code).toBe(0);
    const counts = await h.coord.store.counts();
    const subnetIds = westSubnets((await h.coord.views.getInstance(name))!.resources.network.eniId!);

    const r1 = await h.api("POST", `instances/${name}/restore`, { region: WEST, overrides: { launch: { subnetIds } } });
    expect(r1.status, JSON.stringify(r1.body)).toBe(400);
    expect(r1.body.error.message).toContain("overrides.launch.securityGroupIds: is required: security groups are regional");
    expect(r1.body.error.message).toContain(
      "overrides.persistence.encryption.kmsKeyId: is required: the volumes are encrypted with a key of us-east-1; EBS in us-west-2 needs a key of us-west-2",
    );

    const westSg = [...west().securityGroups.values()][0]!.id;
    const westKey = (await h.env.control("POST", "kms/keys", { region: WEST, description: "west key" })).arn as string;
    const regional = { launch: { subnetIds, securityGroupIds: [westSg] }, persistence: { encryption: { kmsKeyId: westKey } } };
    const r2 = await h.api("POST", `instances/${name}/restore`, { region: WEST, overrides: regional });
    expect(r2.status, JSON.stringify(r2.body)).toBe(400);
    expect(r2.body.error.message).toMatch(/^region: us-west-2 has no completed copy of \/dev\/sdf /);

    // A volume field that describes the data is not the overrides' to set.
    const r3 = await h.api("POST", `instances/${name}/restore`, {
      region: WEST,
      overrides: {
        ...regional,
        persistence: { ...regional.persistence, volumes: [{ device: "/dev/sdf", volumeId: "vol-0123456789abcdef0" }] },
      },
    });
    expect(r3.status, JSON.stringify(r3.body)).toBe(400);
    expect(r3.body.error.message).toContain("overrides.persistence.volumes[0].volumeId: is not a volume field a restore can set");
    expect(await h.coord.store.counts()).toEqual(counts);
    expect((await h.coord.views.getInstance(name))!.state).toBe("paused");
  });

  it("with persistence.root and no root image copy, needs launch.imageId of the region, and then boots it", async () => {
    const name = "dr-noroot";
    const created = await h.coord.views.createInstance(parseSpec(h.spec(name, { volumes: 0 })));
    expect((await h.coord.engine.wait(created.workflowId)).error).toBeNull();
    expect((await h.cli("pause", name, "--wait")).code).toBe(0);
    const subnetIds = westSubnets((await h.coord.views.getInstance(name))!.resources.network.eniId!);
    const r = await h.api("POST", `instances/${name}/restore`, { region: WEST, overrides: { launch: { subnetIds } } });
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body.error.message).toBe(
      "overrides.launch.imageId: is required: us-west-2 has no available copy of the instance's root image (persistence.root); " +
        "give an image of us-west-2",
    );
    const ok = await h.api("POST", `instances/${name}/restore`, {
      region: WEST,
      overrides: { launch: { subnetIds, imageId: west().baseImageId } },
    });
    expect(ok.status, JSON.stringify(ok.body)).toBe(202);
    expect((await h.coord.engine.wait(ok.body.workflowId)).error).toBeNull();
    const after = (await h.coord.views.getInstance(name))!;
    expect(after.state).toBe("running");
    expect(west().instances.get(after.instanceId!)?.imageId).toBe(west().baseImageId);
  });

  it("brings a failed instance (no capacity left in us-east-1) back in us-west-2", async () => {
    const name = "dr-failed";
    const spec = { ...h.spec(name), snapshots: { copyToRegions: [WEST] } };
    const created = await h.coord.views.createInstance(parseSpec(spec));
    expect((await h.coord.engine.wait(created.workflowId)).error).toBeNull();
    expect((await h.cli("snapshot", name, "--wait")).code).toBe(0);
    const before = (await h.coord.views.getInstance(name))!;
    // No capacity anywhere in us-east-1: a recycle fails once the old instance is gone, and the instance is failed.
    for (const t of ["m5.large", "m6i.large"])
      for (const s of h.env.subnets)
        for (const market of ["spot", "on-demand"] as const)
          await h.env.control("PUT", "capacity", { instanceType: t, availabilityZone: s.az, market, available: false });
    const recycle = await h.api("POST", `instances/${name}/recycle`);
    expect((await h.coord.engine.wait(recycle.body.workflowId)).status).toBe("failed");
    expect((await h.coord.views.getInstance(name))!.state).toBe("failed");
    await until("copies of the snapshot and the root image in us-west-2", () => copiesDone(name), 60_000, 100);

    const overrides = { launch: { subnetIds: westSubnets(before.resources.network.eniId!) } };
    const r = await h.api("POST", `instances/${name}/restore`, { region: WEST, overrides });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect((await h.coord.engine.wait(r.body.workflowId)).error).toBeNull();
    const after = (await h.coord.views.getInstance(name))!;
    expect(after.state).toBe("running");
    expect(west().instances.get(after.instanceId!)?.state).toBe("running");
    expect(after.generations.filter((g) => g.endedAt === null).map((g) => g.generation)).toEqual([after.generation]);
    expect(after.privateIp).not.toBe(before.privateIp);
    for (const t of ["m5.large", "m6i.large"])
      for (const s of h.env.subnets)
        for (const market of ["spot", "on-demand"] as const)
          await h.env.control("PUT", "capacity", { instanceType: t, availabilityZone: s.az, market, available: true });
  });

  it("a restore that fails in us-west-2 (no capacity there) leaves the instance failed there; resume brings it up from the copies", async () => {
    const name = "dr-retry";
    const spec = { ...h.spec(name), snapshots: { copyToRegions: [WEST] } };
    const created = await h.coord.views.createInstance(parseSpec(spec));
    expect((await h.coord.engine.wait(created.workflowId)).error).toBeNull();
    expect((await h.cli("snapshot", name, "--wait")).code).toBe(0);
    const before = (await h.coord.views.getInstance(name))!;
    expect((await h.cli("pause", name, "--wait")).code).toBe(0);
    await until("copies of the snapshot and the root image in us-west-2", () => copiesDone(name), 60_000, 100);
    const westCapacity = async (available: boolean) => {
      for (const t of ["m5.large", "m6i.large"])
        for (const az of new Set([...west().subnets.values()].map((s) => s.az)))
          for (const market of ["spot", "on-demand"] as const)
            await h.env.control("PUT", "capacity", { instanceType: t, availabilityZone: az, market, available });
    };
    await westCapacity(false);
    const overrides = { launch: { subnetIds: westSubnets(before.resources.network.eniId!) } };
    const r = await h.api("POST", `instances/${name}/restore`, { region: WEST, overrides });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect((await h.coord.engine.wait(r.body.workflowId)).status).toBe("failed");
    const failed = (await h.coord.views.getInstance(name))!;
    expect(failed.state).toBe("failed");
    expect((failed.spec as { region: string }).region).toBe(WEST);
    // It is in us-west-2 now: another restore there is refused; resume makes the volumes from the copies.
    const again = await h.api("POST", `instances/${name}/restore`, { region: WEST, overrides });
    expect(again.status).toBe(400);
    await westCapacity(true);
    expect((await h.cli("resume", name, "--wait")).code).toBe(0);
    const after = (await h.coord.views.getInstance(name))!;
    expect(after.state).toBe("running");
    expect(west().instances.get(after.instanceId!)?.state).toBe("running");
    const vol = west().volumes.get(after.resources.volumes[0]!.volumeId!)!;
    expect((await h.coord.store.artifacts.list(name, "data-snapshot")).map((a) => a.id)).toContain(vol.snapshotId);
    expect(after.resources.network.eniId).not.toBe(before.resources.network.eniId);
  });

  it("an instance encrypted with a customer key comes back with its volumes encrypted under the key of us-west-2 the overrides name", async () => {
    const name = "dr-kms";
    const eastKey = (await h.env.control("POST", "kms/keys", { region: "us-east-1", description: "east data" })).arn as string;
    const westKey = (await h.env.control("POST", "kms/keys", { region: WEST, description: "west data" })).arn as string;
    const base = h.spec(name);
    const spec = {
      ...base,
      persistence: { ...base.persistence, encryption: { encrypted: true, kmsKeyId: eastKey } },
      snapshots: { copyToRegions: [{ region: WEST, kmsKeyId: westKey }] },
    };
    const created = await h.coord.views.createInstance(parseSpec(spec));
    expect((await h.coord.engine.wait(created.workflowId)).error).toBeNull();
    expect((await h.cli("snapshot", name, "--wait")).code).toBe(0);
    const before = (await h.coord.views.getInstance(name))!;
    expect((await h.cli("pause", name, "--wait")).code).toBe(0);
    await until("copies of the snapshot and the root image in us-west-2", () => copiesDone(name), 60_000, 100);
    const overrides = {
      launch: { subnetIds: westSubnets(before.resources.network.eniId!) },
      persistence: { encryption: { kmsKeyId: westKey } },
    };
    const r = await h.api("POST", `instances/${name}/restore`, { region: WEST, overrides });
    expect(r.status, JSON.stringify(r.body)).toBe(202);
    expect((await h.coord.engine.wait(r.body.workflowId)).error).toBeNull();
    const after = (await h.coord.views.getInstance(name))!;
    const inst = west().instances.get(after.instanceId!)!;
    expect(inst.state).toBe("running");
    const volumes = [...west().volumes.values()].filter((v) => v.attachment?.instanceId === inst.id);
    expect(volumes.length).toBe(2);
    expect(volumes.map((v) => [v.encrypted, v.kmsKeyId])).toEqual([
      [true, westKey],
      [true, westKey],
    ]);
  });
});
