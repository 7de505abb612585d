import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { renderBootstrap, SYSTEMD_UNIT, type BootstrapOptions } from "../../agent/deploy/bootstrap.js";
import { buildNoNodeBin } from "../../localcloud/runtime/no-node.js";
import { agentBundleSha256, renderUserData, USER_DATA_LIMIT } from "../../coordinator/bootstrap.js";
import type { MessageOf } from "../../shared/protocol.js";
import { instancePaths, startFakeImds, type FakeImds } from "./fake-imds.js";
import { startFakeCoordinator, type FakeCoordinator } from "./fake-coordinator.js";
import { buildAgentBundle } from "./bundle.js";

let bundle: { file: string; dir: string };
let http: Server;
let agentUrl: string;
let downloads = 0;
let sha256: string;
/** What the test server answers for /runtime/*: the host's node gzipped, a 500, or a corrupted copy. */
let runtimeAnswer: "ok" | "500" | "corrupt" = "ok";
let runtimeDownloads = 0;
const reports: Array<Record<string, string>> = [];
let gzCache: Buffer | null = null;
/** The runtime served: this test's own node binary, gzipped (fast level: it is only moved over loopback). */
const runtimeGz = () => (gzCache ??= gzipSync(readFileSync(process.execPath), { level: 1 }));
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
/** The bundle with one line appended that leaves a trace if it ever runs. */
const tamperedBundle = () =>
  Buffer.concat([
    readFileSync(bundle.file),
    Buffer.from(`\n;require("fs").writeFileSync(process.env.SPOTKEEP_ROOT_DIR+"/tampered-ran","x");\n`),
  ]);
beforeAll(async () => {
  bundle = await buildAgentBundle();
  sha256 = createHash("sha256").update(readFileSync(bundle.file)).digest("hex");
  http = createServer((req, res) => {
    if (req.url === "/agent/v1/boot-report" && req.method === "POST") {
      let body = "";
      req.on("data", (d: Buffer) => (body += d));
      req.on("end", () => {
        reports.push(JSON.parse(body) as Record<string, string>);
        res.writeHead(202).end("{}");
      });
      return;
    }
    if (req.url?.startsWith("/runtime/")) {
      runtimeDownloads++;
      if (runtimeAnswer === "500") return void res.writeHead(500).end();
      const gz = runtimeGz();
      return void res.writeHead(200).end(runtimeAnswer === "corrupt" ? Buffer.concat([gz, Buffer.from("x")]) : gz);
    }
    if (req.url === "/tampered/agent.js") return void res.writeHead(200).end(tamperedBundle());
    if (req.url !== "/agent/v1/agent.js") return void res.writeHead(404).end();
    downloads++;
    res.writeHead(200, { "content-type": "application/javascript" }).end(readFileSync(bundle.file));
  });
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", () => r()));
  agentUrl = `http://127.0.0.1:${(http.address() as AddressInfo).port}/agent/v1/agent.js`;
});
afterAll(async () => {
  await new Promise<void>((r) => http.close(() => r()));
  rmSync(bundle.dir, { recursive: true, force: true });
});

describe("renderBootstrap (pure)", () => {
  it("renders a syntactically valid POSIX sh script (checked by dash where /bin/sh is dash) that keeps awkward user-data intact", () => {
    const user = `#!/bin/bash\necho "it's $HOME" 'SPOTKEEP_USER_DATA_END'\ncat <<EOF\nx\nEOF\n`;
    const script = renderBootstrap({
      coordinatorUrl: "ws://10.0.0.1:7400/agent/v1/ws",
      agentUrl: "http://10.0.0.1:7400/agent/v1/agent.js",
      userUserData: user,
      timeScale: 0.1,
    });
    expect(spawnSync("sh", ["-n"], { input: script }).status).toBe(0);
    expect(script.startsWith("#!/bin/sh\n")).toBe(true);
    expect(script).toContain(user);
    expect(script).toContain("export SPOTKEEP_TIME_SCALE='0.1'");
    expect(script).toContain(SYSTEMD_UNIT);
  });

  it("rejects bad options naming the field", () => {
    expect(() => renderBootstrap({ coordinatorUrl: "http://x", agentUrl: "http://x/a.js", userUserData: "" })).toThrow(
      /coordinatorUrl must be a ws/,
    );
    expect(() => renderBootstrap({ coordinatorUrl: "ws://x", agentUrl: "ftp://x", userUserData: "" })).toThrow(/agentUrl/);
    expect(() => renderBootstrap({ coordinatorUrl: "ws://x", agentUrl: "http://x", userUserData: "", env: { "A-B": "1" } })).toThrow(
      /not a shell identifier/,
    );
    expect(() => renderBootstrap({ coordinatorUrl: "ws://x", agentUrl: "http://x", userUserData: "", agentSha256: "abc" })).toThrow(
      /agentSha256 must be 64 lowercase hex digits/,
    );
    expect(() =>
      renderBootstrap({
        coordinatorUrl: "ws://x",
        agentUrl: "http://x",
        userUserData: "",
        caCertificate: "-----BEGIN CERTIFICATE-----\n$(reboot)\n",
      }),
    ).toThrow(/caCertificate must be PEM/);
  });

  it("the coordinator's user-data carries the bundle's SHA-256 and CA certificate and stays within EC2's 16 KB", () => {
    expect(agentBundleSha256(bundle.file)).toBe(sha256);
    expect(() => agentBundleSha256(join(bundle.dir, "missing.js"))).toThrow(/hashing the agent bundle .*missing\.js/);
    const pem = `-----BEGIN CERTIFICATE-----\n${"QUJD".repeat(400).replace(/(.{64})/g, "$1\n")}\n-----END CERTIFICATE-----\n`;
    const text = renderUserData({
      publicUrl: "https://coordinator.internal:7400",
      userUserData: "echo hi",
      timeScale: 1,
      agentSha256: sha256,
      caCertificate: pem,
    });
    expect(text).toContain(`AGENT_SHA256=${sha256}`);
    expect(text).toContain("export NODE_EXTRA_CA_CERTS=");
    expect(text).toContain("export SPOTKEEP_COORDINATOR='wss://coordinator.internal:7400/agent/v1/ws'");
    expect(text).not.toMatch(/--insecure|-k |NODE_TLS_REJECT_UNAUTHORIZED/);
    // With a 2 KB CA, at least 5 KB of EC2's 16 KB stay for the user's own user-data.
    expect(Buffer.byteLength(text)).toBeLessThan(USER_DATA_LIMIT - 5 * 1024);
    expect(spawnSync("sh", ["-n"], { input: text }).status).toBe(0);
  });
});

describe("bootstrap user-data in a process-runtime-like instance", () => {
  let imds: FakeImds;
  let coord: FakeCoordinator;
  let root: string;
  const procs: ChildProcess[] = [];
  beforeEach(async () => {
    imds = await startFakeImds(instancePaths());
    coord = await startFakeCoordinator();
    root = mkdtempSync(join(tmpdir(), "spotkeep-boot-"));
    mkdirSync(join(root, "dev"));
  });
  afterEach(async () => {
    for (const p of procs.splice(0)) if (p.exitCode === null) process.kill(-p.pid!, "SIGKILL");
    await coord.close();
    await imds.close();
    rmSync(root, { recursive: true, force: true });
  });

  /** Run the bootstrap as an instance of the process runtime would, /bin/sh (dash on Debian) reading it: it is POSIX sh. */
  function run(script: string, path: string | undefined, env: Record<string, string> = {}) {
    const child = spawn("sh", ["-c", script], {
      cwd: root,
      detached: true,
      env: {
        PATH: path,
        AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
        SPOTKEEP_ROOT_DIR: root,
        SPOTKEEP_DEV_DIR: join(root, "dev"),
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    procs.push(child);
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d));
    child.stderr!.on("data", (d: Buffer) => (out += d));
    return { child, output: () => out, exited: new Promise<number | null>((r) => child.once("exit", (c) => r(c))) };
  }

  function boot(userUserData: string, o: Partial<BootstrapOptions> = {}) {
    return run(
      renderBootstrap({ coordinatorUrl: coord.url, agentUrl, userUserData, timeScale: 0.05, agentSha256: sha256, ...o }),
      process.env.PATH,
    );
  }

  const plan = (ok: boolean, timeoutMs?: number) =>
    coord
      .waitFor((m) => m.type === "hello" && (m as MessageOf<"hello">).mode === "restore", timeoutMs)
      .then(() =>
        coord.send({
          type: "restore-plan",
          statefulInstance: "orders-db",
          generation: 2,
          previousClean: true,
          volumes: ok ? [] : [{ volumeId: "vol-0aaaaaaaaaaaaaaaa", device: "/dev/sdf", mountPoint: "/data", fsType: "ext4" }],
          hooks: { timeoutSeconds: 60 },
          deviceTimeoutMs: 200,
        } as never),
      );

  it("downloads the agent, restores, runs the user's user-data, then starts the agent in run mode", async () => {
    void plan(true);
    const b = boot(`echo user-data-ran > "$SPOTKEEP_ROOT_DIR/marker"`);
    await coord.waitFor((m) => m.type === "ready", 20_000);
    expect(coord.raw.find((m) => m.type === "restored")).toMatchObject({ ok: true });
    expect(readFileSync(join(root, "marker"), "utf8")).toBe("user-data-ran\n");
    const hellos = coord.raw.filter((m) => m.type === "hello") as MessageOf<"hello">[];
    expect(hellos.map((m) => m.mode)).toEqual(["restore", "run"]);
    // One session secret for the instance, from restore through run.
    expect(hellos[0]!.sessionSecret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(hellos[1]!.sessionSecret).toBe(hellos[0]!.sessionSecret);
    expect(downloads).toBeGreaterThanOrEqual(1);
    process.kill(-b.child.pid!, "SIGTERM");
    expect(await b.exited).toBe(0);
  });

  it("refuses a tampered agent bundle: exits non-zero, the bundle never runs, nothing connects", async () => {
    const b = boot(`echo user-data-ran > "$SPOTKEEP_ROOT_DIR/marker"`, {
      agentUrl: agentUrl.replace("/agent/v1/agent.js", "/tampered/agent.js"),
      downloadAttempts: 2,
    });
    expect(await b.exited).toBe(1);
    expect(b.output()).toMatch(new RegExp(`refusing the agent downloaded from .*: sha256 [0-9a-f]{64}, expected ${sha256}`));
    expect(b.output()).toMatch(/cannot get a good agent/);
    expect(existsSync(join(root, "tampered-ran"))).toBe(false);
    expect(existsSync(join(root, "marker"))).toBe(false);
    expect(existsSync(join(root, "opt/spotkeep/spotkeep-agent.js"))).toBe(false);
    expect(coord.raw.filter((m) => m.type === "hello")).toEqual([]);
  });

  it("replaces a tampered copy left from an earlier boot with a checked download", async () => {
    mkdirSync(join(root, "opt/spotkeep"), { recursive: true });
    writeFileSync(join(root, "opt/spotkeep/spotkeep-agent.js"), tamperedBundle());
    void plan(true);
    const b = boot("");
    await coord.waitFor((m) => m.type === "ready", 20_000);
    expect(b.output()).toMatch(/discarding .*spotkeep-agent\.js: not the coordinator's agent/);
    expect(existsSync(join(root, "tampered-ran"))).toBe(false);
    expect(
      createHash("sha256")
        .update(readFileSync(join(root, "opt/spotkeep/spotkeep-agent.js")))
        .digest("hex"),
    ).toBe(sha256);
    process.kill(-b.child.pid!, "SIGTERM");
    await b.exited;
  });

  it.skipIf(spawnSync("sh", ["-c", "command -v openssl"]).status !== 0)(
    "downloads over https from a coordinator with a private CA when the user-data carries the CA, and refuses without it",
    async () => {
      const pki = join(root, "pki");
      mkdirSync(pki);
      const ssl = (args: string) => {
        const r = spawnSync("sh", ["-c", `openssl ${args}`], { cwd: pki, encoding: "utf8" });
        if (r.status !== 0) throw new Error(`openssl ${args}: ${r.stderr}`);
      };
      ssl(`req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=spotkeep-test-ca`);
      ssl(`req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1`);
      writeFileSync(join(pki, "ext"), "subjectAltName=IP:127.0.0.1\n");
      ssl(`x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 1 -extfile ext`);
      const https = createHttpsServer({ key: readFileSync(join(pki, "srv.key")), cert: readFileSync(join(pki, "srv.pem")) }, (req, res) => {
        if (req.url !== "/agent/v1/agent.js") return void res.writeHead(404).end();
        res.writeHead(200).end(readFileSync(bundle.file));
      });
      await new Promise<void>((r) => https.listen(0, "127.0.0.1", () => r()));
      try {
        const httpsUrl = `https://127.0.0.1:${(https.address() as AddressInfo).port}/agent/v1/agent.js`;
        const without = boot("", { agentUrl: httpsUrl, downloadAttempts: 1 });
        expect(await without.exited).toBe(1);
        expect(without.output()).toMatch(/cannot get a good agent/);
        rmSync(join(root, "opt"), { recursive: true, force: true });
        void plan(true);
        const withCa = boot("", { agentUrl: httpsUrl, caCertificate: readFileSync(join(pki, "ca.pem"), "utf8") });
        await coord.waitFor((m) => m.type === "ready", 20_000);
        expect(readFileSync(join(root, "opt/spotkeep/coordinator-ca.pem"), "utf8")).toContain("BEGIN CERTIFICATE");
        process.kill(-withCa.child.pid!, "SIGTERM");
        await withCa.exited;
      } finally {
        https.closeAllConnections();
        await new Promise<void>((r) => https.close(() => r()));
      }
    },
  );

  describe("on an image with no Node.js (only a POSIX sh, coreutils and curl)", () => {
    let noNodeBin: string;
    const base = () => agentUrl.replace("/agent/v1/agent.js", "");
    beforeAll(async () => {
      // The host's tools without node (localcloud's stock-image PATH).
      noNodeBin = mkdtempSync(join(tmpdir(), "spotkeep-nonode-"));
      await buildNoNodeBin(noNodeBin);
      expect(spawnSync("sh", ["-c", "command -v node"], { env: { PATH: noNodeBin } }).status).not.toBe(0);
      runtimeGz();
    });
    afterAll(() => rmSync(noNodeBin, { recursive: true, force: true }));
    beforeEach(() => {
      runtimeAnswer = "ok";
      runtimeDownloads = 0;
      reports.length = 0;
    });

    function bootNoNode(o: Partial<BootstrapOptions> = {}) {
      const gz = runtimeGz();
      const script = renderBootstrap({
        coordinatorUrl: coord.url,
        agentUrl,
        reportUrl: `${base()}/agent/v1/boot-report`,
        userUserData: `echo "node: $(command -v node)" > "$SPOTKEEP_ROOT_DIR/which-node"`,
        timeScale: 0.05,
        agentSha256: sha256,
        runtime: {
          version: process.versions.node,
          baseUrls: [`${base()}/runtime`],
          arches: { x64: { gzSha256: sha(gz), nodeSha256: sha(readFileSync(process.execPath)) } },
        },
        ...o,
      });
      return run(script, noNodeBin, { SPOTKEEP_LOCALCLOUD_ARCH: "x86_64" });
    }

    it("downloads the runtime, checks its SHA-256, restores and runs the agent on it; a boot on the same root keeps it", async () => {
      void plan(true, 30_000);
      const first = bootNoNode();
      await coord.waitFor((m) => m.type === "ready", 30_000);
      expect(first.output()).toMatch(/no Node\.js 20\.19\+ on the image: downloading Node\.js [\d.]+ for linux-x64 from http/);
      expect(runtimeDownloads).toBe(1);
      const kept = join(root, "opt/spotkeep/node/bin/node");
      expect(sha(readFileSync(kept))).toBe(sha(readFileSync(process.execPath)));
      // The user's user-data ran with the image's PATH: still no node on it.
      expect(readFileSync(join(root, "which-node"), "utf8")).toBe("node: \n");
      process.kill(-first.child.pid!, "SIGTERM");
      await first.exited;

      const count = (t: string) => coord.raw.filter((m) => m.type === t).length;
      const readyBefore = count("ready");
      const hellosBefore = count("hello");
      const second = bootNoNode();
      await coord.waitFor((m) => m.type === "hello" && count("hello") > hellosBefore, 30_000);
      await plan(true);
      await coord.waitFor((m) => m.type === "ready" && count("ready") > readyBefore, 30_000);
      expect(second.output()).toMatch(/using Node\.js [\d.]+ kept on the root disk/);
      expect(runtimeDownloads).toBe(1);
      expect(reports).toEqual([]);
      process.kill(-second.child.pid!, "SIGTERM");
      await second.exited;
    });

    it("a runtime download answered 500 is reported to the coordinator with the identity proof, and nothing runs", async () => {
      runtimeAnswer = "500";
      const b = bootNoNode();
      expect(await b.exited).toBe(1);
      expect(runtimeDownloads).toBe(5);
      expect(reports).toHaveLength(1);
      const r = reports[0]!;
      expect(r.stage).toBe("runtime");
      expect(r.reason).toMatch(
        /^cannot download the runtime from http:\/\/127\.0\.0\.1:\d+\/runtime\/node-linux-x64\.gz \(after 5 attempts\)$/,
      );
      expect(Buffer.from(r.document!, "base64").toString("utf8")).toBe(imds.paths.get("/latest/dynamic/instance-identity/document"));
      expect(r.signature).toBe(imds.paths.get("/latest/dynamic/instance-identity/signature"));
      expect(b.output()).toMatch(/told the coordinator/);
      expect(coord.raw.filter((m) => m.type === "hello")).toEqual([]);
      expect(existsSync(join(root, "opt/spotkeep/node"))).toBe(false);
      expect(existsSync(join(root, "which-node"))).toBe(false);
    });

    it("a corrupted runtime is refused by its SHA-256, never run, and reported", async () => {
      runtimeAnswer = "corrupt";
      const b = bootNoNode({ runtimeAttempts: 2 });
      expect(await b.exited).toBe(1);
      expect(reports[0]?.reason).toMatch(
        /^refusing the runtime from \S+: sha256 [0-9a-f]{64}, expected [0-9a-f]{64} \(after 2 attempts\)$/,
      );
      expect(existsSync(join(root, "opt/spotkeep/node"))).toBe(false);
      expect(coord.raw.filter((m) => m.type === "hello")).toEqual([]);
    });

    it("with no runtime for the instance's architecture it reports at once, downloading nothing", async () => {
      const b = bootNoNode({ runtime: undefined });
      expect(await b.exited).toBe(1);
      expect(runtimeDownloads).toBe(0);
      expect(reports[0]).toMatchObject({ stage: "runtime" });
      expect(reports[0]!.reason).toMatch(
        /^the image has no Node\.js 20\.19\+ \(none\) and the coordinator serves no runtime for linux-x64$/,
      );
    });
  });

  it("stops before the user's user-data when restore fails", async () => {
    void plan(false);
    const b = boot(`echo user-data-ran > "$SPOTKEEP_ROOT_DIR/marker"`);
    expect(await b.exited).toBe(1);
    expect(b.output()).toMatch(/restore failed \(exit 1\); not starting the workload/);
    expect(existsSync(join(root, "marker"))).toBe(false);
  });
});
