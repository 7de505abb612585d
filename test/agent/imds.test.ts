import { createServer as createTcpServer, type AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FakeClock } from "../../shared/clock.js";
import { ConfigError, resolveConfig } from "../../agent/config.js";
import { ImdsClient, ImdsError } from "../../agent/imds/client.js";
import { MonitorLoop } from "../../agent/monitors/loop.js";
import { SpotInterruptionMonitor } from "../../agent/monitors/spot-interruption.js";
import { silentLogger } from "../../agent/log.js";
import { instancePaths, startFakeImds, type FakeImds } from "./fake-imds.js";

const ACTION = "/latest/meta-data/spot/instance-action";
const fastRetry = { initialMs: 1, maxMs: 5, attempts: 5 };

let imds: FakeImds;
beforeEach(async () => {
  imds = await startFakeImds(instancePaths());
});
afterEach(async () => {
  await imds.close();
});

function spotLoop(client: ImdsClient) {
  const seen = new Set<string>();
  const notices: string[] = [];
  const loop = new MonitorLoop({
    monitors: [new SpotInterruptionMonitor(client, { now: () => Date.now(), sleep: async () => {}, setTimer: () => () => {} })],
    intervalMs: 10,
    clock: new FakeClock(),
    log: silentLogger,
    seen,
    onNotice: (o) => void notices.push(o.noticeId),
  });
  return { loop, notices };
}

describe("IMDS client", () => {
  it("reuses one IMDSv2 token across many requests", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    for (let i = 0; i < 20; i++) expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
    expect(imds.tokenPuts).toBe(1);
  });

  it("refreshes the token on 401 and still sees the notice that appeared meanwhile", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    const { loop, notices } = spotLoop(client);
    expect(await loop.pollOnce()).toEqual([]);
    imds.expireTokens();
    imds.set(ACTION, JSON.stringify({ action: "terminate", time: "2030-01-01T00:02:00Z" }));
    const found = await loop.pollOnce();
    expect(found).toHaveLength(1);
    expect(found[0]!.deadline).toBe("2030-01-01T00:02:00.000Z");
    expect(imds.tokenPuts).toBe(2);
    expect(imds.requests.some((r) => r.status === 401)).toBe(true);
    expect(notices).toHaveLength(1);
  });

  it("refreshes the token before it expires, without a 401", async () => {
    const clock = new FakeClock(Date.now());
    const client = new ImdsClient({ endpoint: imds.endpoint, clock, tokenTtlSeconds: 120, refreshBeforeSeconds: 30, retry: fastRetry });
    await client.get("/latest/meta-data/instance-id");
    await clock.advance(80_000);
    await client.get("/latest/meta-data/instance-id");
    expect(imds.tokenPuts).toBe(1);
    await clock.advance(15_000); // 95 s: inside the 30 s refresh window
    await client.get("/latest/meta-data/instance-id");
    expect(imds.tokenPuts).toBe(2);
    expect(imds.requests.filter((r) => r.status === 401)).toEqual([]);
  });

  it("retries 5xx and 429 with backoff", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    imds.set(ACTION, JSON.stringify({ action: "stop", time: "2030-01-01T00:02:00Z" }));
    imds.failNext("instance-action", 503, 2);
    imds.failNext("instance-action", 429, 1);
    expect(await client.spotInstanceAction()).toMatch(/"stop"/);
    expect(client.stats.retries).toBe(3);
  });

  it("retries a request that times out", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, timeoutMs: 150, retry: fastRetry });
    imds.set(ACTION, JSON.stringify({ action: "terminate", time: "2030-01-01T00:02:00Z" }));
    imds.failNext("instance-action", "hang", 1);
    expect(await client.spotInstanceAction()).toMatch(/terminate/);
    expect(client.stats.retries).toBeGreaterThanOrEqual(1);
  });

  it("retries a token PUT that fails with 500", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    imds.failNext("token", 500, 1);
    expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
  });

  it("gives up after the retry budget with an error naming the path", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: { ...fastRetry, attempts: 2 } });
    imds.failNext("instance-action", 500, 5);
    const err = await client.spotInstanceAction().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImdsError);
    expect((err as ImdsError).message).toMatch(/GET \/latest\/meta-data\/spot\/instance-action: HTTP 500/);
  });

  it("treats 404 as no notice (null), not an error", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    expect(await client.spotInstanceAction()).toBeNull();
    const { loop, notices } = spotLoop(client);
    expect(await loop.pollOnce()).toEqual([]);
    expect(notices).toEqual([]);
    expect(client.stats.retries).toBe(0);
  });

  it("does not retry 403", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    imds.failNext("instance-id", 403, 1);
    await expect(client.get("/latest/meta-data/instance-id")).rejects.toMatchObject({ status: 403 });
    expect(client.stats.retries).toBe(0);
  });

  it("falls back to IMDSv1 when token PUTs are refused with 403", async () => {
    imds.requireToken = false;
    imds.failNext("token", 403, 100);
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
    expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
    expect(imds.requests.filter((r) => r.path === "/latest/api/token")).toHaveLength(1);
  });

  it("reads instance info, ENIs, block-device-mapping and the identity document", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    expect(await client.instanceInfo()).toMatchObject({
      instanceId: "i-0123456789abcdef0",
      availabilityZone: "us-east-1a",
      imageId: "ami-0a887e401f7654935",
      privateIp: "10.0.1.10",
    });
    expect(await client.networkInterfaces()).toEqual([
      {
        mac: "0e:49:61:0f:c3:11",
        interfaceId: "eni-0f95d3625f5c521cc",
        deviceNumber: 0,
        privateIps: ["10.0.1.10"],
        subnetId: "subnet-0123456789abcdef0",
      },
    ]);
    expect(await client.blockDeviceMapping()).toEqual({ ami: "/dev/xvda", root: "/dev/xvda", ebs1: "sdf" });
    // A secondary ENI appears with its subnet's CIDR (the agent derives prefix and gateway from it).
    const macs = "/latest/meta-data/network/interfaces/macs/";
    const eth1 = `${macs}0e:49:61:0f:c3:22/`;
    imds.set(macs, "0e:49:61:0f:c3:11/\n0e:49:61:0f:c3:22/");
    imds.set(`${eth1}interface-id`, "eni-0a0b0c0d0e0f01234");
    imds.set(`${eth1}device-number`, "1");
    imds.set(`${eth1}local-ipv4s`, "10.0.1.77");
    imds.set(`${eth1}subnet-ipv4-cidr-block`, "10.0.0.0/20");
    expect((await client.networkInterfaces())[1]).toEqual({
      mac: "0e:49:61:0f:c3:22",
      interfaceId: "eni-0a0b0c0d0e0f01234",
      deviceNumber: 1,
      privateIps: ["10.0.1.77"],
      subnetCidr: "10.0.0.0/20",
    });
    // Malformed answers are refused naming the field, never used.
    for (const [path, body, msg] of [
      [`${eth1}subnet-ipv4-cidr-block`, "10.0.0.0/40", /subnet-ipv4-cidr-block "10.0.0.0\/40" is not an IPv4 CIDR/],
      [`${eth1}local-ipv4s`, "10.0.1.777", /local-ipv4s: "10.0.1.777" is not an IPv4 address/],
      [`${eth1}device-number`, "one", /device-number "one" is not a device number/],
      [macs, "0e:49:61:0f:c3:11/\n../../etc/", /"..\/..\/etc" is not a MAC address/],
    ] as const) {
      const before = imds.paths.get(path) ?? null;
      imds.set(path, body);
      await expect(client.networkInterfaces()).rejects.toThrow(msg);
      imds.set(path, before);
    }
    const id = await client.identity();
    expect(JSON.parse(id.document).instanceId).toBe("i-0123456789abcdef0");
    expect(imds.tokenPuts).toBe(1);
  });
});

describe("IMDS bodies are bounded (issue 11 item 9: a 50 MB body took the agent to 313 MB)", () => {
  const FIFTY_MB = 50 * 1024 * 1024;

  for (const declareLength of [false, true]) {
    it(`refuses a 50 MB body ${declareLength ? "with" : "without"} a Content-Length, without buffering it, and does not retry it`, async () => {
      imds.setLarge(ACTION, FIFTY_MB, { declareLength });
      const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry, timeoutMs: 5_000 });
      const heapBefore = process.memoryUsage().heapUsed;
      const err = await client.spotInstanceAction().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImdsError);
      expect(err).toMatchObject({ code: "body-too-large", transient: false });
      expect((err as Error).message).toMatch(
        /GET \/latest\/meta-data\/spot\/instance-action: body of \d+ bytes or more exceeds the 65536-byte limit/,
      );
      expect(client.stats.retries).toBe(0);
      // Cut off after a few chunks at most (socket buffers), nowhere near 50 MB.
      await expect.poll(() => imds.streamed(ACTION) < 8 * 1024 * 1024).toBe(true);
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(20 * 1024 * 1024);
      // The client still works afterwards.
      expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
      client.close();
    });
  }

  it("reads a body right at the limit, and allows the identity document more", async () => {
    imds.set("/latest/meta-data/big", "y".repeat(64 * 1024));
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    expect(await client.get("/latest/meta-data/big")).toHaveLength(64 * 1024);
    imds.set("/latest/meta-data/big", "y".repeat(64 * 1024 + 1));
    await expect(client.get("/latest/meta-data/big")).rejects.toMatchObject({ code: "body-too-large" });
    imds.set("/latest/dynamic/instance-identity/signature", "s".repeat(100 * 1024));
    expect((await client.identity()).signature).toHaveLength(100 * 1024);
    client.close();
  });

  it("bounds the whole exchange in time: a body that trickles in byte by byte times out", async () => {
    imds.setLarge(ACTION, 1024, { dripMs: 50 });
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: { ...fastRetry, attempts: 1 }, timeoutMs: 300 });
    const started = Date.now();
    await expect(client.spotInstanceAction()).rejects.toMatchObject({ code: "timeout" });
    expect(Date.now() - started).toBeLessThan(2_000);
    client.close();
  });
});

describe("IMDS exchanges share one kept-alive connection and one token (NodeHttpHandler, maxSockets 1)", () => {
  it("fetches the token once and sends every request, concurrent ones included, over one connection", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    for (let i = 0; i < 10; i++) expect(await client.spotInstanceAction()).toBeNull();
    // instanceInfo, networkInterfaces and identity each issue several GETs at once: they queue for the connection.
    await Promise.all([client.instanceInfo(), client.networkInterfaces(), client.identity(), client.blockDeviceMapping()]);
    expect(imds.tokenPuts).toBe(1);
    expect(client.stats.tokenFetches).toBe(1);
    expect(imds.requests.length).toBeGreaterThan(20);
    expect(imds.connections).toBe(1);
    client.close();
  });

  it("a 401 refreshes the token once and retries once; a second 401 is the answer, not a loop", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
    imds.expireTokens();
    expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
    expect(imds.tokenPuts).toBe(2);
    expect(client.stats.unauthorized).toBe(1);
    imds.failNext("instance-id", 401, 10);
    const err = await client.get("/latest/meta-data/instance-id").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImdsError);
    expect(err).toMatchObject({ status: 401, transient: false });
    expect((err as Error).message).toMatch(/GET \/latest\/meta-data\/instance-id: HTTP 401/);
    expect(imds.tokenPuts).toBe(3);
    expect(client.stats.unauthorized).toBe(2);
    expect(client.stats.retries).toBe(0);
    expect(imds.connections).toBe(1);
    client.close();
  });

  it("a body over the cap closes that connection unread; the next exchange opens a fresh one", async () => {
    imds.setLarge(ACTION, 10 * 1024 * 1024);
    const client = new ImdsClient({ endpoint: imds.endpoint, retry: fastRetry });
    await expect(client.spotInstanceAction()).rejects.toMatchObject({ code: "body-too-large" });
    await expect.poll(() => imds.streamed(ACTION) < 4 * 1024 * 1024).toBe(true);
    expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
    expect(imds.connections).toBe(2);
    expect(imds.tokenPuts).toBe(1);
    client.close();
  });

  it("an answer that never comes times out, and so does an exchange queued behind it; the client then carries on", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, timeoutMs: 200, retry: { ...fastRetry, attempts: 1 } });
    expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
    imds.failNext("instance-action", "hang", 1);
    const [hung, queued] = await Promise.allSettled([client.spotInstanceAction(), client.get("/latest/meta-data/ami-id")]);
    for (const r of [hung, queued]) {
      expect(r.status).toBe("rejected");
      expect((r as PromiseRejectedResult).reason).toMatchObject({ code: "timeout", transient: true });
    }
    expect((hung as PromiseRejectedResult).reason.message).toBe(
      "GET /latest/meta-data/spot/instance-action: no complete answer within 200 ms",
    );
    expect(await client.get("/latest/meta-data/ami-id")).toBe("ami-0a887e401f7654935");
    // The hung connection is closed; the queued exchange went on it or, when its turn came after
    // that close, on one of its own that its timeout closed too: 2 or 3 connections so far. From
    // here one connection is kept: more exchanges open none.
    const afterRecovery = imds.connections;
    expect(afterRecovery === 2 || afterRecovery === 3).toBe(true);
    for (let i = 0; i < 3; i++) expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
    expect(imds.connections).toBe(afterRecovery);
    client.close();
  });

  it("a connection reset before the answer is a network failure (retried), not a timeout", async () => {
    const server = createTcpServer((socket) => socket.once("data", () => socket.resetAndDestroy()));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const client = new ImdsClient({
      endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      retry: { ...fastRetry, attempts: 2 },
    });
    try {
      const err = await client.get("/latest/meta-data/instance-id").catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "network", transient: true, status: undefined });
      expect((err as Error).message).toMatch(/^GET \/latest\/meta-data\/instance-id: PUT \/latest\/api\/token: /);
      expect((err as Error).message).not.toMatch(/no complete answer/);
      expect(client.stats.retries).toBe(1);
    } finally {
      client.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it("a token PUT that never answers times out as a transient failure and is retried", async () => {
    const client = new ImdsClient({ endpoint: imds.endpoint, timeoutMs: 150, retry: fastRetry });
    imds.failNext("token", "hang", 1);
    expect(await client.get("/latest/meta-data/instance-id")).toBe("i-0123456789abcdef0");
    expect(client.stats.tokenFetches).toBe(2);
    expect(client.stats.retries).toBe(1);
    client.close();
  });
});

describe("the IMDS endpoint is plain HTTP", () => {
  it("the agent refuses an https:// or schemeless endpoint, naming where it came from", () => {
    for (const endpoint of ["https://169.254.169.254", "169.254.169.254"]) {
      expect(() => resolveConfig({}, { AWS_EC2_METADATA_SERVICE_ENDPOINT: endpoint })).toThrow(ConfigError);
      expect(() => resolveConfig({}, { AWS_EC2_METADATA_SERVICE_ENDPOINT: endpoint })).toThrow(
        `AWS_EC2_METADATA_SERVICE_ENDPOINT: must be an http:// URL, got ${JSON.stringify(endpoint)}`,
      );
    }
    expect(resolveConfig({ "--imds": "http://127.0.0.1:1338" }, {}).imdsEndpoint).toBe("http://127.0.0.1:1338");
    expect(() => new ImdsClient({ endpoint: "https://169.254.169.254" })).toThrow(/is not an http:\/\/ URL/);
  });
});
