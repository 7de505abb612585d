import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOrCreateSigner } from "../../localcloud/imds/identity.js";
import { startImds, type ImdsServer } from "../../localcloud/imds/server.js";
import type { ImdsInstanceView } from "../../localcloud/imds/types.js";
import { createLinuxRuntime, type LinuxRuntime } from "../../localcloud/runtime/linux/index.js";
import { eventually, leftovers, NOTHING } from "./leftovers.js";

const INSTANCES = [
  { id: "i-0d1d5000000000001", ip: "172.31.0.21", subnet: "172.31.0.0/20" },
  { id: "i-0d1d5000000000002", ip: "172.31.16.22", subnet: "172.31.16.0/20" },
];

function view(id: string, ip: string, subnetCidr: string): ImdsInstanceView {
  const mac = "0e:00:00:00:00:01";
  return {
    instanceId: id,
    instanceType: "m6i.large",
    imageId: "ami-0123456789abcdef0",
    region: "us-east-1",
    availabilityZone: "us-east-1a",
    accountId: "123456789012",
    architecture: "x86_64",
    pendingTime: new Date().toISOString(),
    privateIp: ip,
    mac,
    enis: [
      {
        mac,
        eniId: "eni-0123456789abcdef0",
        deviceIndex: 0,
        privateIps: [ip],
        subnetId: "subnet-01",
        subnetCidr,
        vpcId: "vpc-01",
        vpcCidr: "172.31.0.0/16",
        securityGroupIds: [],
      },
    ],
    blockDeviceMapping: { ami: "/dev/xvda", root: "/dev/xvda" },
    instanceLifecycle: "spot",
    userData: null,
    httpTokens: "required",
    spotInstanceAction: null,
    rebalanceNoticeTime: null,
    scheduledEvents: [],
    serving: true,
  };
}

/** User-data asking IMDS (IMDSv2) who it is, at the endpoint the runtime handed it. */
const probe = `#!/bin/bash
exec node -e '
const e = process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT;
(async () => {
  const t = await (await fetch(e + "/latest/api/token", { method: "PUT", headers: { "X-aws-ec2-metadata-token-ttl-seconds": "60" } })).text();
  const id = await (await fetch(e + "/latest/meta-data/instance-id", { headers: { "X-aws-ec2-metadata-token": t } })).text();
  console.log("IMDS-SAYS " + id);
})().catch((err) => console.log("IMDS-FAILED " + err.message));
'
`;

/** Registers the suite; `skip` is why it cannot run here (null: run). */
export function imdsSuite(skip: string | null): void {
  describe.skipIf(skip !== null)("IMDS on the bridge, identifying linux-runtime instances by source address", () => {
    let stateDir = "";
    let rt: LinuxRuntime;
    let imds: ImdsServer | undefined;

    beforeAll(async () => {
      stateDir = mkdtempSync(join(tmpdir(), "spotkeep-lc-imds-"));
      rt = createLinuxRuntime({ stateDir, lockWaitMs: 120_000 });
      await rt.init();
      const views = new Map(INSTANCES.map((i) => [i.id, view(i.id, i.ip, i.subnet)]));
      imds = await startImds({
        lookup: (id) => views.get(id) ?? null,
        lookupByIp: (ip) => INSTANCES.find((i) => i.ip === ip)?.id ?? null,
        signer: await loadOrCreateSigner(stateDir),
      });
    }, 150_000);

    afterAll(async () => {
      await imds?.stop();
      if (rt) await rt.cleanup();
      expect(leftovers([stateDir])).toEqual(NOTHING);
      rmSync(stateDir, { recursive: true, force: true });
    });

    it("each instance, in either subnet, gets its own identity from the one listener on the bridge gateway", async () => {
      const endpoint = await imds!.endpointForAddress(rt.imdsBindAddress());
      expect(endpoint).toMatch(/^http:\/\/172\.31\.0\.1:\d+$/);
      for (const [n, i] of INSTANCES.entries()) {
        await rt.createVolume({ volumeId: `vol-imdsroot${n}`, sizeGiB: 1 });
        await rt.boot(
          {
            instanceId: i.id,
            dir: "",
            userData: Buffer.from(probe),
            privateIp: i.ip,
            subnetCidr: i.subnet,
            imdsEndpoint: endpoint,
            env: {},
          },
          `vol-imdsroot${n}`,
        );
      }
      for (const i of INSTANCES) {
        const line = await eventually(async () => /IMDS-(SAYS|FAILED) .*/.exec(readFileSync(rt.logPath(i.id), "utf8"))?.[0], 200, 50);
        expect(line).toBe(`IMDS-SAYS ${i.id}`);
      }
    });
  });
}
