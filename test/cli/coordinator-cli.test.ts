/**
 * `spotkeep coordinator` as a process (the built CLI): started against a localcloud, it pins
 * localcloud's identity certificate (fetched by the CLI, not the service), serves /healthz and the
 * agent bundle, and stops on SIGTERM.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Env, OWNER_ENV, ROOT, startEnv, until } from "../coordinator/harness.js";
import { CLI, ensureBuilt } from "./built.js";

let dir: string;
let env: Env;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-cli-"));
  env = await startEnv(dir, 1, { runtime: "none", profile: "instant" });
});
afterEach(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  children.clear();
});
afterAll(async () => {
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** `nofile`: start it under that open-files limit (soft and hard), as LimitNOFILE= would. */
function start(args: string[], nofile?: number) {
  const out: string[] = [];
  const argv = [CLI, "coordinator", ...args];
  const [cmd, cmdArgs] =
    nofile === undefined ? [process.execPath, argv] : ["sh", ["-c", `ulimit -n ${nofile} && exec "$0" "$@"`, process.execPath, ...argv]];
  const child = spawn(cmd, cmdArgs, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, [OWNER_ENV]: dir },
  });
  children.add(child);
  child.stdout!.on("data", (d) => out.push(String(d)));
  child.stderr!.on("data", (d) => out.push(String(d)));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const listening = () =>
    until("the coordinator to listen", () => /coordinator listening on (http:\/\/\S+)/.exec(out.join(""))?.[1], 30_000);
  return { child, out, exited, listening };
}

describe("spotkeep coordinator", () => {
  it("starts from a config whose ec2Endpoint is a localcloud, serves /healthz and the agent bundle, and exits 0 on SIGTERM", async () => {
    const cfg = join(dir, "coordinator.yaml");
    writeFileSync(cfg, `listen: 127.0.0.1:0\nec2Endpoint: ${env.lc.endpoint}\ntimeScale: 1\n`);
    const c = start(["--config", cfg, "--data-dir", join(dir, "data-1")]);
    const url = await c.listening();
    expect(c.out.join("")).toMatch(/identity certificate: localcloud's, from http/);
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true, agents: 0 });
    const bundle = await fetch(`${url}/agent/v1/agent.js`);
    expect(bundle.status).toBe(200);
    expect((await bundle.text()).length).toBeGreaterThan(1000);
    c.child.kill("SIGTERM");
    expect(await c.exited).toBe(0);
  });

  it("/healthz degrades to 503 while open descriptors are within 10% of its open-files limit, and recovers", async () => {
    const limit = 160;
    const c = start(["--localcloud", env.lc.endpoint, "--listen", "127.0.0.1:0", "--data-dir", join(dir, "data-nofile")], limit);
    const url = await c.listening();
    const first = (await (await fetch(`${url}/healthz`)).json()) as { ok: boolean; openFiles: { open: number; soft: number } };
    expect(first).toMatchObject({ ok: true, openFiles: { soft: limit, hard: limit, nearLimit: false } });
    // Connections that have begun a request hold one descriptor each until their request time is
    // up; from several sources, since one source may hold only a few.
    const { port } = new URL(url);
    const held: Socket[] = [];
    const toOpen = Math.ceil(limit * 0.9) - first.openFiles.open + 2;
    for (let i = 0; i < toOpen; i++) {
      const s = connect({ port: Number(port), host: "127.0.0.1", localAddress: `127.0.0.${2 + (i % 10)}` });
      s.on("error", () => undefined);
      held.push(s);
      await once(s, "connect");
      s.write("GET /healthz HTTP/1.1\r\n");
    }
    try {
      const degraded = await until("/healthz to degrade", async () => {
        const res = await fetch(`${url}/healthz`);
        return res.status === 503 ? ((await res.json()) as Record<string, unknown>) : null;
      });
      expect(degraded).toMatchObject({ ok: false, openFiles: { soft: limit, nearLimit: true } });
      expect(degraded.degraded).toMatch(new RegExp(`^\\d+ of ${limit} open descriptors in use .*LimitNOFILE=`));
    } finally {
      for (const s of held) s.destroy();
    }
    await until("/healthz to recover", async () => (await fetch(`${url}/healthz`)).status === 200);
    c.child.kill("SIGTERM");
    expect(await c.exited).toBe(0);
  });

  // Regression: idle connections held a descriptor each for up to ~45 s, so a client that kept
  // reconnecting made /healthz unreachable at the descriptor limit.
  it("/healthz answers while 2,000 idle raw connections (reconnecting when cut) press on a 1,024-descriptor limit", async () => {
    const limit = 1024;
    const c = start(["--localcloud", env.lc.endpoint, "--listen", "127.0.0.1:0", "--data-dir", join(dir, "data-flood")], limit);
    const url = await c.listening();
    const port = Number(new URL(url).port);
    let flooding = true;
    let opened = 0;
    let cut = 0;
    const open = (i: number) => {
      if (!flooding) return;
      opened++;
      const s = connect({ port, host: "127.0.0.1", localAddress: `127.0.0.${2 + (i % 8)}` });
      s.on("error", () => undefined);
      s.on("close", () => {
        cut++;
        setImmediate(() => open(i));
      });
      flood.push(s);
    };
    const flood: Socket[] = [];
    try {
      for (let i = 0; i < 2000; i++) open(i);
      await until("the flood to be cut", () => cut >= 2000, 60_000);
      for (let i = 0; i < 10; i++) {
        const res = await fetch(`${url}/healthz`).catch(async (err) => {
          const m = await (await fetch(`${url}/metrics`)).text().catch(() => "");
          throw new Error(
            `${err} (${String((err as Error).cause)}) ${i}: ${c.out.join("").slice(-2000)} ${m
              .split("\n")
              .filter((l) => l.includes("cut_total"))
              .join("; ")}`,
          );
        });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { openFiles: { open: number; nearLimit: boolean } };
        expect(body.openFiles.nearLimit).toBe(false);
      }
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/spotkeep_http_connections_cut_total\{reason="(total|per-source)-cap"\} [1-9]/);
      expect(opened).toBeGreaterThan(2000);
    } finally {
      flooding = false;
      for (const s of flood) s.destroy();
    }
    c.child.kill("SIGTERM");
    expect(await c.exited).toBe(0);
  }, 120_000);

  it("--localcloud URL needs no config: it is the EC2 endpoint and the certificate's source", async () => {
    const c = start(["--localcloud", env.lc.endpoint, "--listen", "127.0.0.1:0", "--data-dir", join(dir, "data-2")]);
    const url = await c.listening();
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    c.child.kill("SIGTERM");
    expect(await c.exited).toBe(0);
  });

  it("refuses to start with one line when ec2Endpoint is not a localcloud and no identityCertificate is set", async () => {
    // An HTTP server that is not localcloud: the certificate path answers 404.
    const other = createServer((_req, res) => res.writeHead(404).end());
    await new Promise<void>((r) => other.listen(0, "127.0.0.1", () => r()));
    try {
      const port = (other.address() as { port: number }).port;
      const cfg = join(dir, "not-localcloud.yaml");
      writeFileSync(cfg, `listen: 127.0.0.1:0\nec2Endpoint: http://127.0.0.1:${port}\n`);
      const c = start(["--config", cfg, "--data-dir", join(dir, "data-3")]);
      expect(await c.exited).toBe(1);
      const lines = c.out.join("").trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^spotkeep coordinator: identityCertificate is not configured .*HTTP 404.*set identityCertificate/);
    } finally {
      await new Promise<void>((r) => other.close(() => r()));
    }
  });

  it("refuses a second coordinator on the same data directory, naming the holder's pid, and leaves the first serving", async () => {
    const data = join(dir, "data-shared");
    const first = start(["--localcloud", env.lc.endpoint, "--data-dir", data]);
    const url = await first.listening();
    const second = start(["--localcloud", env.lc.endpoint, "--data-dir", data]);
    expect(await second.exited).toBe(1);
    expect(second.out.join("")).toMatch(
      new RegExp(`data directory .*data-shared is in use by another coordinator \\(pid ${first.child.pid} `),
    );
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    // The lock went with the first process: a new one starts on the same directory.
    const third = start(["--localcloud", env.lc.endpoint, "--data-dir", data]);
    await third.listening();
    third.child.kill("SIGTERM");
    expect(await third.exited).toBe(0);
  });

  it("exits non-zero when it cannot bind its port, and releases the data directory", async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", () => r()));
    try {
      const port = (taken.address() as { port: number }).port;
      const cfg = join(dir, "taken.yaml");
      writeFileSync(cfg, `listen: 127.0.0.1:${port}\n`);
      const data = join(dir, "data-bind");
      const c = start(["--config", cfg, "--localcloud", env.lc.endpoint, "--data-dir", data]);
      expect(await c.exited).toBe(1);
      expect(c.out.join("")).toMatch(/listening on 127\.0\.0\.1:\d+: listen EADDRINUSE/);
      const again = start(["--localcloud", env.lc.endpoint, "--data-dir", data]);
      await again.listening();
      again.child.kill("SIGTERM");
      expect(await again.exited).toBe(0);
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  });

  it("--check-permissions names the actions a broken policy denies and exits 1; with the shipped policy it exits 0", async () => {
    const shipped = JSON.parse(readFileSync(join(ROOT, "docs", "iam", "coordinator-policy.json"), "utf8")) as {
      Statement: Array<{ Action: string | string[] }>;
    };
    const broken = structuredClone(shipped);
    for (const st of broken.Statement)
      if (Array.isArray(st.Action)) st.Action = st.Action.filter((a) => a !== "ec2:TerminateInstances" && a !== "ec2:DeleteSnapshot");
    await env.control("PUT", "iam/policy", broken);
    try {
      const c = start(["--check-permissions", "--localcloud", env.lc.endpoint, "--data-dir", join(dir, "data-perm")]);
      expect(await c.exited).toBe(1);
      const out = c.out.join("");
      expect(out).toMatch(/^denied\s+ec2:TerminateInstances\b/m);
      expect(out).toMatch(/^denied\s+ec2:DeleteSnapshot\b/m);
      expect(out).not.toMatch(/^denied\s+ec2:RunInstances\b/m);
    } finally {
      await env.control("PUT", "iam/policy", shipped);
    }
    const ok = start(["--check-permissions", "--localcloud", env.lc.endpoint, "--data-dir", join(dir, "data-perm2")]);
    expect(await ok.exited, ok.out.join("")).toBe(0);
  });
});
