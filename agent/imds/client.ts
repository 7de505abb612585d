/**
 * The IMDS client: the ONLY code in spotkeep that knows IMDS paths and the IMDSv2 token dance.
 *  - ONE cached IMDSv2 token (TTL 6 h), refreshed shortly before it expires and whenever IMDS
 *    answers 401 (not a PUT before every GET: wasteful at 1 s polling);
 *  - 404 means "nothing there" and yields null, never an error (no notice = 404);
 *  - timeouts, connection errors, 429 and 5xx are retried with backoff on the injected Clock;
 *    400/403 are not (they will not get better), nor is a body over its size limit;
 *  - a token PUT refused with 403/404/405 falls back to IMDSv1 (no token), as the AWS SDK does;
 *  - every body is bounded before it is read (maxBodyBytes: 64 KiB, the identity document and
 *    signature 128 KiB, the token 4 KiB) and every exchange in total time (http.ts);
 *  - all exchanges share ONE keep-alive connection (http.ts).
 * The HTTP exchange (http.ts) is @smithy/node-http-handler's NodeHttpHandler with our own body
 * reading, rather than @aws-sdk/ec2-metadata-service's MetadataService: that reads every body
 * whole with no limit and no way to set one, times out only an idle socket, and opens a new
 * connection (a new handler and agent) for every request.
 * The endpoint comes from the caller (the agent passes AWS_EC2_METADATA_SERVICE_ENDPOINT).
 */
import { realClock, type Clock } from "../../shared/clock.js";
import { retryPolicy, withRetry, type RetryPolicy } from "../../shared/retry.js";
import { ImdsHttp, ImdsTransportError, type ImdsFailure } from "./http.js";

export const TOKEN_HEADER = "x-aws-ec2-metadata-token";
const TOKEN_TTL_HEADER = "x-aws-ec2-metadata-token-ttl-seconds";

/** Body limits (bytes). Real bodies are far smaller: the largest, the identity signature, is ~2 KB. */
export const MAX_BODY_BYTES = 64 * 1024;
export const MAX_IDENTITY_BYTES = 128 * 1024;
export const MAX_TOKEN_BYTES = 4 * 1024;

export class ImdsError extends Error {
  override name = "ImdsError";
  constructor(
    message: string,
    readonly status: number | undefined,
    options?: { cause?: unknown; code?: ImdsFailure },
  ) {
    super(message, options);
    this.code = options?.code;
  }
  /** Set when there was no usable HTTP answer: timeout, network, or a body over its limit. */
  readonly code: ImdsFailure | undefined;
  /** Worth retrying: no HTTP answer (timeout, refused, reset), throttled, or a server error. Never an oversized body. */
  get transient(): boolean {
    if (this.code === "body-too-large") return false;
    return this.status === undefined || this.status === 429 || this.status >= 500;
  }
}

export interface ImdsClientOptions {
  /** http://host[:port], no path. Default http://169.254.169.254. */
  endpoint?: string;
  clock?: Clock;
  /** Per-exchange timeout, whole request and body (real ms). Default 1000. */
  timeoutMs?: number;
  /** Body limit for most paths (bytes). Default MAX_BODY_BYTES. */
  maxBodyBytes?: number;
  tokenTtlSeconds?: number;
  /** Refresh the token this many seconds before it expires. */
  refreshBeforeSeconds?: number;
  /** Backoff for transient failures (delays in real ms). */
  retry?: Partial<RetryPolicy>;
  onRetry?: (what: string, err: unknown, attempt: number, delayMs: number) => void;
}

export interface InstanceInfo {
  instanceId: string;
  instanceType: string;
  availabilityZone: string;
  imageId: string;
  privateIp: string | null;
  lifecycle: string | null;
}

export interface ImdsEni {
  mac: string;
  interfaceId: string;
  deviceNumber: number;
  privateIps: string[];
  subnetId?: string;
  /** `subnet-ipv4-cidr-block`: the ENI's subnet (its prefix length and gateway, the subnet's first address). */
  subnetCidr?: string;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const ENI_ID_RE = /^eni-[0-9a-f]{8,17}$/;
/** An instance has at most a few dozen ENIs; more entries than this is not an answer to trust. */
const MAX_ENIS = 64;

/** Checks one `network/interfaces/macs/<mac>/` entry; IMDS answers are untrusted like any input. */
function checkEni(mac: string, interfaceId: string, deviceNumber: string, ips: string[], subnetCidr: string | null): string | null {
  if (!MAC_RE.test(mac)) return `MAC ${JSON.stringify(mac.slice(0, 40))} is not a MAC address`;
  if (!ENI_ID_RE.test(interfaceId)) return `${mac}/interface-id ${JSON.stringify(interfaceId.slice(0, 40))} is not an ENI id`;
  if (!/^\d{1,2}$/.test(deviceNumber)) return `${mac}/device-number ${JSON.stringify(deviceNumber.slice(0, 40))} is not a device number`;
  const bad = ips.find((ip) => !IPV4_RE.test(ip));
  if (bad !== undefined) return `${mac}/local-ipv4s: ${JSON.stringify(bad.slice(0, 40))} is not an IPv4 address`;
  if (subnetCidr !== null) {
    const [base = "", len = ""] = subnetCidr.split("/");
    if (!IPV4_RE.test(base) || !/^\d{1,2}$/.test(len) || Number(len) < 8 || Number(len) > 30)
      return `${mac}/subnet-ipv4-cidr-block ${JSON.stringify(subnetCidr.slice(0, 40))} is not an IPv4 CIDR (/8../30)`;
  }
  return null;
}

/** What the rest of the agent needs from IMDS, in domain words (tests may pass a fake). */
export interface Imds {
  spotInstanceAction(): Promise<string | null>;
  rebalanceRecommendation(): Promise<string | null>;
  scheduledEvents(): Promise<string | null>;
  identity(): Promise<{ document: string; signature: string }>;
  instanceInfo(): Promise<InstanceInfo>;
  networkInterfaces(): Promise<ImdsEni[]>;
  blockDeviceMapping(): Promise<Record<string, string>>;
}

export class ImdsClient implements Imds {
  readonly endpoint: string;
  private readonly http: ImdsHttp;
  private readonly clock: Clock;
  private readonly ttl: number;
  private readonly refreshBefore: number;
  private readonly policy: RetryPolicy;
  private token: { value: string; expiresAt: number } | null = null;
  private tokenInFlight: Promise<string | null> | null = null;
  /** Set when IMDS refuses token PUTs (403/404/405): IMDSv1 from then on. */
  private v1Only = false;
  /** Counters, for tests and `status`. */
  readonly stats = { tokenFetches: 0, requests: 0, retries: 0, unauthorized: 0 };

  constructor(private readonly opts: ImdsClientOptions = {}) {
    this.endpoint = (opts.endpoint ?? "http://169.254.169.254").replace(/\/+$/, "");
    this.clock = opts.clock ?? realClock;
    this.ttl = opts.tokenTtlSeconds ?? 21_600;
    this.refreshBefore = opts.refreshBeforeSeconds ?? 60;
    this.policy = retryPolicy({ initialMs: 100, factor: 2, maxMs: 2_000, attempts: 5, jitter: "full", ...opts.retry });
    this.http = new ImdsHttp({ endpoint: this.endpoint, timeoutMs: opts.timeoutMs ?? 1_000 });
  }

  /** Close idle keep-alive connections. */
  close(): void {
    this.http.close();
  }

  // ---------- paths (the only place they are spelled) ----------

  spotInstanceAction(): Promise<string | null> {
    return this.get("/latest/meta-data/spot/instance-action");
  }
  rebalanceRecommendation(): Promise<string | null> {
    return this.get("/latest/meta-data/events/recommendations/rebalance");
  }
  scheduledEvents(): Promise<string | null> {
    return this.get("/latest/meta-data/events/maintenance/scheduled");
  }

  async identity(): Promise<{ document: string; signature: string }> {
    const [document, signature] = await Promise.all([
      this.get("/latest/dynamic/instance-identity/document", MAX_IDENTITY_BYTES),
      this.get("/latest/dynamic/instance-identity/signature", MAX_IDENTITY_BYTES),
    ]);
    if (!document || !signature) throw new ImdsError("reading the instance identity document: IMDS has no document or signature", 404);
    return { document, signature: signature.trim() };
  }

  async instanceInfo(): Promise<InstanceInfo> {
    const md = (p: string) => this.get(`/latest/meta-data/${p}`).then((v) => v?.trim() ?? null);
    const [instanceId, instanceType, availabilityZone, imageId, privateIp, lifecycle] = await Promise.all([
      md("instance-id"),
      md("instance-type"),
      md("placement/availability-zone"),
      md("ami-id"),
      md("local-ipv4"),
      md("instance-life-cycle"),
    ]);
    if (!instanceId || !instanceType || !availabilityZone || !imageId) {
      throw new ImdsError("reading instance metadata: instance-id, instance-type, placement/availability-zone or ami-id missing", 404);
    }
    return { instanceId, instanceType, availabilityZone, imageId, privateIp, lifecycle };
  }

  async networkInterfaces(): Promise<ImdsEni[]> {
    const base = "/latest/meta-data/network/interfaces/macs/";
    const listing = await this.get(base);
    const macs = (listing ?? "")
      .split("\n")
      .map((l) => l.trim().replace(/\/$/, ""))
      .filter(Boolean);
    if (macs.length > MAX_ENIS) throw new ImdsError(`IMDS ${base}: ${macs.length} entries (at most ${MAX_ENIS} expected)`, 200);
    const enis = await Promise.all(
      macs.map(async (mac) => {
        const f = (p: string) => this.get(`${base}${mac}/${p}`).then((v) => v?.trim() ?? null);
        if (!MAC_RE.test(mac)) throw new ImdsError(`IMDS ${base}: ${checkEni(mac, "", "", [], null)}`, 200);
        const [interfaceId, deviceNumber, ips, subnetId, subnetCidr] = await Promise.all([
          f("interface-id"),
          f("device-number"),
          f("local-ipv4s"),
          f("subnet-id"),
          f("subnet-ipv4-cidr-block"),
        ]);
        // Gone between the listing and the reads (detached meanwhile): not there.
        if (!interfaceId || deviceNumber === null) return null;
        const privateIps = (ips ?? "")
          .split("\n")
          .map((s) => s.trim())
          .filter(Boolean);
        const problem = checkEni(mac, interfaceId, deviceNumber, privateIps, subnetCidr);
        if (problem) throw new ImdsError(`IMDS ${base}${problem}`, 200);
        const eni: ImdsEni = { mac, interfaceId, deviceNumber: Number(deviceNumber), privateIps };
        if (subnetId) eni.subnetId = subnetId;
        if (subnetCidr) eni.subnetCidr = subnetCidr;
        return eni;
      }),
    );
    return enis.filter((e): e is ImdsEni => e !== null).sort((a, b) => a.deviceNumber - b.deviceNumber);
  }

  async blockDeviceMapping(): Promise<Record<string, string>> {
    const base = "/latest/meta-data/block-device-mapping/";
    const names = ((await this.get(base)) ?? "")
      .split("\n")
      .map((l) => l.trim().replace(/\/$/, ""))
      .filter(Boolean);
    const out: Record<string, string> = {};
    await Promise.all(
      names.map(async (n) => {
        const v = await this.get(base + n);
        if (v) out[n] = v.trim();
      }),
    );
    return out;
  }

  // ---------- transport ----------

  /** GET a path; null on 404. Retries transient failures; refreshes the token once on 401. */
  async get(path: string, maxBytes = this.opts.maxBodyBytes ?? MAX_BODY_BYTES): Promise<string | null> {
    return withRetry(
      async () => {
        try {
          return await this.getOnce(path, maxBytes);
        } catch (err) {
          if (err instanceof ImdsError && err.status === 401) {
            // Expired or revoked token: drop it and try once more with a fresh one.
            this.stats.unauthorized++;
            this.token = null;
            return await this.getOnce(path, maxBytes);
          }
          throw err;
        }
      },
      {
        policy: this.policy,
        sleep: (ms) => this.clock.sleep(ms),
        shouldRetry: (err) => err instanceof ImdsError && err.transient,
        onRetry: (err, attempt, delay) => {
          this.stats.retries++;
          this.opts.onRetry?.(`GET ${path}`, err, attempt, delay);
        },
      },
    ).catch((err) => {
      throw err instanceof ImdsError && err.message.startsWith("GET ") ? err : wrap(`GET ${path}`, err);
    });
  }

  private async getOnce(path: string, maxBytes: number): Promise<string | null> {
    const token = await this.currentToken();
    const headers: Record<string, string> = {};
    if (token) headers[TOKEN_HEADER] = token;
    this.stats.requests++;
    const res = await this.exchange({ method: "GET", path, headers, maxBytes });
    if (res.status === 404) return null;
    if (res.status !== 200) throw new ImdsError(`GET ${path}: HTTP ${res.status}`, res.status);
    return res.body;
  }

  private async exchange(x: Parameters<ImdsHttp["exchange"]>[0]) {
    try {
      return await this.http.exchange(x);
    } catch (err) {
      if (err instanceof ImdsTransportError) throw new ImdsError(err.message, undefined, { cause: err, code: err.code });
      throw err;
    }
  }

  /** The cached token, fetched (once, even with concurrent callers) when missing or about to expire. */
  private async currentToken(): Promise<string | null> {
    if (this.v1Only) return null;
    if (this.token && this.clock.now() < this.token.expiresAt - this.refreshBefore * 1000) return this.token.value;
    if (!this.tokenInFlight) {
      this.tokenInFlight = this.fetchToken().finally(() => {
        this.tokenInFlight = null;
      });
    }
    return this.tokenInFlight;
  }

  private async fetchToken(): Promise<string | null> {
    this.stats.tokenFetches++;
    const startedAt = this.clock.now();
    const res = await this.exchange({
      method: "PUT",
      path: "/latest/api/token",
      headers: { [TOKEN_TTL_HEADER]: String(this.ttl) },
      maxBytes: MAX_TOKEN_BYTES,
    });
    if (res.status === 403 || res.status === 404 || res.status === 405) {
      // IMDS refuses tokens (v1-only endpoint): carry on without one, as the SDK does.
      this.v1Only = true;
      return null;
    }
    const value = res.body.trim();
    if (res.status !== 200 || !value) throw new ImdsError(`PUT /latest/api/token: HTTP ${res.status}`, res.status);
    this.token = { value, expiresAt: startedAt + this.ttl * 1000 };
    return value;
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function wrap(what: string, err: unknown): ImdsError {
  if (err instanceof ImdsError) return new ImdsError(`${what}: ${messageOf(err)}`, err.status, { cause: err, code: err.code });
  return new ImdsError(`${what}: ${messageOf(err)}`, undefined, { cause: err });
}
