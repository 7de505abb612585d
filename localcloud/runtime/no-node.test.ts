import { chmod, mkdir, mkdtemp, readdir, readlink, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildNoNodeBin, hostNode, hostPathDirs } from "./no-node.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "no-node-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function exe(p: string): Promise<void> {
  await mkdir(path.dirname(p), { recursive: true });
  await writeFile(p, "#!/bin/sh\n");
  await chmod(p, 0o755);
}

describe("the no-node view of the host's commands", () => {
  it("keeps absolute PATH folders once each, in order, without node_modules/.bin folders", () => {
    expect(hostPathDirs("/usr/bin:relative:/work/node_modules/.bin:/usr/bin/:/bin")).toEqual(["/usr/bin", "/bin"]);
    expect(hostPathDirs("")).toContain("/usr/bin");
  });

  it("links every executable of the PATH folders except node's commands; the first folder holding a name wins", async () => {
    const a = path.join(dir, "a");
    const b = path.join(dir, "b");
    for (const n of ["node", "nodejs", "npm", "npx", "corepack", "curl", "sh"]) await exe(path.join(a, n));
    await exe(path.join(b, "curl"));
    await exe(path.join(b, "tar"));
    await writeFile(path.join(b, "README"), "not executable\n");
    const bin = path.join(dir, "bin");
    await mkdir(bin);
    await writeFile(path.join(bin, "stale"), "left by an earlier run\n");
    const n = await buildNoNodeBin(bin, [a, b].join(path.delimiter));
    expect(n).toBe(3);
    expect((await readdir(bin)).sort()).toEqual(["curl", "sh", "tar"]);
    expect(await readlink(path.join(bin, "curl"))).toBe(path.join(a, "curl"));
    expect(await readlink(path.join(bin, "tar"))).toBe(path.join(b, "tar"));
  });

  it("finds the folders holding node's names and the node binaries they resolve to elsewhere", async () => {
    const usrBin = path.join(dir, "usr", "bin");
    const opt = path.join(dir, "opt", "node", "bin");
    await exe(path.join(opt, "node"));
    await mkdir(usrBin, { recursive: true });
    await symlink(path.join(opt, "node"), path.join(usrBin, "node"));
    await exe(path.join(usrBin, "curl"));
    const found = await hostNode(usrBin, path.join(opt, "node"));
    expect(found).toEqual({ dirs: [usrBin], files: [path.join(opt, "node")] });
    // A node that is itself in the overlaid folder under its own name needs no file cover.
    await exe(path.join(dir, "plain", "node"));
    expect(await hostNode(path.join(dir, "plain"), path.join(dir, "plain", "node"))).toEqual({
      dirs: [path.join(dir, "plain")],
      files: [],
    });
  });
});
