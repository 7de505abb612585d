import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EC2Client, RunInstancesCommand, TerminateInstancesCommand } from "@aws-sdk/client-ec2";
import { afterAll, describe, expect, it } from "vitest";
import { startLocalCloud, type LocalCloud } from "../../localcloud/index.js";
import { eventually, leftovers, NOTHING } from "./leftovers.js";

/** Prints what the instance sees as `PROBE key=value` lines, then `PROBE end`. */
const probe = [
  "#!/bin/bash",
  'if command -v node >/dev/null 2>&1; then echo "PROBE node=$(node -e \'process.stdout.write(process.version)\')"; else echo "PROBE node=none"; fi',
  `for f in /usr/bin/node /usr/bin/npm ${JSON.stringify(process.execPath)}; do [ -x "$f" ] && echo "PROBE exec:$f=yes" || echo "PROBE exec:$f=no"; done`,
  'echo "PROBE sha=$(printf abc | sha256sum | cut -d" " -f1)"',
  'echo "PROBE tools=$(tar --version >/dev/null && gzip --version >/dev/null && curl --version >/dev/null && uname -m >/dev/null && echo ok)"',
  'echo "PROBE arch=$SPOTKEEP_LOCALCLOUD_ARCH"',
  "echo PROBE end",
].join("\n");

function probeOf(log: string): Record<string, string> | undefined {
  if (!log.includes("PROBE end")) return undefined;
  const lines = log.split("\n").filter((l) => l.startsWith("PROBE ") && l.includes("="));
  return Object.fromEntries(lines.map((l) => l.slice(6).split("=", 2) as [string, string]));
}

/** Registers the suite; `skip` is why it cannot run here (null: run). */
export function stockImageSuite(skip: string | null): void {
  describe.skipIf(skip !== null)("linux runtime: stock images have no node", () => {
    const dirs: string[] = [];
    let lc: LocalCloud | undefined;
    afterAll(async () => {
      await lc?.stop();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }, 150_000);

    it("no node binary is reachable from a stock instance's view while the shell tools work; a base instance keeps node; stop leaves nothing", async () => {
      const stateDir = mkdtempSync(join(tmpdir(), "spotkeep-lc-stock-"));
      dirs.push(stateDir);
      lc = await startLocalCloud({ runtime: "linux", port: 0, profile: "instant", stateDir, log: () => {} });
      const ec2 = new EC2Client({ endpoint: lc.endpoint, region: "us-east-1", credentials: { accessKeyId: "t", secretAccessKey: "t" } });
      const launch = async (imageId: string, instanceType: string) =>
        (
          await ec2.send(
            new RunInstancesCommand({
              ImageId: imageId,
              InstanceType: instanceType as never,
              MinCount: 1,
              MaxCount: 1,
              UserData: Buffer.from(probe).toString("base64"),
            }),
          )
        ).Instances![0]!.InstanceId!;
      const stock = await launch(lc.world.stockImageIds.arm64, "t4g.micro");
      const base = await launch(lc.world.baseImageId, "t3.micro");
      const seen = async (id: string) => eventually(async () => probeOf(readFileSync(lc!.runtime.logPath(id), "utf8")), 300, 100);
      const s = await seen(stock);
      expect(s).toMatchObject({
        node: "none",
        "exec:/usr/bin/node": "no",
        "exec:/usr/bin/npm": "no",
        [`exec:${process.execPath}`]: "no",
        sha: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        tools: "ok",
        arch: "aarch64",
      });
      const b = await seen(base);
      expect(b).toMatchObject({ node: process.version, [`exec:${process.execPath}`]: "yes", tools: "ok", arch: "x86_64" });
      // The host's own view is untouched.
      expect(readFileSync(process.execPath).length).toBeGreaterThan(0);
      await ec2.send(new TerminateInstancesCommand({ InstanceIds: [stock, base] }));
      ec2.destroy();
      await lc.stop();
      lc = undefined;
      expect(leftovers([stateDir])).toEqual(NOTHING);
    }, 150_000);
  });
}
