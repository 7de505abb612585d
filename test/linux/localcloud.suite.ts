import { execFileSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DescribeImagesCommand, EC2Client, RunInstancesCommand, TerminateInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, describe, expect, it } from "vitest";
import { startLocalCloud, type LocalCloud } from "../../localcloud/index.js";
import { eventually, leftovers, NOTHING, spawnReadyChild } from "./leftovers.js";

function ec2For(lc: LocalCloud): EC2Client {
  return new EC2Client({ endpoint: lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" } });
}

const sleeperAlive = () => {
  try {
    return execFileSync("pgrep", ["-f", "^sleep 1003$"], { encoding: "utf8" }).trim() !== "";
  } catch {
    return false;
  }
};

/** Registers the suite; `skip` is why it cannot run here (null: run). */
export function localcloudSuite(skip: string | null): void {
  describe.skipIf(skip !== null)("localcloud --runtime linux", () => {
    const dirs: string[] = [];
    let lc: LocalCloud | undefined;
    let child: ChildProcess | undefined;

    afterAll(async () => {
      if (child?.pid && child.exitCode === null && child.signalCode === null)
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          /* gone */
        }
      await lc?.stop();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }, 150_000);

    it("launches an instance through the EC2 API that answers at its private IP and learns its identity from IMDS; stop leaves nothing", async () => {
      const stateDir = mkdtempSync(join(tmpdir(), "spotkeep-lc-cloud-"));
      dirs.push(stateDir);
      lc = await startLocalCloud({ runtime: "linux", port: 0, profile: "instant", stateDir });
      const ec2 = ec2For(lc);
      const ami = (await ec2.send(new DescribeImagesCommand({}))).Images?.[0]?.ImageId;
      const userData = [
        "#!/bin/bash",
        `node -e 'const e=process.env.AWS_EC2_METADATA_SERVICE_ENDPOINT;(async()=>{const t=await (await ` +
          `fetch(e+"/latest/api/token",{method:"PUT",headers:{"X-aws-ec2-metadata-token-ttl-seconds":"60"}})).text();console.log("IMDS-SAYS "+await (await fetch(e+"/latest/meta-data/instance-id",{headers:{"X-aws-ec2-metadata-token":t}})).text())})().catch((x)=>console.log("IMDS-FAILED "+x.message))'`,
        `exec node -e 'require("http").createServer((q,s)=>s.end("hello from "+process.env.SPOTKEEP_INSTANCE_ID)).listen(8080, process.argv[1])' "$(ip -4 -o ` +
          `addr show eth0 | awk '{print $4}' | cut -d/ -f1)"`,
      ].join("\n");
      const run = await ec2.send(
        new RunInstancesCommand({
          ImageId: ami,
          InstanceType: "m6i.large",
          MinCount: 1,
          MaxCount: 1,
          UserData: Buffer.from(userData).toString("base64"),
        }),
      );
      const id = run.Instances?.[0]?.InstanceId ?? "";
      const ip = run.Instances?.[0]?.PrivateIpAddress ?? "";
      expect(ip).toMatch(/^172\.31\./);
      const body = await eventually(
        async () => {
          const r = await fetch(`http://${ip}:8080/`, { signal: AbortSignal.timeout(1000) }).catch(() => undefined);
          return r?.ok ? r.text() : undefined;
        },
        300,
        100,
      );
      expect(body).toBe(`hello from ${id}`);
      const said = await eventually(async () => /IMDS-(SAYS|FAILED) .*/.exec(readFileSync(lc!.runtime.logPath(id), "utf8"))?.[0], 100, 100);
      expect(said).toBe(`IMDS-SAYS ${id}`);
      await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
      await lc.stop();
      lc = undefined;
      expect(leftovers([stateDir])).toEqual(NOTHING);
    });

    it("a localcloud killed with SIGKILL mid-run is cleaned up by the next start", async () => {
      const crashedDir = mkdtempSync(join(tmpdir(), "spotkeep-lc-cloudcrash-"));
      dirs.push(crashedDir);
      const started = spawnReadyChild<{ instanceId: string }>(
        join(import.meta.dirname, "localcloud-child.ts"),
        crashedDir,
        "localcloud child",
      );
      child = started.child;
      const ready = await started.ready;
      expect(leftovers([crashedDir]).netns).toContain(`sk-${ready.instanceId}`);
      expect(leftovers([crashedDir]).loops.length).toBeGreaterThan(0);
      expect(sleeperAlive()).toBe(true);

      process.kill(-child.pid!, "SIGKILL");
      await new Promise((r) => child!.once("exit", r));

      const freshDir = mkdtempSync(join(tmpdir(), "spotkeep-lc-cloudfresh-"));
      dirs.push(freshDir);
      lc = await startLocalCloud({ runtime: "linux", port: 0, profile: "instant", stateDir: freshDir });
      expect(leftovers([crashedDir]).netns).toEqual([]);
      expect(leftovers([crashedDir]).loops).toEqual([]);
      expect(leftovers([crashedDir]).mounts).toEqual([]);
      expect(sleeperAlive()).toBe(false);
      await lc.stop();
      lc = undefined;
      expect(leftovers([crashedDir, freshDir])).toEqual(NOTHING);
    }, 150_000);
  });
}
