/**
 * localcloud signs its instance identity documents with its own key; a coordinator that drives
 * a localcloud must be given that certificate (as it is given AWS's for a real region). This is
 * the one place outside localcloud/ that knows where localcloud serves it.
 */
import { CliError } from "./client.js";

/** localcloud's control API lives under this path of its EC2 endpoint. */
const CONTROL_PATH = "/_localcloud/v1";

export function certificateUrl(localcloudUrl: string): string {
  return `${localcloudUrl.replace(/\/+$/, "")}${CONTROL_PATH}/identity/certificate`;
}

/**
 * Fetch the identity certificate (PEM) of the localcloud at `localcloudUrl` (its EC2 endpoint).
 * `attempts` > 1 waits for a localcloud that is still starting (250 ms apart).
 */
export async function fetchLocalcloudCertificate(localcloudUrl: string, attempts = 1): Promise<string> {
  const url = certificateUrl(localcloudUrl);
  let reason = "";
  for (let i = 0; i < Math.max(1, attempts); i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 250));
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      const text = await res.text();
      if (res.ok && text.includes("-----BEGIN CERTIFICATE-----")) return text;
      reason = res.ok ? "the answer is not a PEM certificate" : `HTTP ${res.status}`;
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      reason = cause?.code ?? (err as Error).message;
    }
  }
  throw new CliError(`cannot fetch localcloud's identity certificate from ${url} (${reason})`);
}
