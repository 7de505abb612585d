import http from "node:http";
import net from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { MetadataService } from "@aws-sdk/ec2-metadata-service";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { FakeClock } from "../../shared/clock.js";
import { loadOrCreateSigner, verifyIdentity, verifyIdentityPkcs7 } from "./identity.js";
import { startImds, type ImdsServer } from "./server.js";
import type { IdentitySigner, ImdsInstanceView } from "./types.js";

const MAC = "0e:49:61:0f:c3:11";
const MAC2 = "0e:49:61:0f:c3:22";

function baseView(instanceId: string, over: Partial<ImdsInstanceView> = {}): ImdsInstanceView {
  return {
    instanceId,
    instanceType: "m5.large",
    imageId: "ami-0a887e401f7654935",
    region: "us-east-1",
    availabilityZone: "us-east-1a",
    accountId: "000000000000",
    architecture: "x86_64",
    pendingTime: "2026-01-02T03:04:05.678Z",
    privateIp: "172.31.16.10",
    mac: MAC,
    enis: [
      {
        mac: MAC,
        eniId: "eni-0f95d3625f5c521cc",
        deviceIndex: 0,
        privateIps: ["172.31.16.10", "172.31.16.11"],
        subnetId: "subnet-0aaaaaaaaaaaaaaaa",
        subnetCidr: "172.31.16.0/20",
        vpcId: "vpc-0bbbbbbbbbbbbbbbb",
        vpcCidr: "172.31.0.0/16",
        securityGroupIds: ["sg-01", "sg-02"],
      },
      {
        mac: MAC2,
        eniId: "eni-0222222222222222a",
        deviceIndex: 1,
        privateIps: ["172.31.16.20"],
        subnetId: "subnet-0aaaaaaaaaaaaaaaa",
        subnetCidr: "172.31.16.0/20",
        vpcId: "vpc-0bbbbbbbbbbbbbbbb",
        vpcCidr: "172.31.0.0/16",
        securityGroupIds: ["sg-01"],
      },
    ],
    blockDeviceMapping: { ami: "/dev/xvda", root: "/dev/xvda", ebs1: "sdf" },
    instanceLifecycle: "spot",
    userData: Buffer.from("#!/bin/bash\necho hello\n"),
    httpTokens: "required",
    spotInstanceAction: null,
    rebalanceNoticeTime: null,
    scheduledEvents: [],
    serving: true,
    ...over,
  };
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function raw(origin: string, method: string, target: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  const url = new URL(origin);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path: target, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

async function token(origin: string, ttl = "21600"): Promise<string> {
  const r = await raw(origin, "PUT", "/latest/api/token", { "X-aws-ec2-metadata-token-ttl-seconds": ttl });
  expect(r.status).toBe(200);
  return r.body;
}

async function get(origin: string, target: string): Promise<RawResponse> {
  return raw(origin, "GET", target, { "X-aws-ec2-metadata-token": await token(origin) });
}

const sdk = (origin: string) => new MetadataService({ endpoint: origin, httpOptions: { timeout: 2000 }, retries: 0 });

let stateDir: string;
let signer: IdentitySigner;
let views: Map<string, ImdsInstanceView>;
let clock: FakeClock;
let imds: ImdsServer;

beforeAll(async () => {
  stateDir = mkdtempSync(path.join(os.tmpdir(), "spotkeep-imds-"));
  signer = await loadOrCreateSigner(stateDir);
  views = new Map();
  clock = new FakeClock(Date.now());
  imds = await startImds({ lookup: (id) => views.get(id) ?? null, signer, clock });
});

afterAll(async () => {
  await imds.stop();
  rmSync(stateDir, { recursive: true, force: true });
});

let seq = 0;
/** A fresh instance with its own listener for each test. */
async function instance(over: Partial<ImdsInstanceView> = {}): Promise<{ id: string; origin: string }> {
  const id = `i-0${String(++seq).padStart(16, "0")}`;
  views.set(id, baseView(id, over));
  return { id, origin: await imds.endpointFor(id) };
}

function update(id: string, over: Partial<ImdsInstanceView>): void {
  views.set(id, { ...views.get(id)!, ...over });
}

describe("IMDS tokens (IMDSv2)", () => {
  it("issues a token for a TTL of 1..21600 and echoes the TTL header", async () => {
    const { origin } = await instance();
    for (const ttl of ["1", "3600", "21600"]) {
      const r = await raw(origin, "PUT", "/latest/api/token", { "X-aws-ec2-metadata-token-ttl-seconds": ttl });
      expect(r.status).toBe(200);
      expect(r.headers["x-aws-ec2-metadata-token-ttl-seconds"]).toBe(ttl);
      expect(r.headers["content-type"]).toBe("text/plain");
      expect(r.body.length).toBeGreaterThan(20);
    }
  });

  it("answers 400 to a token PUT with a missing, non-integer or out-of-range TTL", async () => {
    const { origin } = await instance();
    expect((await raw(origin, "PUT", "/latest/api/token")).status).toBe(400);
    for (const ttl of ["0", "21601", "-5", "abc", "1.5", "", "99999999999"]) {
      const r = await raw(origin, "PUT", "/latest/api/token", { "X-aws-ec2-metadata-token-ttl-seconds": ttl });
      expect(r.status, `ttl ${JSON.stringify(ttl)}`).toBe(400);
      expect(r.body).toContain("<title>400 - Bad Request</title>");
    }
  });

  it("refuses proxied token requests and versioned token paths with 403", async () => {
    const { origin } = await instance();
    const h = { "X-aws-ec2-metadata-token-ttl-seconds": "60" };
    expect((await raw(origin, "PUT", "/latest/api/token", { ...h, "X-Forwarded-For": "10.0.0.1" })).status).toBe(403);
    expect((await raw(origin, "PUT", "/2021-03-23/api/token", h)).status).toBe(403);
  });

  it("answers 401 without a token, with a forged token, and with another instance's token when IMDSv2 is required", async () => {
    const a = await instance();
    const b = await instance();
    expect((await raw(a.origin, "GET", "/latest/meta-data/instance-id")).status).toBe(401);
    const forged = Buffer.alloc(56, 7).toString("base64");
    expect((await raw(a.origin, "GET", "/latest/meta-data/instance-id", { "X-aws-ec2-metadata-token": forged })).status).toBe(401);
    expect((await raw(a.origin, "GET", "/latest/meta-data/instance-id", { "X-aws-ec2-metadata-token": "garbage" })).status).toBe(401);
    const foreign = await token(b.origin);
    expect((await raw(a.origin, "GET", "/latest/meta-data/instance-id", { "X-aws-ec2-metadata-token": foreign })).status).toBe(401);
    const ok = await raw(a.origin, "GET", "/latest/meta-data/instance-id", { "X-aws-ec2-metadata-token": await token(a.origin) });
    expect(ok.status).toBe(200);
    expect(ok.body).toBe(a.id);
  });

  it("rejects an expired token with 401 and reports the remaining TTL on every tokened GET", async () => {
    const { origin } = await instance();
    const t = await token(origin, "10");
    const first = await raw(origin, "GET", "/latest/meta-data/instance-id", { "X-aws-ec2-metadata-token": t });
    expect(first.headers["x-aws-ec2-metadata-token-ttl-seconds"]).toBe("10");
    await clock.advance(4_000);
    const later = await raw(origin, "GET", "/latest/meta-data/instance-id", { "X-aws-ec2-metadata-token": t });
    expect(later.status).toBe(200);
    expect(later.headers["x-aws-ec2-metadata-token-ttl-seconds"]).toBe("6");
    await clock.advance(6_001);
    expect((await raw(origin, "GET", "/latest/meta-data/instance-id", { "X-aws-ec2-metadata-token": t })).status).toBe(401);
  });

  it("allows IMDSv1 when HttpTokens is optional but still rejects an invalid supplied token", async () => {
    const { id, origin } = await instance({ httpTokens: "optional" });
    const v1 = await raw(origin, "GET", "/latest/meta-data/instance-id");
    expect(v1.status).toBe(200);
    expect(v1.body).toBe(id);
    expect((await raw(origin, "GET", "/latest/meta-data/instance-id", { "X-aws-ec2-metadata-token": "nope" })).status).toBe(401);
  });

  it("works through @aws-sdk/ec2-metadata-service, which sends //latest/... and a fresh token each time", async () => {
    const { id, origin } = await instance();
    expect(await sdk(origin).request("/latest/meta-data/instance-id", {})).toBe(id);
    const v1Only = new MetadataService({ endpoint: origin, httpOptions: { timeout: 2000 }, retries: 0, disableFetchToken: true });
    await expect(v1Only.request("/latest/meta-data/instance-id", {})).rejects.toThrow(/401/);
  });
});

describe("IMDS paths", () => {
  it("serves every documented meta-data path with AWS's formats", async () => {
    const { id, origin } = await instance();
    const expected: Record<string, string> = {
      "instance-id": id,
      "instance-type": "m5.large",
      "ami-id": "ami-0a887e401f7654935",
      "placement/availability-zone": "us-east-1a",
      "placement/availability-zone-id": "use1-az1",
      "placement/region": "us-east-1",
      "local-ipv4": "172.31.16.10",
      mac: MAC,
      hostname: "ip-172-31-16-10.ec2.internal",
      "local-hostname": "ip-172-31-16-10.ec2.internal",
      "instance-life-cycle": "spot",
      "network/interfaces/macs/": `${MAC}/\n${MAC2}/`,
      [`network/interfaces/macs/${MAC}/device-number`]: "0",
      [`network/interfaces/macs/${MAC}/interface-id`]: "eni-0f95d3625f5c521cc",
      [`network/interfaces/macs/${MAC}/local-ipv4s`]: "172.31.16.10\n172.31.16.11",
      [`network/interfaces/macs/${MAC}/subnet-id`]: "subnet-0aaaaaaaaaaaaaaaa",
      [`network/interfaces/macs/${MAC}/vpc-id`]: "vpc-0bbbbbbbbbbbbbbbb",
      [`network/interfaces/macs/${MAC}/subnet-ipv4-cidr-block`]: "172.31.16.0/20",
      [`network/interfaces/macs/${MAC}/vpc-ipv4-cidr-block`]: "172.31.0.0/16",
      [`network/interfaces/macs/${MAC}/security-group-ids`]: "sg-01\nsg-02",
      [`network/interfaces/macs/${MAC2}/device-number`]: "1",
      [`network/interfaces/macs/${MAC2}/interface-id`]: "eni-0222222222222222a",
      "block-device-mapping/": "ami\nebs1\nroot",
      "block-device-mapping/ami": "/dev/xvda",
      "block-device-mapping/root": "/dev/xvda",
      "block-device-mapping/ebs1": "sdf",
      "events/maintenance/scheduled": "[]",
    };
    const client = sdk(origin);
    for (const [p, body] of Object.entries(expected)) {
      expect(await client.request(`/latest/meta-data/${p}`, {}), p).toBe(body);
    }
  });

  it("lists directories with a trailing slash on sub-directories, with or without the request's trailing slash", async () => {
    const { origin } = await instance();
    const top = await get(origin, "/latest/meta-data/");
    expect(top.status).toBe(200);
    const entries = top.body.split("\n");
    for (const e of ["ami-id", "instance-id", "placement/", "network/", "block-device-mapping/", "events/", "mac", "local-ipv4"]) {
      expect(entries).toContain(e);
    }
    expect(entries).not.toContain("spot/");
    expect((await get(origin, "/latest/meta-data")).body).toBe(top.body);
    expect((await get(origin, "/latest/")).body).toBe("dynamic/\nmeta-data/\nuser-data");
    expect((await get(origin, "/latest/dynamic/instance-identity/")).body).toBe("document\npkcs7\nrsa2048\nsignature");
    expect((await get(origin, "/")).body).toBe("latest");
    expect((await get(origin, "/latest/meta-data/placement/")).body).toBe("availability-zone\navailability-zone-id\nregion");
  });

  it("accepts double slashes and a trailing slash on leaves; unknown paths are 404", async () => {
    const { id, origin } = await instance();
    expect((await get(origin, "//latest//meta-data/instance-id")).body).toBe(id);
    expect((await get(origin, "/latest/meta-data/instance-id/")).body).toBe(id);
    expect((await get(origin, "/2021-03-23/meta-data/instance-id")).body).toBe(id);
    for (const p of [
      "/latest/meta-data/nope",
      "/latest/meta-data/instance-id/extra",
      "/v9/meta-data/instance-id",
      "/latest/meta-data/%zz",
      "/latest/meta-data/../user-data",
    ]) {
      const r = await get(origin, p);
      expect(r.status, p).toBe(404);
      expect(r.body).toContain("<title>404 - Not Found</title>");
    }
  });

  it("serves user-data as the decoded bytes, and 404 when the instance has none", async () => {
    const a = await instance();
    const r = await get(a.origin, "/latest/user-data");
    expect(r.body).toBe("#!/bin/bash\necho hello\n");
    expect(r.headers["content-type"]).toBe("application/octet-stream");
    const b = await instance({ userData: null });
    expect((await get(b.origin, "/latest/user-data")).status).toBe(404);
  });

  it("answers 405 to other methods and HEAD without a body", async () => {
    const { origin } = await instance();
    for (const m of ["POST", "DELETE", "PATCH"]) expect((await raw(origin, m, "/latest/meta-data/instance-id")).status, m).toBe(405);
    expect((await raw(origin, "PUT", "/latest/meta-data/instance-id")).status).toBe(405);
    expect((await raw(origin, "GET", "/latest/api/token", { "X-aws-ec2-metadata-token": await token(origin) })).status).toBe(405);
    const head = await raw(origin, "HEAD", "/latest/meta-data/instance-id", { "X-aws-ec2-metadata-token": await token(origin) });
    expect(head.status).toBe(200);
    expect(head.body).toBe("");
    expect(Number(head.headers["content-length"])).toBeGreaterThan(0);
  });
});

describe("IMDS notices", () => {
  it("spot/instance-action and termination-time are 404 until the model records a notice, then carry its time", async () => {
    const { id, origin } = await instance();
    const client = sdk(origin);
    await expect(client.request("/latest/meta-data/spot/instance-action", {})).rejects.toThrow(/404/);
    expect((await get(origin, "/latest/meta-data/spot/termination-time")).status).toBe(404);
    update(id, { spotInstanceAction: { action: "terminate", time: "2026-03-04T05:06:07.890Z" } });
    const body = await client.request("/latest/meta-data/spot/instance-action", {});
    expect(JSON.parse(body)).toEqual({ action: "terminate", time: "2026-03-04T05:06:07Z" });
    const r = await get(origin, "/latest/meta-data/spot/instance-action");
    expect(r.headers["content-type"]).toBe("application/json");
    expect((await get(origin, "/latest/meta-data/spot/termination-time")).body).toBe("2026-03-04T05:06:07Z");
    expect((await get(origin, "/latest/meta-data/")).body.split("\n")).toContain("spot/");
  });

  it("a stop notice shows its action and no termination-time", async () => {
    const { origin } = await instance({ spotInstanceAction: { action: "stop", time: "2026-03-04T05:06:07Z" } });
    expect(JSON.parse((await get(origin, "/latest/meta-data/spot/instance-action")).body)).toEqual({
      action: "stop",
      time: "2026-03-04T05:06:07Z",
    });
    expect((await get(origin, "/latest/meta-data/spot/termination-time")).status).toBe(404);
  });

  it("events/recommendations/rebalance is 404 before and {noticeTime} after", async () => {
    const { id, origin } = await instance();
    expect((await get(origin, "/latest/meta-data/events/recommendations/rebalance")).status).toBe(404);
    update(id, { rebalanceNoticeTime: "2026-02-03T04:05:06Z" });
    const r = await get(origin, "/latest/meta-data/events/recommendations/rebalance");
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ noticeTime: "2026-02-03T04:05:06Z" });
  });

  it("events/maintenance/scheduled lists active events in AWS's time layout; history keeps the rest", async () => {
    const { id, origin } = await instance();
    update(id, {
      scheduledEvents: [
        {
          code: "system-reboot",
          state: "active",
          eventId: "instance-event-0d59937288b749b32",
          description: "scheduled reboot",
          notBefore: "2019-01-21T09:00:43Z",
          notAfter: "2019-01-21T09:17:23Z",
          notBeforeDeadline: "2019-01-30T09:00:43Z",
        },
        { code: "instance-stop", state: "canceled", eventId: "instance-event-1", description: "old", notBefore: "2019-01-02T03:04:05Z" },
      ],
    });
    expect(JSON.parse((await get(origin, "/latest/meta-data/events/maintenance/scheduled")).body)).toEqual([
      {
        NotBefore: "21 Jan 2019 09:00:43 GMT",
        Code: "system-reboot",
        Description: "scheduled reboot",
        EventId: "instance-event-0d59937288b749b32",
        NotAfter: "21 Jan 2019 09:17:23 GMT",
        State: "active",
        NotBeforeDeadline: "30 Jan 2019 09:00:43 GMT",
      },
    ]);
    const history = JSON.parse((await get(origin, "/latest/meta-data/events/maintenance/history")).body) as {
      NotBefore: string;
      State: string;
    }[];
    expect(history).toEqual([expect.objectContaining({ NotBefore: "2 Jan 2019 03:04:05 GMT", State: "canceled" })]);
  });

  it("closes connections once the instance stops serving (no 404 that would read as 'no notice')", async () => {
    const { id, origin } = await instance();
    update(id, { serving: false });
    await expect(raw(origin, "PUT", "/latest/api/token", { "X-aws-ec2-metadata-token-ttl-seconds": "60" })).rejects.toThrow(
      /socket hang up|ECONNRESET/,
    );
    await expect(sdk(origin).request("/latest/meta-data/instance-id", {})).rejects.toThrow();
  });
});

describe("IMDS instance identity", () => {
  it("serves the document pretty-printed like AWS with a signature that verifies against the certificate", async () => {
    const { id, origin } = await instance();
    const client = sdk(origin);
    const doc = await client.request("/latest/dynamic/instance-identity/document", {});
    expect(doc).toContain(`  "instanceId" : "${id}",\n`);
    expect(doc).toContain(`  "billingProducts" : null,\n`);
    expect(JSON.parse(doc)).toMatchObject({
      accountId: "000000000000",
      architecture: "x86_64",
      availabilityZone: "us-east-1a",
      imageId: "ami-0a887e401f7654935",
      instanceId: id,
      instanceType: "m5.large",
      pendingTime: "2026-01-02T03:04:05Z",
      privateIp: "172.31.16.10",
      region: "us-east-1",
      version: "2017-09-30",
    });
    const sig = await client.request("/latest/dynamic/instance-identity/signature", {});
    expect(verifyIdentity(doc, sig, signer.certificatePem)).toBe(true);
    expect(verifyIdentity(doc.replace(id, "i-0ffffffffffffffff"), sig, signer.certificatePem)).toBe(false);
    for (const p of ["pkcs7", "rsa2048"]) {
      const p7 = await client.request(`/latest/dynamic/instance-identity/${p}`, {});
      expect(verifyIdentityPkcs7(p7, signer.certificatePem)).toBe(doc);
    }
  });
});

describe("IMDS listeners", () => {
  it("gives each instance its own endpoint, reuses it, and stops answering after release", async () => {
    const a = await instance();
    const b = await instance();
    expect(a.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(b.origin).not.toBe(a.origin);
    expect(await imds.endpointFor(a.id)).toBe(a.origin);
    expect((await get(b.origin, "/latest/meta-data/instance-id")).body).toBe(b.id);
    await imds.release(a.id);
    await imds.release(a.id);
    await expect(raw(a.origin, "PUT", "/latest/api/token", { "X-aws-ec2-metadata-token-ttl-seconds": "60" })).rejects.toThrow(
      /ECONNREFUSED/,
    );
  });

  it("rejects oversized headers with 431 and garbage request lines with 400, and keeps serving", async () => {
    const { id, origin } = await instance();
    const huge = await raw(origin, "GET", "/latest/meta-data/instance-id", { "X-Big": "x".repeat(20_000) }).catch((e: Error) => e);
    if (!(huge instanceof Error)) expect(huge.status).toBe(431);
    const port = Number(new URL(origin).port);
    const reply = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, "127.0.0.1", () => s.write("NOT A REQUEST\r\n\r\n"));
      let data = "";
      s.on("data", (c) => (data += c.toString()));
      s.on("close", () => resolve(data));
      s.on("error", reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400/);
    expect((await get(origin, "/latest/meta-data/instance-id")).body).toBe(id);
  });
});

describe("IMDS by source address (linux runtime mode)", () => {
  let shared: ImdsServer;
  let owner: string | null;
  beforeEach(() => {
    owner = null;
  });
  afterAll(async () => shared?.stop());

  it("maps the caller's source IP to its instance through lookupByIp", async () => {
    const id = "i-0aaaaaaaaaaaaaaa1";
    views.set(id, baseView(id));
    const seen: string[] = [];
    shared = await startImds({
      lookup: (i) => views.get(i) ?? null,
      signer,
      lookupByIp: (ip) => {
        seen.push(ip);
        return ip === "127.0.0.1" ? owner : null;
      },
    });
    const origin = await shared.endpointForAddress("127.0.0.1");
    expect(await shared.endpointForAddress("127.0.0.1")).toBe(origin);
    // Nobody owns 127.0.0.1 yet: refused like an instance that is not there.
    await expect(raw(origin, "PUT", "/latest/api/token", { "X-aws-ec2-metadata-token-ttl-seconds": "60" })).rejects.toThrow();
    owner = id;
    expect(await sdk(origin).request("/latest/meta-data/instance-id", {})).toBe(id);
    expect(seen).toContain("127.0.0.1");
  });

  it("refuses source-address mode without lookupByIp", async () => {
    const s = await startImds({ lookup: () => null, signer });
    await expect(s.endpointForAddress("127.0.0.1")).rejects.toThrow(/lookupByIp/);
    await s.stop();
  });
});
