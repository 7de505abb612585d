/**
 * Bad input changes nothing: a bad spec, a forged identity document and malformed WebSocket
 * frames are each rejected with a clear error and the store is untouched.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFile } from "node:child_process";
import WebSocket from "ws";
import { newMessageId } from "../../shared/protocol.js";
import { parseSpec } from "../../shared/spec.js";
import { loadOrCreateSigner } from "../../localcloud/imds/identity.js";
import type { IdentitySigner } from "../../localcloud/imds/types.js";
import type { Coordinator } from "../../coordinator/service.js";
import { parseConfig } from "../../coordinator/config.js";
import { inProcessCoordinator, ROOT, startEnv, until, type Env } from "./harness.js";

let dir: string;
let env: Env;
let coord: Coordinator;
let signer: IdentitySigner;
let forger: IdentitySigner;
let managedId: string;

const api = async (method: string, path: string, body?: string, token = "test-admin-token-0123456789") => {
  const res = await fetch(`${coord.url}/api/v1/${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body,
  });
  return { status: res.status, body: (await res.json()) as any };
};
const doc = (instanceId: string) =>
  JSON.stringify(
    {
      accountId: "000000000000",
      availabilityZone: "us-east-1a",
      instanceId,
      instanceType: "m5.large",
      imageId: "ami-0123456789abcdef0",
      privateIp: "172.31.0.10",
      region: "us-east-1",
      pendingTime: new Date().toISOString(),
      version: "2017-09-30",
    },
    null,
    2,
  );
const hello = (document: string, signature: string) =>
  JSON.stringify({
    v: 1,
    id: newMessageId("h"),
    type: "hello",
    identity: { document, signature },
    agentVersion: "0.1.0",
    mode: "run",
    sessionSecret: "test-session-secret-0123456789abcdefghijklmno",
  });

function session(): Promise<{ ws: WebSocket; frames: any[]; closed: Promise<number> }> {
  const ws = new WebSocket(coord.wsUrl);
  const frames: any[] = [];
  ws.on("message", (d) => frames.push(JSON.parse(String(d))));
  const closed = new Promise<number>((r) => ws.on("close", (c) => r(c)));
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve({ ws, frames, closed }));
    ws.once("error", reject);
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "spotkeep-bad-"));
  signer = await loadOrCreateSigner(join(dir, "signer"));
  forger = await loadOrCreateSigner(join(dir, "forger"));
  env = await startEnv(dir, 1, { runtime: "none", profile: "instant" });
  coord = await inProcessCoordinator(env, join(dir, "coord"), 1, { identityCertificate: signer.certificatePem });
  // A managed generation: create an instance; with no agent it waits for ready at the restore step.
  await coord.views.createInstance(parseSpec(env.spec("target", { workload: false })));
  managedId = await until("generation 1 to launch", async () => (await coord.store.generations.get("target", 1))?.ec2InstanceId);
  await until("the create workflow to reach restore", async () =>
    (await coord.store.steps.list((await coord.store.workflows.listFor("target"))[0]!.id)).some((s) => s.name === "restore"),
  );
});
afterAll(async () => {
  await coord?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("bad input is rejected and changes nothing", () => {
  it("rejects a bad spec with the field named, and a duplicate name with a conflict", async () => {
    const before = await coord.store.counts();
    const bad = { ...env.spec("bad-one"), persistence: { volumes: [{ device: "/dev/foo", sizeGiB: 0, mountPoint: "data" }] } };
    const r = await api("POST", "instances", JSON.stringify(bad));
    expect(r.status).toBe(400);
    expect(r.body.error.message).toMatch(/persistence\.volumes\[0\]\.device/);
    expect(r.body.error.message).toMatch(/persistence\.volumes\[0\]\.mountPoint: must be an absolute path/);
    const dup = await api("POST", "instances", JSON.stringify(env.spec("target")));
    expect(dup.status).toBe(409);
    const notJson = await api("POST", "instances", "{nope");
    expect(notJson.status).toBe(400);
    expect(await coord.store.counts()).toEqual(before);
  });

  it("refuses spec features the runbooks do not carry out yet, naming the field; nothing changes", async () => {
    const before = await coord.store.counts();
    const spec = env.spec("mbb-one");
    const mbb = {
      ...spec,
      persistence: { ...spec.persistence, network: { privateIp: "same-eni", attach: "secondary" } },
    };
    const r = await api("POST", "instances", JSON.stringify(mbb));
    expect(r.status).toBe(400);
    // Make-before-break boots the replacement before a root could be captured: root persistence is refused with it.
    expect(r.body.error.message).toBe(
      "persistence.root: cannot be true with persistence.network.attach: secondary (make-before-break boots the replacement from launch.imageId)",
    );
    expect(await coord.store.counts()).toEqual(before);
  });

  it("refuses a forged identity document with a clear error; nothing changes", async () => {
    const before = await coord.store.counts();
    const { ws, frames, closed } = await session();
    const d = doc(managedId);
    ws.send(hello(d, forger.signRsaSha256(d)));
    expect(await closed).toBe(1008);
    expect(frames[0]).toMatchObject({ type: "error", code: "forged-identity" });
    expect(frames[0].message).toMatch(/signature does not verify against the configured certificate/);
    expect(coord.hub.connected).toBe(0);
    expect(await coord.store.counts()).toEqual(before);
  });

  it("closes a session that sends malformed frames after a genuine hello; nothing changes", async () => {
    for (const frame of [
      "{not json",
      JSON.stringify({ v: 1, id: "x", type: "ready", instanceId: "nope", steps: [] }),
      JSON.stringify({ v: 1, id: "y", type: "notice", noticeId: "n", kind: "spot-interruption", observedAt: "yesterday", raw: "" }),
    ]) {
      const { ws, frames, closed } = await session();
      const d = doc(managedId);
      ws.send(hello(d, signer.signRsaSha256(d)));
      await until("welcome", () => frames.length > 0);
      expect(frames[0]).toMatchObject({ type: "welcome", statefulInstance: "target" });
      const before = await coord.store.counts();
      ws.send(frame);
      expect(await closed).toBe(1007);
      expect(await coord.store.counts()).toEqual(before);
    }
    expect((await coord.store.instances.list()).map((i) => i.state)).toEqual(["creating"]);
  });

  it("validates the coordinator config naming the field", () => {
    expect(() => parseConfig({ listen: "nope" })).toThrow(/listen: must be host:port/);
    expect(() => parseConfig({ timeScale: -1 })).toThrow(/timeScale: must be positive/);
    expect(() => parseConfig({ ec2Endpoint: "ftp://x" })).toThrow(/ec2Endpoint: must be an http/);
    expect(() => parseConfig({ bogus: 1 })).toThrow(/unknown field "bogus"/);
  });

  it("spotkeep coordinator exits 1 with the field named for a bad config file", async () => {
    const f = join(dir, "bad.yaml");
    writeFileSync(f, "listen: 7400\nregion: mars\n");
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const c = execFile(process.execPath, [join(ROOT, "bin", "spotkeep.js"), "coordinator", "--config", f], (err, _o, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
      );
      void c;
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/listen: /);
    expect(r.stderr).toMatch(/region: is not an AWS region/);
  });
});
