/**
 * A tiny programmable IMDS for agent fault tests (the real emulator is localcloud/imds).
 * IMDSv2 required by default: PUT /latest/api/token issues a token; GETs need it (401 otherwise).
 * Tests set paths, expire tokens, and inject faults (HTTP status or a hang) on the next N requests.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";

type Fault = { match: string; status: number | "hang"; count: number };

export interface FakeImds {
  endpoint: string;
  /** path (without leading //) -> body; missing -> 404. */
  paths: Map<string, string>;
  set(path: string, body: string | null): void;
  /** Invalidate every issued token (as if they all expired). */
  expireTokens(): void;
  /** The next `count` requests whose path contains `match` ("token" for the PUT) get `status` or hang. */
  failNext(match: string, status: number | "hang", count?: number): void;
  /**
   * Serve `bytes` bytes at `path`, generated in 64 KiB chunks as the client reads (never held
   * whole), with or without a Content-Length; `dripMs` sends one byte per interval instead.
   * `streamed(path)` says how many bytes went out before the client hung up.
   */
  setLarge(path: string, bytes: number, o?: { declareLength?: boolean; dripMs?: number }): void;
  streamed(path: string): number;
  requireToken: boolean;
  tokenPuts: number;
  /** TCP connections accepted so far (a keep-alive client opens one and reuses it). */
  connections: number;
  requests: Array<{ method: string; path: string; status: number }>;
  close(): Promise<void>;
}

export async function startFakeImds(initial: Record<string, string> = {}): Promise<FakeImds> {
  const tokens = new Set<string>();
  const faults: Fault[] = [];
  const hung: ServerResponse[] = [];
  const large = new Map<string, { bytes: number; declareLength: boolean; dripMs?: number }>();
  const sent = new Map<string, number>();
  const state: FakeImds = {
    endpoint: "",
    paths: new Map(Object.entries(initial)),
    set(path, body) {
      if (body === null) state.paths.delete(path);
      else state.paths.set(path, body);
    },
    expireTokens: () => tokens.clear(),
    setLarge(path, bytes, o = {}) {
      large.set(path, { bytes, declareLength: o.declareLength ?? false, ...(o.dripMs ? { dripMs: o.dripMs } : {}) });
    },
    streamed: (path) => sent.get(path) ?? 0,
    failNext(match, status, count = 1) {
      faults.push({ match, status, count });
    },
    requireToken: true,
    tokenPuts: 0,
    connections: 0,
    requests: [],
    close: async () => {
      for (const r of hung) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").replace(/^\/+/, "/").split("?")[0]!;
    const method = req.method ?? "GET";
    const reply = (status: number, body = "", headers: Record<string, string> = {}) => {
      state.requests.push({ method, path, status });
      res.writeHead(status, { "content-type": "text/plain", ...headers });
      res.end(body);
    };
    const fault = faults.find((f) => f.count > 0 && (f.match === "token" ? path === "/latest/api/token" : path.includes(f.match)));
    if (fault) {
      fault.count--;
      if (fault.status === "hang") {
        state.requests.push({ method, path, status: 0 });
        hung.push(res);
        return;
      }
      return reply(fault.status, `<title>${fault.status}</title>`);
    }
    if (path === "/latest/api/token") {
      if (method !== "PUT") return reply(405);
      const ttl = Number(req.headers["x-aws-ec2-metadata-token-ttl-seconds"]);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return reply(400);
      state.tokenPuts++;
      const token = randomBytes(24).toString("base64");
      tokens.add(token);
      return reply(200, token, { "x-aws-ec2-metadata-token-ttl-seconds": String(ttl) });
    }
    if (method !== "GET") return reply(405);
    const token = req.headers["x-aws-ec2-metadata-token"];
    if (state.requireToken && (typeof token !== "string" || !tokens.has(token))) return reply(401);
    const big = large.get(path);
    if (big) {
      state.requests.push({ method, path, status: 200 });
      res.writeHead(200, { "content-type": "text/plain", ...(big.declareLength ? { "content-length": String(big.bytes) } : {}) });
      hung.push(res);
      sent.set(path, 0);
      const chunk = Buffer.alloc(64 * 1024, "x");
      if (big.dripMs) {
        const t = setInterval(() => {
          if (res.destroyed) return clearInterval(t);
          res.write("x");
          sent.set(path, (sent.get(path) ?? 0) + 1);
        }, big.dripMs);
        return;
      }
      const pump = () => {
        while (!res.destroyed && (sent.get(path) ?? 0) < big.bytes) {
          const n = Math.min(chunk.length, big.bytes - (sent.get(path) ?? 0));
          sent.set(path, (sent.get(path) ?? 0) + n);
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once("drain", pump);
        }
        if (!res.destroyed) res.end();
      };
      pump();
      return;
    }
    const body = state.paths.get(path);
    if (body === undefined) return reply(404, "<title>404 - Not Found</title>");
    return reply(200, body);
  });
  server.on("connection", () => void state.connections++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  state.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return state;
}

/** A plausible instance for the fake: identity, ENIs, block-device-mapping. */
export function instancePaths(
  opts: { instanceId?: string; az?: string; ip?: string; mac?: string; eni?: string } = {},
): Record<string, string> {
  const instanceId = opts.instanceId ?? "i-0123456789abcdef0";
  const az = opts.az ?? "us-east-1a";
  const ip = opts.ip ?? "10.0.1.10";
  const mac = opts.mac ?? "0e:49:61:0f:c3:11";
  const eni = opts.eni ?? "eni-0f95d3625f5c521cc";
  const md = "/latest/meta-data/";
  const doc = JSON.stringify(
    {
      accountId: "123456789012",
      availabilityZone: az,
      instanceId,
      instanceType: "m5.large",
      imageId: "ami-0a887e401f7654935",
      privateIp: ip,
      region: az.slice(0, -1),
      version: "2017-09-30",
    },
    null,
    2,
  );
  return {
    [`${md}instance-id`]: instanceId,
    [`${md}instance-type`]: "m5.large",
    [`${md}placement/availability-zone`]: az,
    [`${md}ami-id`]: "ami-0a887e401f7654935",
    [`${md}local-ipv4`]: ip,
    [`${md}instance-life-cycle`]: "spot",
    [`${md}mac`]: mac,
    [`${md}network/interfaces/macs/`]: `${mac}/`,
    [`${md}network/interfaces/macs/${mac}/interface-id`]: eni,
    [`${md}network/interfaces/macs/${mac}/device-number`]: "0",
    [`${md}network/interfaces/macs/${mac}/local-ipv4s`]: ip,
    [`${md}network/interfaces/macs/${mac}/subnet-id`]: "subnet-0123456789abcdef0",
    [`${md}block-device-mapping/`]: "ami\nroot\nebs1",
    [`${md}block-device-mapping/ami`]: "/dev/xvda",
    [`${md}block-device-mapping/root`]: "/dev/xvda",
    [`${md}block-device-mapping/ebs1`]: "sdf",
    [`${md}events/maintenance/scheduled`]: "[]",
    "/latest/dynamic/instance-identity/document": doc,
    "/latest/dynamic/instance-identity/signature": Buffer.from("fake-signature").toString("base64"),
  };
}
