/** `spotkeep localcloud` as a user runs it: prints the endpoint, serves the SDK, stops on SIGTERM. */
import { afterEach, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { DescribeAvailabilityZonesCommand, DescribeSubnetsCommand, EC2Client } from "@aws-sdk/client-ec2";

const BIN = path.resolve(import.meta.dirname, "../../bin/spotkeep.js");
const children: ChildProcess[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(-c.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function start(args: string[]) {
  const child = spawn(process.execPath, [BIN, "localcloud", ...args], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const endpoint = new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no endpoint printed; stdout=${out} stderr=${err}`)), 30_000);
    child.stdout!.on("data", () => {
      const m = /localcloud listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => reject(new Error(`exited ${code} before listening: ${err}`)));
  });
  endpoint.catch(() => undefined); // callers that only check the exit don't await it
  return { child, endpoint, exited, output: () => ({ out, err }) };
}

describe("spotkeep localcloud", () => {
  it("starts, answers DescribeAvailabilityZones through the SDK, and exits 0 on SIGTERM", async () => {
    const stateDir = await mkdtemp(path.join(os.tmpdir(), "lc-cli-"));
    dirs.push(stateDir);
    const p = start(["--port", "0", "--profile", "instant", "--runtime", "process", "--state-dir", stateDir, "--time-scale", "0.5"]);
    const endpoint = await p.endpoint;
    const ec2 = new EC2Client({ endpoint, region: "us-east-1", credentials: { accessKeyId: "x", secretAccessKey: "x" } });
    const out = await ec2.send(new DescribeAvailabilityZonesCommand({}));
    expect(out.AvailabilityZones!.map((z) => z.ZoneName)).toEqual(["us-east-1a", "us-east-1b", "us-east-1c"]);
    // At start it printed the ids a spec needs: the subnet of each AZ, the security group, the image.
    const subnets = await ec2.send(new DescribeSubnetsCommand({}));
    const printed = p.output().out;
    for (const s of subnets.Subnets!) expect(printed).toContain(`subnet          ${s.SubnetId}  ${s.AvailabilityZone}  ${s.CidrBlock}`);
    const ids = (await (await fetch(`${endpoint}/_localcloud/v1/ids`)).json()) as { securityGroupId: string; images: { x86_64: string } };
    expect(printed).toContain(`security group  ${ids.securityGroupId}  default`);
    expect(printed).toContain(`image           ${ids.images.x86_64}  x86_64`);
    expect(printed).toMatch(
      /^fill an example: sed -e s\/subnet-0aaaaaaaaaaaaaaaa\/subnet-[0-9a-f]{17}\/g .* examples\/FILE\.yaml > FILE\.yaml$/m,
    );
    ec2.destroy();
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
    expect(p.output().err).toContain("SIGTERM");
  });

  it("rejects a bad flag with exit 2 and a one-line reason", async () => {
    const p = start(["--profile", "fast"]);
    expect(await p.exited).toBe(2);
    expect(p.output().err.trim()).toMatch(/^spotkeep localcloud: --profile must be one of instant, realistic, got "fast"/);
  });

  it("serves every region --regions names, each answered for the region its client signs for", async () => {
    const p = start(["--port", "0", "--profile", "instant", "--runtime", "none", "--regions", "us-east-1,us-west-2"]);
    const endpoint = await p.endpoint;
    const west = new EC2Client({ endpoint, region: "us-west-2", credentials: { accessKeyId: "x", secretAccessKey: "x" } });
    const out = await west.send(new DescribeAvailabilityZonesCommand({}));
    expect(out.AvailabilityZones!.map((z) => z.ZoneName)).toEqual(["us-west-2a", "us-west-2b", "us-west-2c"]);
    // The ids of both regions are printed at start.
    expect(p.output().out).toContain("(region us-east-1,");
    expect(p.output().out).toContain("(region us-west-2,");
    west.destroy();
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  });

  it("rejects a bad --regions with exit 2 naming the region", async () => {
    const p = start(["--regions", "us-east-1,mars-1"]);
    expect(await p.exited).toBe(2);
    expect(p.output().err).toMatch(/--regions: "mars-1" is not a region name/);
  });

  const isRoot = process.getuid?.() === 0;
  if (isRoot) console.log("skipping the linux-runtime-without-root check: this run is root");
  it.skipIf(isRoot)("refuses --runtime linux without root, with a clear error", async () => {
    const p = start(["--port", "0", "--runtime", "linux"]);
    expect(await p.exited).toBe(1);
    expect(p.output().err).toMatch(/linux runtime/);
  });
});
