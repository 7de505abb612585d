/**
 * Child for the crash test: builds the worst leftovers a linux runtime can have (an instance with
 * a daemon, a data volume mounted inside AND frozen, with a writer blocked on it), prints one JSON
 * line, then idles until the test SIGKILLs it. Run as `node --import tsx crash-child.ts <stateDir>`.
 */
import { readlinkSync } from "node:fs";
import { join } from "node:path";
import { createLinuxRuntime } from "../../localcloud/runtime/linux/index.js";

const stateDir = process.argv[2];
if (!stateDir) throw new Error("usage: crash-child.ts <stateDir>");
const id = "i-0c0a5e0000000001";
const rt = createLinuxRuntime({ stateDir, lockWaitMs: 120_000 });
await rt.init();
await rt.createVolume({ volumeId: "vol-crashroot01", sizeGiB: 1 });
await rt.createVolume({ volumeId: "vol-crashdata01", sizeGiB: 2 });
await rt.boot(
  {
    instanceId: id,
    dir: "",
    userData: Buffer.from("#!/bin/bash\nsetsid sleep 1001 &\nexec sleep 1002\n"),
    privateIp: "172.31.0.50",
    subnetCidr: "172.31.0.0/20",
    imdsEndpoint: "http://172.31.0.1:1",
    env: {},
  },
  "vol-crashroot01",
);
await rt.attachVolume(id, "vol-crashdata01", "/dev/sdf");
const mnt = join(rt.rootDir(id), "data");
const r = await rt.exec(id, [
  "sh",
  "-c",
  `mkfs.ext4 -q ${rt.devDir(id)}/sdf && mkdir -p ${mnt} && mount ${rt.devDir(id)}/sdf ${mnt} && fsfreeze -f ${mnt} && (setsid sh -c 'echo blocked > ` +
    `${mnt}/x' </dev/null >/dev/null 2>&1 &)`,
]);
if (r.code !== 0) throw new Error(`child setup: ${r.stderr}`);
process.stdout.write(`${JSON.stringify({ ready: true, loop: readlinkSync(join(rt.devDir(id), "sdf")), instanceId: id })}\n`);
setInterval(() => {}, 1 << 30);
