/**
 * `spotkeep coordinator` as a process (the built CLI): started against a localcloud, it pins
 * localcloud's identity certificate (fetched by the CLI, not the service), serves /healthz and the
 * agent bundle, and stops on SIGTERM.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Env, OWNER_ENV, startEnv, until } from "../coordinator/harness.js";
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

function start(args: string[]) {
  const out: string[] = [];
  const child = spawn(process.execPath, [CLI, "coordinator", ...args], {
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
});
