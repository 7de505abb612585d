/**
 * The replacement's user-data. The script itself is the agent's own template
 * (agent/deploy/bootstrap.ts: get and check the agent, `spotkeep-agent restore`, the user's
 * user-data, then `spotkeep-agent run` under systemd or in the foreground); the coordinator fills
 * in where agents reach it, the SHA-256 of the agent bundle it serves, the Node.js runtimes it serves
 * (with their SHA-256), where a failed boot reports, and its CA certificate.
 */
import { X509Certificate, createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { renderBootstrap } from "../agent/deploy/bootstrap.js";
import type { AgentRuntimes } from "./agent-runtime/runtimes.js";

/** EC2 accepts 16 KB of user-data (before base64). */
export const USER_DATA_LIMIT = 16 * 1024;

export function renderUserData(o: {
  publicUrl: string;
  /** With several coordinators (config ha.agentUrls): their URLs, tried in turn by the agent; default [publicUrl]. */
  coordinatorUrls?: readonly string[];
  userUserData: string;
  timeScale: number;
  /** SHA-256 (hex) of the agent bundle served at /agent/v1/agent.js (agentBundleSha256). */
  agentSha256?: string;
  /** PEM CA certificate that signs the coordinator's TLS certificate, for a private CA. */
  caCertificate?: string;
  /** The Node.js runtimes served to images without a usable node (none: such an image's boot reports that). */
  runtimes?: AgentRuntimes;
}): string {
  const bases = (o.coordinatorUrls?.length ? o.coordinatorUrls : [o.publicUrl]).map((u) => u.replace(/\/+$/, ""));
  const runtime = o.runtimes?.forBootstrap(bases);
  const text = renderBootstrap({
    coordinatorUrl: bases.map((b) => `${b.replace(/^http/, "ws")}/agent/v1/ws`).join(","),
    agentUrl: bases.map((b) => `${b}/agent/v1/agent.js`),
    reportUrl: bases.map((b) => `${b}/agent/v1/boot-report`),
    userUserData: o.userUserData,
    timeScale: o.timeScale,
    ...(o.agentSha256 ? { agentSha256: o.agentSha256 } : {}),
    ...(o.caCertificate ? { caCertificate: o.caCertificate } : {}),
    ...(runtime ? { runtime } : {}),
  });
  if (Buffer.byteLength(text) > USER_DATA_LIMIT)
    throw new Error(
      `launch.userData: with spotkeep's bootstrap the user-data is ${Buffer.byteLength(text)} bytes, over EC2's ${USER_DATA_LIMIT}`,
    );
  return text;
}

const hashCache = new Map<string, { mtimeMs: number; size: number; sha256: string }>();

/**
 * SHA-256 (hex) of the agent bundle file, recomputed only when its size or mtime changes (so a
 * rebuilt bundle gets its new hash, and a render costs a stat). Throws naming the path when the
 * file cannot be read: user-data that would refuse every agent must not be rendered.
 */
export function agentBundleSha256(path: string): string {
  try {
    const st = statSync(path);
    const hit = hashCache.get(path);
    if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.sha256;
    const sha256 = createHash("sha256").update(readFileSync(path)).digest("hex");
    hashCache.set(path, { mtimeMs: st.mtimeMs, size: st.size, sha256 });
    return sha256;
  } catch (err) {
    throw new Error(`hashing the agent bundle ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** The agents' CA certificate from PEM text or a file path, checked to be a certificate at start. */
export function loadCaCertificate(pemOrPath: string): string {
  let pem = pemOrPath;
  if (!pemOrPath.includes("-----BEGIN")) {
    try {
      pem = readFileSync(pemOrPath, "utf8");
    } catch (err) {
      throw new Error(`agentCaCertificate: cannot read ${pemOrPath}: ${(err as Error).message}`, { cause: err });
    }
  }
  try {
    new X509Certificate(pem);
  } catch (err) {
    throw new Error(`agentCaCertificate: not a PEM certificate (${(err as Error).message})`, { cause: err });
  }
  return pem;
}
