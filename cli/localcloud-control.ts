/**
 * What `spotkeep coordinator` asks a localcloud before driving it. localcloud signs its instance
 * identity documents with its own key, so the coordinator must be given that certificate (as it
 * is given AWS's for a real region). This is the one place outside localcloud/ that knows where
 * localcloud's control API lives.
 */
import { CliError } from "./client.js";
import { SpecIds } from "./spec-ids.js";

/** localcloud's control API lives under this path of its EC2 endpoint. */
const CONTROL_PATH = "/_localcloud/v1";

export interface LocalcloudInfo {
  /** How its instances run: `process` instances reach the coordinator from this host's loopback. */
  runtime: string;
  timeScale: number;
}

function controlUrl(localcloudUrl: string, route: string): string {
  return `${localcloudUrl.replace(/\/+$/, "")}${CONTROL_PATH}/${route}`;
}

/** GET a control route; `attempts` > 1 waits for a localcloud that is still starting (250 ms apart). */
async function get(localcloudUrl: string, route: string, what: string, attempts: number, accept: (text: string) => boolean) {
  const url = controlUrl(localcloudUrl, route);
  let reason = "";
  for (let i = 0; i < Math.max(1, attempts); i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 250));
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      const text = await res.text();
      if (res.ok && accept(text)) return text;
      reason = res.ok ? `the answer is not ${what}` : `HTTP ${res.status}`;
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      reason = cause?.code ?? (err as Error).message;
    }
  }
  throw new CliError(`cannot fetch localcloud's ${what} from ${url} (${reason})`);
}

/** The identity certificate (PEM) of the localcloud at `localcloudUrl` (its EC2 endpoint). */
export async function fetchLocalcloudCertificate(localcloudUrl: string, attempts = 1): Promise<string> {
  return get(localcloudUrl, "identity/certificate", "identity certificate", attempts, (t) => t.includes("-----BEGIN CERTIFICATE-----"));
}

/** The runtime and time scale of the localcloud at `localcloudUrl`. */
export async function fetchLocalcloudInfo(localcloudUrl: string): Promise<LocalcloudInfo> {
  const text = await get(localcloudUrl, "info", "info", 1, (t) => t.startsWith("{"));
  const info = JSON.parse(text) as Partial<LocalcloudInfo>;
  return { runtime: String(info.runtime ?? "unknown"), timeScale: Number(info.timeScale ?? 1) };
}

/** The ids a spec needs on the localcloud at `localcloudUrl`: default subnets per AZ, security group, base images. */
export async function fetchLocalcloudIds(localcloudUrl: string): Promise<SpecIds> {
  const text = await get(localcloudUrl, "ids", "spec ids", 1, (t) => t.startsWith("{"));
  const parsed = SpecIds.safeParse(JSON.parse(text));
  if (!parsed.success) throw new CliError(`${controlUrl(localcloudUrl, "ids")} answered something that is not a localcloud's ids`);
  return parsed.data;
}
