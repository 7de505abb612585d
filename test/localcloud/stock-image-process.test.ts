/**
 * The process runtime and a stock (no-node) image: the instance's processes find no node on their
 * PATH while the shell tools a bootstrap needs work; an instance of a base image still has node;
 * every instance is told its architecture in SPOTKEEP_LOCALCLOUD_ARCH (aarch64 on an arm64 type).
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { RunInstancesCommand, waitUntilInstanceRunning } from "@aws-sdk/client-ec2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ProcessRuntime } from "../../localcloud/runtime/process.js";
import { fast, startEnv, until, type Env } from "./helpers.js";

let env: Env;
let rt: ProcessRuntime;
beforeAll(async () => {
  env = await startEnv({ runtime: "process" });
  rt = env.cloud.runtime as ProcessRuntime;
});
afterAll(async () => {
  await env?.stop();
});

/** Writes what the instance sees into report.txt in its root folder, then done.txt. */
const probe = `#!/bin/bash
{
  if command -v node >/dev/null 2>&1; then echo "node=$(node -e 'process.stdout.write(process.version)')"; else echo "node=none"; fi
  for t in curl sha256sum tar gzip uname sh bash; do command -v "$t" >/dev/null 2>&1 && echo "$t=yes" || echo "$t=no"; done
  echo "sha=$(printf abc | sha256sum | cut -d' ' -f1)"
  echo "tar=$(tar --version >/dev/null 2>&1 && echo ok)"
  echo "curl=$(curl --version >/dev/null 2>&1 && echo ok)"
  echo "arch=$SPOTKEEP_LOCALCLOUD_ARCH"
} > report.txt
echo done > done.txt
`;

async function report(imageId: string, instanceType: string): Promise<Record<string, string>> {
  const out = await env.ec2.send(
    new RunInstancesCommand({
      ImageId: imageId,
      InstanceType: instanceType as never,
      MinCount: 1,
      MaxCount: 1,
      UserData: Buffer.from(probe).toString("base64"),
    }),
  );
  const id = out.Instances![0]!.InstanceId!;
  await waitUntilInstanceRunning(fast(env), { InstanceIds: [id] });
  const root = rt.rootDir(id);
  await until(() => existsSync(path.join(root, "done.txt")), `${id}'s probe`, 15_000);
  const text = await readFile(path.join(root, "report.txt"), "utf8");
  return Object.fromEntries(
    text
      .trim()
      .split("\n")
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

const TOOLS = { curl: "ok", sha256sum: "yes", tar: "ok", gzip: "yes", uname: "yes", sh: "yes", bash: "yes" };
const SHA_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

describe("process runtime: stock images have no node", () => {
  it("gives a stock image's processes no node on PATH while curl, sha256sum, tar and the shell work", async () => {
    const r = await report(env.cloud.world.stockImageIds.x86_64, "t3.micro");
    expect(r).toMatchObject({ node: "none", ...TOOLS, sha: SHA_ABC, arch: "x86_64" });
  });

  it("keeps node on the PATH of a base image's processes", async () => {
    const r = await report(env.cloud.world.baseImageId, "t3.micro");
    expect(r.node).toBe(process.version);
    expect(r).toMatchObject({ ...TOOLS, sha: SHA_ABC, arch: "x86_64" });
  });

  it("tells an arm64 instance (stock image) aarch64 in SPOTKEEP_LOCALCLOUD_ARCH; it runs the host's tools", async () => {
    const r = await report(env.cloud.world.stockImageIds.arm64, "m7g.large");
    expect(r).toMatchObject({ node: "none", ...TOOLS, sha: SHA_ABC, arch: "aarch64" });
  });
});
