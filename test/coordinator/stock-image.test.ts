/**
 * Stock images end to end on localcloud's process runtime (no node on the instance's PATH), with
 * the real agent bundle and the real bootstrap user-data:
 *  - an arm64 instance (m7g) of the arm64 stock image: its bootstrap downloads the coordinator's
 *    linux-arm64 runtime (localcloud serves the host's node for it, and the instance runs it on the
 *    host's processor), checks it and runs the agent; after an interruption the replacement, on a
 *    root made from that root, uses the kept copy and downloads nothing;
 *  - a coordinator whose runtime's binary is not the one its manifest names: the bootstrap refuses
 *    it by its SHA-256 and reports it, and the create fails with the reason within seconds of model
 *    time instead of the restore's 20-minute budget.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packRuntime } from "../../coordinator/agent-runtime/fetch.js";
import type { Coordinator } from "../../coordinator/service.js";
import { parseSpec } from "../../shared/spec.js";
import { ensureAgentBundle, inProcessCoordinator, startEnv, until, type Env } from "./harness.js";

const SCALE = 0.05;
let dir: string;
let env: Env;
/** Serves the host's node as the runtime of both architectures (as `--localcloud` does). */
let served: Coordinator;
/** Serves a runtime whose binary does not match the hash its manifest (and so the user-data) names. */
let damaged: Coordinator;

beforeAll(async () => {
  ensureAgentBundle();
  dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-stock-"));
  env = await startEnv(dir, SCALE);
  served = await inProcessCoordinator(env, join(dir, "served"), SCALE, { agentRuntime: { hostNode: true } });
  const runtimeDir = join(dir, "damaged-runtime");
  mkdirSync(runtimeDir);
  writeFileSync(join(dir, "fake-node"), `#!/bin/sh\necho v99.0.0\n${"#".repeat(4096)}\n`, { mode: 0o755 });
  await packRuntime({ dir: runtimeDir, binary: join(dir, "fake-node"), version: "99.0.0", arches: ["x64"] });
  // The .gz is intact (the coordinator's own check of it passes, so it is served), but the binary
  // inside is not the one the manifest names: what instances unpack fails its SHA-256.
  const manifest = JSON.parse(readFileSync(join(runtimeDir, "manifest.json"), "utf8"));
  manifest.arches.x64.nodeSha256 = "0".repeat(64);
  writeFileSync(join(runtimeDir, "manifest.json"), JSON.stringify(manifest));
  damaged = await inProcessCoordinator(env, join(dir, "damaged"), SCALE, { agentRuntime: { dir: runtimeDir } });
});
afterAll(async () => {
  await served?.stop();
  await damaged?.stop();
  await env?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const bootLog = (id: string) => readFileSync((env.lc.runtime as unknown as { logPath(id: string): string }).logPath(id), "utf8");

describe("stock images (no Node.js on the instance)", () => {
  it("an arm64 instance downloads the linux-arm64 runtime, runs the agent on it, and its replacement keeps it", async () => {
    const base = env.spec("arm-db", { workload: false, instanceTypes: ["m7g.large", "c7g.large"] });
    const spec = parseSpec({ ...base, launch: { ...base.launch, imageId: env.lc.world.stockImageIds.arm64 } });
    const { workflowId } = await served.views.createInstance(spec);
    const created = await served.engine.wait(workflowId);
    expect(created.error).toBeNull();
    const first = (await served.views.getInstance("arm-db"))!;
    expect(first.state).toBe("running");
    expect(first.instanceType).toMatch(/^(m7g|c7g)\.large$/);
    const log1 = bootLog(first.instanceId!);
    expect(log1).toMatch(
      /no Node\.js 20\.19\+ on the image: downloading Node\.js [\d.]+ for linux-arm64 from http:\/\/127\.0\.0\.1:\d+\/agent\/v1\/runtime\/node-linux-arm64\.gz/,
    );
    expect(log1).not.toMatch(/refusing|cannot/);

    await env.control("POST", `instances/${first.instanceId}/interrupt`, { action: "terminate", noticeSeconds: 120 });
    const wf = await until("a replace workflow", async () =>
      (await served.store.workflows.listFor("arm-db")).find((w) => w.kind === "replace"),
    );
    expect((await served.engine.wait(wf.id)).error).toBeNull();
    const second = (await served.views.getInstance("arm-db"))!;
    expect(second.instanceId).not.toBe(first.instanceId);
    const log2 = bootLog(second.instanceId!);
    expect(log2).toMatch(/using Node\.js [\d.]+ kept on the root disk/);
    expect(log2).not.toMatch(/downloading Node\.js/);
  });

  it("a runtime that does not match its SHA-256 is refused, reported, and the create fails at once with the reason", async () => {
    const base = env.spec("damaged-db", { workload: false });
    const spec = parseSpec({ ...base, launch: { ...base.launch, imageId: env.lc.world.stockImageIds.x86_64 } });
    const { workflowId } = await damaged.views.createInstance(spec);
    const wf = await damaged.engine.wait(workflowId);
    expect(wf.status).toBe("failed");
    expect(wf.error).toMatch(
      /could not start the agent \(runtime\): refusing the runtime from \S+node-linux-x64\.gz: sha256 [0-9a-f]{64}, expected 0{64} \(after 5 attempts\)/,
    );
    expect((wf.finishedAt! - wf.startedAt) / SCALE / 60_000).toBeLessThan(10);
    const events = await damaged.store.events.list("damaged-db", 1000);
    expect(events.find((e) => e.kind === "agent-boot-failed")?.message).toMatch(
      /could not start the agent \(runtime\): refusing the runtime/,
    );
  });
});
