/**
 * `spotkeep coordinator` as a process: starts from a config file (certificate fetched from
 * localcloud beside its EC2 endpoint), serves /healthz and the agent bundle, stops on SIGTERM.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OWNER_ENV, ensureAgentBundle, ROOT, startEnv, until, type Env } from "./harness.js";

let dir: string;
let env: Env;
let child: ChildProcess | undefined;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-cli-"));
  env = await startEnv(dir, 1, { runtime: "none", profile: "instant" });
});
afterAll(async () => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("spotkeep coordinator", () => {
  it("starts from a config file, serves /healthz and the agent bundle, and exits 0 on SIGTERM", async () => {
    const cfg = join(dir, "coordinator.yaml");
    writeFileSync(cfg, `listen: 127.0.0.1:0\nec2Endpoint: ${env.lc.endpoint}\ntimeScale: 1\n`);
    const out: string[] = [];
    child = spawn(process.execPath, [join(ROOT, "bin", "spotkeep.js"), "coordinator", "--config", cfg, "--data-dir", join(dir, "data")], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, [OWNER_ENV]: dir },
    });
    child.stdout!.on("data", (d) => out.push(String(d)));
    child.stderr!.on("data", (d) => out.push(String(d)));
    const exited = new Promise<number | null>((r) => child!.on("exit", (code) => r(code)));
    const url = await until("the coordinator to listen", () => /coordinator listening on (http:\/\/\S+)/.exec(out.join(""))?.[1], 30_000);
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true, agents: 0 });
    const bundle = await fetch(`${url}/agent/v1/agent.js`);
    expect(bundle.status).toBe(200);
    expect((await bundle.text()).length).toBeGreaterThan(1000);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });
});
