/**
 * The bundled agent (dist/spotkeep-agent.js) as a real process against the fake IMDS and a fake
 * coordinator: run mode (hello, inventory, ready, notice, quiesce, autonomous quiesce, SIGTERM) and
 * restore mode (plan -> restored -> exit 0; failure -> exit 1 + error), then ready from run.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statfsSync, symlinkSync, writeFileSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentMessage, MessageOf } from "../../shared/protocol.js";
import { byIdName } from "../../agent/storage/devices.js";
import { instancePaths, startFakeImds, type FakeImds } from "./fake-imds.js";
import { startFakeCoordinator, type FakeCoordinator } from "./fake-coordinator.js";
import { buildAgentBundle } from "./bundle.js";

let bundle: string;
let bundleDir: string;
const VOL = "vol-0123456789abcdef0";
const ACTION = "/latest/meta-data/spot/instance-action";

let imds: FakeImds;
let coord: FakeCoordinator;
let base: string;
let rootDir: string;
let devDir: string;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  // Always test the current sources (a private build, ~1 s).
  ({ file: bundle, dir: bundleDir } = await buildAgentBundle());
});
beforeEach(async () => {
  imds = await startFakeImds(instancePaths());
  coord = await startFakeCoordinator();
  base = mkdtempSync(join(tmpdir(), "spotkeep-agentproc-"));
  rootDir = join(base, "root");
  devDir = join(base, "dev");
  mkdirSync(rootDir);
  mkdirSync(devDir);
  mkdirSync(join(base, "vol"));
  writeFileSync(join(base, "vol", "data"), "x");
  symlinkSync(join(base, "vol"), join(devDir, byIdName(VOL)));
  symlinkSync(join(base, "vol"), join(devDir, "sdf"));
  coord.welcomeConfig.mounts = [{ volumeId: VOL, device: "/dev/sdf", mountPoint: "/var/lib/data", fsType: "ext4" }];
  coord.welcomeConfig.hooks = { preStop: "echo stopping-the-db", timeoutSeconds: 60 };
});
afterEach(async () => {
  for (const p of procs.splice(0)) if (p.exitCode === null) p.kill("SIGKILL");
  await coord.close();
  await imds.close();
  rmSync(base, { recursive: true, force: true });
});
afterAll(() => rmSync(bundleDir, { recursive: true, force: true }));

function startAgent(mode: "run" | "restore", env: Record<string, string> = {}) {
  // A copy in an empty folder: proves the bundle needs no node_modules.
  const dir = join(base, "bin");
  mkdirSync(dir, { recursive: true });
  if (!existsSync(join(dir, "agent.js"))) writeFileSync(join(dir, "agent.js"), readFileSync(bundle));
  const child = spawn(process.execPath, [join(dir, "agent.js"), mode], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
      SPOTKEEP_COORDINATOR: coord.url,
      SPOTKEEP_DEV_DIR: devDir,
      SPOTKEEP_ROOT_DIR: rootDir,
      SPOTKEEP_TIME_SCALE: "0.05",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  procs.push(child);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  return { child, exited, output: () => out };
}

describe("bundled agent, run mode", () => {
  it("says hello, sends ready and inventory, reports a notice once, quiesces on command, and exits 0 on SIGTERM", async () => {
    const a = startAgent("run");
    const hello = (await coord.waitFor((m) => m.type === "hello")) as MessageOf<"hello">;
    expect(hello.mode).toBe("run");
    expect(JSON.parse(hello.identity.document).instanceId).toBe("i-0123456789abcdef0");
    const inv = (await coord.waitFor((m) => m.type === "inventory")) as MessageOf<"inventory">;
    expect(inv).toMatchObject({
      instanceId: "i-0123456789abcdef0",
      availabilityZone: "us-east-1a",
      instanceType: "m5.large",
      imageId: "ami-0a887e401f7654935",
    });
    expect(inv.enis).toEqual([
      {
        mac: "0e:49:61:0f:c3:11",
        interfaceId: "eni-0f95d3625f5c521cc",
        deviceNumber: 0,
        privateIps: ["10.0.1.10"],
        subnetId: "subnet-0123456789abcdef0",
      },
    ]);
    expect(inv.devices).toEqual([{ device: join(devDir, byIdName(VOL)), volumeId: VOL, requestedName: "/dev/sdf", kind: "directory" }]);
    await coord.waitFor((m) => m.type === "ready");
    // ready ends the coordinator's restore step: it does not wait for the inventory's IMDS calls
    const order = coord.raw.map((m) => m.type).filter((t) => t === "ready" || t === "inventory");
    expect(order.slice(0, 2)).toEqual(["ready", "inventory"]);

    imds.set(ACTION, JSON.stringify({ action: "terminate", time: "2030-01-01T00:02:00Z" }));
    const notice = (await coord.waitFor((m) => m.type === "notice")) as MessageOf<"notice">;
    expect(notice).toMatchObject({ kind: "spot-interruption", action: "terminate", deadline: "2030-01-01T00:02:00.000Z" });
    await new Promise((r) => setTimeout(r, 300)); // several more polls (50 ms each)
    expect(coord.raw.filter((m) => m.type === "notice")).toHaveLength(1);

    const qid = coord.send({
      type: "quiesce",
      reason: "spot interruption",
      deadline: new Date(Date.now() + 60_000).toISOString(),
      unmount: true,
    } as never);
    const q = (await coord.waitFor((m) => m.type === "quiesced")) as MessageOf<"quiesced">;
    expect(q).toMatchObject({
      ref: qid,
      clean: true,
      filesystems: [{ mountPoint: "/var/lib/data", frozen: false, reason: "directory volume (process runtime)" }],
    });
    expect(q.steps.find((s) => s.name === "preStop")?.detail).toMatch(/stopping-the-db/);

    a.child.kill("SIGTERM");
    expect(await a.exited).toBe(0);
    const lines = a.output().trim().split("\n");
    for (const l of lines) expect(() => JSON.parse(l)).not.toThrow(); // JSON-lines logs only
  });

  it("reports a kept directory volume's filesystem usage (statfs of its mount folder) and the host's network interfaces", async () => {
    // The volume mounted as restore leaves it in the process runtime: a link from the mount point.
    mkdirSync(join(rootDir, "var", "lib"), { recursive: true });
    symlinkSync(join(base, "vol"), join(rootDir, "var", "lib", "data"));
    const a = startAgent("run");
    const inv = (await coord.waitFor((m) => m.type === "inventory")) as MessageOf<"inventory">;
    expect(inv.devices).toEqual([expect.objectContaining({ volumeId: VOL, kind: "directory", mountPoint: "/var/lib/data" })]);
    const st = statfsSync(join(base, "vol"));
    const row = inv.filesystems?.find((f) => f.volumeId === VOL);
    expect(row).toMatchObject({ mountPoint: "/var/lib/data", fsType: "directory", sizeBytes: st.blocks * st.bsize });
    expect(row!.usedBytes + row!.availableBytes).toBeLessThanOrEqual(row!.sizeBytes);
    const nics = Object.entries(networkInterfaces()).filter(([, list]) => list?.some((x) => !x.internal));
    expect(inv.networkInterfaces?.map((n) => n.name).sort()).toEqual(nics.map(([name]) => name).sort());
    a.child.kill("SIGTERM");
    expect(await a.exited).toBe(0);
  });

  it("quiesces on its own when the coordinator is unreachable at a notice, and delivers the report later", async () => {
    const a = startAgent("run");
    await coord.waitFor((m) => m.type === "ready");
    const url = coord.url;
    await coord.close(); // the coordinator goes away
    imds.set(ACTION, JSON.stringify({ action: "terminate", time: new Date(Date.now() + 120_000).toISOString() }));
    // autonomous quiesce after 5 s model = 250 ms real; give it time, then bring a coordinator back on the same port
    await new Promise((r) => setTimeout(r, 1500));
    const port = Number(new URL(url).port);
    const { WebSocketServer } = await import("ws");
    const got: AgentMessage[] = [];
    const wss = new WebSocketServer({ port, host: "127.0.0.1", path: "/agent/v1/ws" });
    wss.on("connection", (ws) => {
      ws.on("message", (d) => {
        const m = JSON.parse(d.toString()) as AgentMessage;
        if (m.type === "ack") return;
        got.push(m);
        ws.send(JSON.stringify({ v: 1, id: `c-${got.length}`, type: "ack", ref: m.id }));
        if (m.type === "hello")
          ws.send(
            JSON.stringify({ v: 1, id: "c-w", type: "welcome", statefulInstance: "orders-db", generation: 1, config: coord.welcomeConfig }),
          );
      });
    });
    try {
      await expect.poll(() => got.map((m) => m.type), { timeout: 15_000 }).toEqual(expect.arrayContaining(["notice", "quiesced"]));
      const q = got.find((m) => m.type === "quiesced") as MessageOf<"quiesced">;
      expect(q.ref).toBeUndefined();
      expect(q.steps.map((s) => s.name)).toContain("preStop");
      // The coordinator's own quiesce afterwards gets that quiesce's report (not a made-up clean one).
      const deadline = new Date(Date.now() + 60_000).toISOString();
      for (const c of wss.clients)
        c.send(JSON.stringify({ v: 1, id: "c-quiesce", type: "quiesce", reason: "spot interruption", deadline, unmount: true }));
      await expect.poll(() => got.some((m) => m.type === "quiesced" && m.ref === "c-quiesce"), { timeout: 10_000 }).toBe(true);
      const answer = got.find((m) => m.type === "quiesced" && m.ref === "c-quiesce") as MessageOf<"quiesced">;
      expect({ clean: answer.clean, steps: answer.steps }).toEqual({ clean: q.clean, steps: q.steps });
    } finally {
      a.child.kill("SIGTERM");
      await a.exited;
      for (const c of wss.clients) c.terminate();
      await new Promise<void>((r) => wss.close(() => r()));
    }
  });
});

describe("bundled agent, restore mode", () => {
  function sendPlanOnHello(over: Record<string, unknown> = {}) {
    void coord
      .waitFor((m) => m.type === "hello")
      .then(() =>
        setTimeout(
          () =>
            coord.send({
              type: "restore-plan",
              statefulInstance: "orders-db",
              generation: 2,
              previousClean: true,
              volumes: [{ volumeId: VOL, device: "/dev/sdf", mountPoint: "/var/lib/data", fsType: "ext4" }],
              hooks: { postRestore: "echo started-db", timeoutSeconds: 60 },
              deviceTimeoutMs: 2000,
              ...over,
            } as never),
          50,
        ),
      );
  }

  it("restores from the plan, reports restored, exits 0; run then sends ready with the restore timings", async () => {
    sendPlanOnHello();
    const r = startAgent("restore");
    expect(await r.exited).toBe(0);
    const hello = coord.raw.find((m) => m.type === "hello") as MessageOf<"hello">;
    expect(hello.mode).toBe("restore");
    const restored = coord.raw.find((m) => m.type === "restored") as MessageOf<"restored">;
    expect(restored).toMatchObject({ ok: true, volumes: [{ volumeId: VOL, mountPoint: "/var/lib/data", checked: false }] });
    expect(readFileSync(join(rootDir, "var/lib/data/data"), "utf8")).toBe("x");

    const a = startAgent("run");
    const ready = (await coord.waitFor((m) => m.type === "ready")) as MessageOf<"ready">;
    expect(ready.steps.map((s) => s.name)).toEqual([`device:${VOL}`, "mount:/var/lib/data", "postRestore"]);
    const inv = (await coord.waitFor(
      (m) => m.type === "inventory" && (m as MessageOf<"inventory">).devices[0]?.mountPoint !== undefined,
    )) as MessageOf<"inventory">;
    expect(inv.devices[0]!.mountPoint).toBe("/var/lib/data");
    a.child.kill("SIGTERM");
    expect(await a.exited).toBe(0);
  });

  it("attach: secondary: configures the stable ENI (found in IMDS, its link by MAC) before the volumes, and releases it at a quiesce", async () => {
    const macs = "/latest/meta-data/network/interfaces/macs/";
    const mac = "0e:49:61:0f:c3:22";
    const eni = { eniId: "eni-0a0b0c0d0e0f01234", privateIp: "10.0.1.77" };
    imds.set(macs, `0e:49:61:0f:c3:11/\n${mac}/`);
    imds.set(`${macs}${mac}/interface-id`, eni.eniId);
    imds.set(`${macs}${mac}/device-number`, "1");
    imds.set(`${macs}${mac}/local-ipv4s`, eni.privateIp);
    imds.set(`${macs}${mac}/subnet-ipv4-cidr-block`, "10.0.0.0/20");
    const netDir = join(base, "net");
    mkdirSync(join(netDir, "eth1"), { recursive: true });
    writeFileSync(join(netDir, "eth1", "address"), `${mac}\n`);
    sendPlanOnHello({ eni });
    const r = startAgent("restore", { SPOTKEEP_NET_DIR: netDir });
    expect(await r.exited, r.output()).toBe(0);
    const restored = coord.raw.find((m) => m.type === "restored") as MessageOf<"restored">;
    expect(restored).toMatchObject({ ok: true, network: { eniId: eni.eniId, ok: true, link: "eth1" } });
    expect(restored.steps.map((s) => s.name).slice(0, 2)).toEqual([`eni:${eni.eniId}`, "eni-configure:eth1"]);
    expect(JSON.parse(readFileSync(join(netDir, "eth1", "configured"), "utf8"))).toMatchObject({ address: "10.0.1.77/20", table: 10001 });

    // As after a reboot: the OS forgot the address; the run-mode agent puts it back.
    rmSync(join(netDir, "eth1", "configured"));
    writeFileSync(join(netDir, "eth1", "operstate"), "down\n");
    const a = startAgent("run", { SPOTKEEP_NET_DIR: netDir });
    await coord.waitFor((m) => m.type === "ready");
    await expect.poll(() => existsSync(join(netDir, "eth1", "configured")), { timeout: 10_000 }).toBe(true);
    expect(readFileSync(join(netDir, "eth1", "operstate"), "utf8")).toBe("up\n");
    const qid = coord.send({
      type: "quiesce",
      reason: "cutover",
      deadline: new Date(Date.now() + 60_000).toISOString(),
      unmount: true,
      releaseEni: eni,
    } as never);
    const q = (await coord.waitFor((m) => m.type === "quiesced")) as MessageOf<"quiesced">;
    expect(q).toMatchObject({ ref: qid, clean: true, network: { eniId: eni.eniId, ok: true, link: "eth1" } });
    expect(existsSync(join(netDir, "eth1", "configured"))).toBe(false);
    expect(readFileSync(join(netDir, "eth1", "operstate"), "utf8")).toBe("down\n");
    // Released for good: a restarted agent does not put it back.
    expect(existsSync(join(rootDir, "var/lib/spotkeep-agent", "stable-eni.json"))).toBe(false);
    a.child.kill("SIGTERM");
    expect(await a.exited).toBe(0);
  });

  it("exits non-zero when the stable ENI never appears, without touching the volumes", async () => {
    sendPlanOnHello({ eni: { eniId: "eni-0a0b0c0d0e0f09999", privateIp: "10.0.1.78" }, deviceTimeoutMs: 1000 });
    const r = startAgent("restore", { SPOTKEEP_NET_DIR: join(base, "net") });
    expect(await r.exited).toBe(1);
    expect(r.output()).toMatch(/configuring eni-0a0b0c0d0e0f09999 \(10.0.1.78\): waiting for eni-0a0b0c0d0e0f09999 in IMDS/);
    expect(coord.raw.find((m) => m.type === "restored")).toMatchObject({ ok: false, network: { ok: false }, volumes: [] });
    expect(existsSync(join(rootDir, "var/lib/data"))).toBe(false);
  });

  it("exits non-zero with the reason and reports an error when a volume never appears", async () => {
    sendPlanOnHello({
      volumes: [{ volumeId: "vol-0aaaaaaaaaaaaaaaa", device: "/dev/sdg", mountPoint: "/var/lib/other", fsType: "ext4" }],
      deviceTimeoutMs: 1000,
    });
    const r = startAgent("restore");
    expect(await r.exited).toBe(1);
    expect(r.output()).toMatch(/waiting for the device of vol-0aaaaaaaaaaaaaaaa/);
    expect(coord.raw.find((m) => m.type === "restored")).toMatchObject({ ok: false });
    expect(coord.raw.find((m) => m.type === "error")).toMatchObject({ code: "restore-failed" });
  });
});
