/**
 * The process runtime and the IMDS server together, as localcloud wires them: user-data reaches
 * its own IMDS through AWS_EC2_METADATA_SERVICE_ENDPOINT with the unmodified AWS SDK, sees a
 * notice appear, and is stopped on shutdown.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadOrCreateSigner } from "../../localcloud/imds/identity.js";
import { startImds, type ImdsServer } from "../../localcloud/imds/server.js";
import type { ImdsInstanceView } from "../../localcloud/imds/types.js";
import { newInstanceId, newVolumeId, processAlive, waitFor } from "./runtime-contract.js";
import { createProcessRuntime, type ProcessRuntime } from "../../localcloud/runtime/process.js";

let dir: string;
let rt: ProcessRuntime;
let imds: ImdsServer;
const views = new Map<string, ImdsInstanceView>();
const sdkPath = createRequire(import.meta.url).resolve("@aws-sdk/ec2-metadata-service");

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "spotkeep-procimds-"));
  rt = createProcessRuntime({ stateDir: dir, graceMs: 500 });
  await rt.init();
  imds = await startImds({ lookup: (id) => views.get(id) ?? null, signer: await loadOrCreateSigner(dir) });
});

afterAll(async () => {
  await rt.cleanup();
  await imds.stop();
  rmSync(dir, { recursive: true, force: true });
});

function view(id: string): ImdsInstanceView {
  return {
    instanceId: id,
    instanceType: "t3.micro",
    imageId: "ami-00000000000000001",
    region: "us-east-1",
    availabilityZone: "us-east-1b",
    accountId: "000000000000",
    architecture: "x86_64",
    pendingTime: new Date().toISOString(),
    privateIp: "172.31.32.10",
    mac: "0e:00:00:00:00:01",
    enis: [],
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

it("user-data reaches its own IMDS through the SDK, sees the interruption notice appear, and is stopped on shutdown", async () => {
  const id = newInstanceId();
  const root = newVolumeId();
  views.set(id, view(id));
  await rt.createVolume({ volumeId: root, sizeGiB: 1 });
  // A tiny agent: read the instance id, then poll spot/instance-action (404 = no notice).
  const agent = `
const { MetadataService } = require(${JSON.stringify(sdkPath)});
const md = new MetadataService({ httpOptions: { timeout: 1000 }, retries: 0 });
(async () => {
  console.log("imds instance-id " + (await md.request("/latest/meta-data/instance-id", {})));
  console.log("pid " + process.pid);
  for (;;) {
    try {
      console.log("notice " + (await md.request("/latest/meta-data/spot/instance-action", {})));
      break;
    } catch (e) {
      if (!/404/.test(String(e))) console.log("error " + e);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  setInterval(() => {}, 1000);
})();
`;
  await rt.boot(
    {
      instanceId: id,
      dir: "",
      userData: Buffer.from(`cat > agent.cjs <<'EOF'\n${agent}\nEOF\nexec node agent.cjs\n`),
      privateIp: "172.31.32.10",
      subnetCidr: "172.31.32.0/20",
      imdsEndpoint: await imds.endpointFor(id),
      env: {},
    },
    root,
  );
  const log = () => readFile(rt.logPath(id), "utf8");
  await waitFor("the agent to read its instance id", async () => (await log()).includes(`imds instance-id ${id}`));
  const pid = Number(/^pid (\d+)$/m.exec(await log())?.[1]);
  expect(await log()).not.toContain("notice ");
  views.set(id, { ...view(id), spotInstanceAction: { action: "terminate", time: "2030-01-01T00:02:00Z" } });
  await waitFor("the agent to see the notice", async () =>
    (await log()).includes('notice {"action":"terminate","time":"2030-01-01T00:02:00Z"}'),
  );
  expect(await log()).not.toContain("error ");
  await rt.shutdown(id, 1000);
  expect(processAlive(pid)).toBe(false);
  await imds.release(id);
});
