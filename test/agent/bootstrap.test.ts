import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createServer, type Server } from "node:http";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { renderBootstrap, SYSTEMD_UNIT } from "../../agent/deploy/bootstrap.js";
import type { MessageOf } from "../../shared/protocol.js";
import { instancePaths, startFakeImds, type FakeImds } from "./fake-imds.js";
import { startFakeCoordinator, type FakeCoordinator } from "./fake-coordinator.js";
import { buildAgentBundle } from "./bundle.js";

let bundle: { file: string; dir: string };
let http: Server;
let agentUrl: string;
let downloads = 0;
beforeAll(async () => {
  bundle = await buildAgentBundle();
  http = createServer((req, res) => {
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
  it("renders a syntactically valid bash script that keeps awkward user-data intact", () => {
    const user = `#!/bin/bash\necho "it's $HOME" 'SPOTKEEP_USER_DATA_END'\ncat <<EOF\nx\nEOF\n`;
    const script = renderBootstrap({
      coordinatorUrl: "ws://10.0.0.1:7400/agent/v1/ws",
      agentUrl: "http://10.0.0.1:7400/agent/v1/agent.js",
      userUserData: user,
      timeScale: 0.1,
    });
    expect(spawnSync("bash", ["-n"], { input: script }).status).toBe(0);
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

  function boot(userUserData: string) {
    const script = renderBootstrap({ coordinatorUrl: coord.url, agentUrl, userUserData, timeScale: 0.05 });
    const child = spawn("bash", ["-c", script], {
      cwd: root,
      detached: true,
      env: {
        PATH: process.env.PATH,
        AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
        SPOTKEEP_ROOT_DIR: root,
        SPOTKEEP_DEV_DIR: join(root, "dev"),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    procs.push(child);
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d));
    child.stderr!.on("data", (d: Buffer) => (out += d));
    return { child, output: () => out, exited: new Promise<number | null>((r) => child.once("exit", (c) => r(c))) };
  }

  const plan = (ok: boolean) =>
    coord
      .waitFor((m) => m.type === "hello" && (m as MessageOf<"hello">).mode === "restore")
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
    expect(coord.raw.filter((m) => m.type === "hello").map((m) => (m as MessageOf<"hello">).mode)).toEqual(["restore", "run"]);
    expect(downloads).toBeGreaterThanOrEqual(1);
    process.kill(-b.child.pid!, "SIGTERM");
    expect(await b.exited).toBe(0);
  });

  it("stops before the user's user-data when restore fails", async () => {
    void plan(false);
    const b = boot(`echo user-data-ran > "$SPOTKEEP_ROOT_DIR/marker"`);
    expect(await b.exited).toBe(1);
    expect(b.output()).toMatch(/restore failed \(exit 1\); not starting the workload/);
    expect(existsSync(join(root, "marker"))).toBe(false);
  });
});
