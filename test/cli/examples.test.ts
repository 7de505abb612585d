/**
 * Every spec in examples/ validates as it is, and creates on a fresh localcloud the way the README
 * says: `spotkeep localcloud ids` prints the ids and a sed line, the sed line fills the example, and
 * `spotkeep create -f` (`group create -f` for a group) with --wait brings it up. localcloud
 * (process runtime, real agents) and the coordinator run in-process; the CLI is the built one.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { GroupDetail } from "../../shared/group-api.js";
import { parseGroupSpec } from "../../shared/group-spec.js";
import { parseSpec } from "../../shared/spec.js";
import type { Coordinator } from "../../coordinator/service.js";
import { EXAMPLE_PLACEHOLDERS, SpecIds } from "../../cli/spec-ids.js";
import { type Env, ensureAgentBundle, inProcessCoordinator, startEnv } from "../coordinator/harness.js";
import { CLI, ROOT } from "./built.js";

const EXAMPLES = join(ROOT, "examples");
const files = readdirSync(EXAMPLES)
  .filter((f) => f.endsWith(".yaml"))
  .sort();
const SCALE = 0.03;

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, SPOTKEEP_URL: "", SPOTKEEP_TOKEN: "", SPOTKEEP_DATA_DIR: "" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const isGroup = (text: string) => (parseYaml(text) as { kind?: unknown }).kind === "group";

describe("examples/ as they are", () => {
  it("has the three examples the README names", () => {
    expect(files).toEqual(["dev-box.yaml", "kafka-group.yaml", "postgres.yaml"]);
  });

  it.each(files)("%s validates and uses only the placeholder ids the README names", (file) => {
    const text = readFileSync(join(EXAMPLES, file), "utf8");
    const spec = isGroup(text) ? parseGroupSpec(text, file).template : parseSpec(text, file);
    const placeholders = new Set<string>([
      ...Object.values(EXAMPLE_PLACEHOLDERS.subnets),
      EXAMPLE_PLACEHOLDERS.securityGroup,
      ...Object.values(EXAMPLE_PLACEHOLDERS.images),
    ]);
    for (const id of [spec.launch.imageId, ...spec.launch.subnetIds, ...spec.launch.securityGroupIds]) expect(placeholders).toContain(id);
  });

  it("each one is what its comment says", () => {
    const pg = parseSpec(readFileSync(join(EXAMPLES, "postgres.yaml"), "utf8"));
    expect(pg.persistence.root).toBe(true);
    expect(pg.persistence.volumes).toHaveLength(1);
    expect(pg.health?.type).toBeDefined();
    const kafka = parseGroupSpec(readFileSync(join(EXAMPLES, "kafka-group.yaml"), "utf8"));
    expect(kafka).toMatchObject({ size: 3, maxUnavailable: 1 });
    expect(kafka.ipPool.length).toBeGreaterThanOrEqual(3);
    const dev = parseSpec(readFileSync(join(EXAMPLES, "dev-box.yaml"), "utf8"));
    expect(dev.schedule.map((t) => t.action).sort()).toEqual(["pause", "resume"]);
  });
});

describe("examples/ on a fresh localcloud, as the README says", () => {
  let dir: string;
  let env: Env;
  let coord: Coordinator;
  let ids: SpecIds;

  beforeAll(async () => {
    ensureAgentBundle();
    dir = mkdtempSync(join(tmpdir(), "spotkeep-e2e-examples-"));
    env = await startEnv(dir, SCALE);
    coord = await inProcessCoordinator(env, join(dir, "coord"), SCALE);
  });
  afterAll(async () => {
    // Stopping localcloud ends every instance; nothing is deleted through the hooks.
    await coord?.stop();
    await env?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("`spotkeep localcloud ids` prints the default subnets per AZ, the security group and the images (--json too)", async () => {
    const j = await run(["localcloud", "ids", "--url", env.lc.endpoint, "--json"]);
    expect(j.stderr).toBe("");
    expect(j.code).toBe(0);
    ids = SpecIds.parse(JSON.parse(j.stdout));
    expect(ids.subnets.map((s) => [s.availabilityZone, s.subnetId])).toEqual(env.subnets.map((s) => [s.az, s.id]));
    expect(ids.images).toEqual({ x86_64: env.lc.world.baseImageId, arm64: env.lc.world.baseImageIds.arm64 });
    expect(ids.stockImages).toEqual(env.lc.world.stockImageIds);
    expect(env.lc.world.securityGroups.get(ids.securityGroupId)?.name).toBe("default");
    const t = await run(["localcloud", "ids", "--url", env.lc.endpoint]);
    expect(t.code).toBe(0);
    for (const s of ids.subnets) expect(t.stdout).toContain(`subnet          ${s.subnetId}  ${s.availabilityZone}  ${s.cidr}`);
    expect(t.stdout).toContain(`security group  ${ids.securityGroupId}`);
    expect(t.stdout).toContain(`image           ${env.lc.world.baseImageId}  x86_64`);
    expect(t.stdout).toContain(`stock image     ${env.lc.world.stockImageIds.arm64}  arm64  (no node)`);
  });

  it("`localcloud ids` against no localcloud is one clear line", async () => {
    const t = await run(["localcloud", "ids", "--url", "http://127.0.0.1:9"]);
    expect(t.code).toBe(1);
    expect(t.stderr.trim()).toMatch(
      /^spotkeep localcloud: cannot fetch localcloud's spec ids from http:\/\/127\.0\.0\.1:9\/_localcloud\/v1\/ids/,
    );
  });

  it.each(files)(
    "%s: the printed sed line fills it and create -f --wait brings it up",
    async (file) => {
      const t = await run(["localcloud", "ids", "--url", env.lc.endpoint]);
      const sedLine = t.stdout.split("\n").find((l) => l.startsWith("fill an example: "));
      expect(sedLine).toBeDefined();
      const out = join(dir, file);
      // The line as printed, FILE being the example's name.
      const command = sedLine!.slice("fill an example: ".length).replaceAll("FILE", file.replace(/\.yaml$/, ""));
      execFileSync("sh", ["-c", command.replace(/> (\S+)$/, `> ${JSON.stringify(out)}`)], { cwd: ROOT });
      const text = readFileSync(out, "utf8");
      for (const p of [...Object.values(EXAMPLE_PLACEHOLDERS.subnets), EXAMPLE_PLACEHOLDERS.securityGroup]) {
        if (readFileSync(join(EXAMPLES, file), "utf8").includes(p)) expect(text).not.toContain(p);
      }
      expect(text).not.toContain(EXAMPLE_PLACEHOLDERS.images.x86_64);
      const auth = ["--url", coord.url, "--token", coord.adminToken];
      if (isGroup(text)) {
        const g = parseGroupSpec(text);
        const c = await run(["group", "create", "-f", out, "--wait", ...auth]);
        expect(c.stderr).toBe("");
        expect(c.code).toBe(0);
        const d = await run(["group", "describe", g.name, "--json", ...auth]);
        const detail = GroupDetail.parse(JSON.parse(d.stdout));
        expect(detail.memberList.map((m) => m.state)).toEqual(Array(g.size).fill("running"));
        for (const m of detail.memberList) expect(g.ipPool).toContain(m.privateIp);
        expect(detail.maxUnavailable).toBe(g.maxUnavailable);
      } else {
        const spec = parseSpec(text);
        const c = await run(["create", "-f", out, "--wait", ...auth]);
        expect(c.stderr).toBe("");
        expect(c.code).toBe(0);
        expect(c.stdout).toContain(`${spec.name} is ready`);
        const d = JSON.parse((await run(["describe", spec.name, "--json", ...auth])).stdout);
        expect(d.state).toBe("running");
        expect(d.resources.volumes.map((v: { mountPoint: string }) => v.mountPoint)).toEqual(
          spec.persistence.volumes.map((v) => v.mountPoint),
        );
        if (spec.schedule.length) expect(d.schedule.map((s: { action: string }) => s.action)).toEqual(spec.schedule.map((s) => s.action));
      }
    },
    240_000,
  );
});
