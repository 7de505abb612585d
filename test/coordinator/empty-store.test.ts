/**
 * An empty store beside resources spotkeep tagged, on localcloud through the real SDK gateway: a
 * coordinator whose store and identity file are gone (a new data directory) refuses to start,
 * naming them and the ways forward; --accept-empty-store starts empty and leaves them; and
 * --adopt-from-ec2 (no instance to rebuild from here) starts and says what it left alone.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAwsGateway } from "../../coordinator/cloud/aws.js";
import type { Ec2Gateway } from "../../coordinator/cloud/gateway.js";
import { startCoordinator } from "../../coordinator/service.js";
import { type LocalCloud, startLocalCloud } from "../../localcloud/index.js";
import { AGENT_BUNDLE, ensureAgentBundle } from "./harness.js";

let dir: string;
let lc: LocalCloud;
let ec2: Ec2Gateway;
let volumeId: string;
let eniId: string;

const config = (dataDir: string, extra: Record<string, unknown> = {}) => ({
  listen: "127.0.0.1:0",
  dataDir,
  ec2Endpoint: lc.endpoint,
  identityCertificate: lc.certificatePem,
  adminToken: "test-admin-token-0123456789",
  agentBundlePath: AGENT_BUNDLE,
  ...extra,
});

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-empty-store-"));
  lc = await startLocalCloud({ port: 0, runtime: "none", log: () => undefined });
  ec2 = createAwsGateway({ region: "us-east-1", endpoint: lc.endpoint });
  // What a lost store leaves behind: a paused stateful instance's data volume and ENI.
  const subnet = [...lc.world.subnets.values()][0]!;
  const tags = { "spotkeep:managed": "true", "spotkeep:instance": "orders-db", "spotkeep:workflow": "wf-1", "spotkeep:step": "s" };
  volumeId = (await ec2.createVolume({ availabilityZone: subnet.az, sizeGiB: 1, tags: { ...tags, "spotkeep:device": "/dev/sdf" } }))
    .volumeId;
  eniId = (await ec2.createNetworkInterface({ subnetId: subnet.id, securityGroupIds: [], description: "orders-db", tags })).eniId;
});
afterAll(async () => {
  await lc?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("a coordinator starting on an empty store beside spotkeep-tagged resources", () => {
  it("finds them through DescribeVolumes/DescribeNetworkInterfaces/… by tag key", async () => {
    const found = await ec2.findTagged!("spotkeep:instance");
    expect(found.volumes.map((v) => v.volumeId)).toEqual([volumeId]);
    expect(found.networkInterfaces.map((e) => e.eniId)).toEqual([eniId]);
    expect(found.instances).toEqual([]);
  });

  it("refuses to start, naming them and the ways forward (regression: it started with 0 instances and orphaned them)", async () => {
    await expect(startCoordinator({ config: config(join(dir, "refused")) })).rejects.toThrow(
      new RegExp(
        `the store is empty, but EC2 in us-east-1 holds 2 resource\\(s\\) tagged by spotkeep: volumes ${volumeId} \\(orders-db\\); ` +
          `network interfaces ${eniId} \\(orders-db\\).*spotkeep restore-backup.*--adopt-from-ec2.*--accept-empty-store`,
      ),
    );
  });

  it("starts empty with --accept-empty-store, naming what stays unmanaged", async () => {
    const lines: string[] = [];
    const c = await startCoordinator({ config: config(join(dir, "accepted"), { acceptEmptyStore: true }), log: (l) => lines.push(l) });
    try {
      expect(await c.store.instances.list()).toEqual([]);
      expect(lines.join("\n")).toMatch(new RegExp(`--accept-empty-store: starting on an empty store .*\\n  volumes ${volumeId}`));
    } finally {
      await c.stop();
    }
    // The store is no longer new, but it is still empty: the next start is refused again.
    await expect(startCoordinator({ config: config(join(dir, "accepted")) })).rejects.toThrow(/the store is empty, but EC2/);
  });

  it("starts with --adopt-from-ec2 and says what it could not rebuild (no instance in EC2 to rebuild from)", async () => {
    const lines: string[] = [];
    const c = await startCoordinator({ config: config(join(dir, "adopted")), adoptFromEc2: true, log: (l) => lines.push(l) });
    try {
      expect(await c.store.instances.list()).toEqual([]);
      expect(lines.join("\n")).toMatch(new RegExp(`--adopt-from-ec2: left alone, not rebuilt .*volumes ${volumeId} \\(orders-db\\)`));
    } finally {
      await c.stop();
    }
  });
});
