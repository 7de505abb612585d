/**
 * Child for the localcloud SIGKILL test: starts `localcloud --runtime linux` in-process, launches
 * one instance through the EC2 API, waits until its user-data runs, prints one JSON line, then
 * idles until the test SIGKILLs it. Run as `node --import tsx localcloud-child.ts <stateDir>`.
 */
import { readFileSync } from "node:fs";
import { EC2Client, DescribeImagesCommand, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { startLocalCloud } from "../../localcloud/index.js";

const stateDir = process.argv[2];
if (!stateDir) throw new Error("usage: localcloud-child.ts <stateDir>");
const lc = await startLocalCloud({ runtime: "linux", port: 0, profile: "instant", stateDir });
const ec2 = new EC2Client({ endpoint: lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" } });
const ami = (await ec2.send(new DescribeImagesCommand({}))).Images?.[0]?.ImageId;
const run = await ec2.send(
  new RunInstancesCommand({
    ImageId: ami,
    InstanceType: "m6i.large",
    MinCount: 1,
    MaxCount: 1,
    UserData: Buffer.from("#!/bin/bash\necho BOOTED\nexec sleep 1003\n").toString("base64"),
  }),
);
const id = run.Instances?.[0]?.InstanceId ?? "";
for (let i = 0; i < 300; i++) {
  let log = "";
  try {
    log = readFileSync(lc.runtime.logPath(id), "utf8");
  } catch {
    /* not booted yet */
  }
  if (log.includes("BOOTED")) break;
  await new Promise((r) => setTimeout(r, 100));
}
process.stdout.write(`${JSON.stringify({ ready: true, instanceId: id, privateIp: run.Instances?.[0]?.PrivateIpAddress })}\n`);
setInterval(() => {}, 1 << 30);
