/**
 * Boot to the agent's first hello, through the real bootstrap user-data, on an image with a node
 * and on a stock image without one (the runtime downloaded from the coordinator, over loopback),
 * and on a stock image whose root already carries the runtime (a later generation). The runtime is
 * the pinned one `spotkeep runtime fetch` serves (Node.js's official linux-x64 build from the npm
 * registry, fetched once into ~/.cache/spotkeep-bench/runtime and reused); the figure of record is
 * what it costs a first boot: its size, and the hello time over the image-node case.
 *   npx tsx bench/boot-bench.ts [--runs 3]
 * Needs `npm run build` (the agent bundle). Writes bench/reports/boot.json.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { homedir, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { renderBootstrap } from "../agent/deploy/bootstrap.js";
import { fetchRuntime, PINNED_RUNTIME } from "../coordinator/agent-runtime/fetch.js";
import { AgentRuntimes } from "../coordinator/agent-runtime/runtimes.js";
import { buildNoNodeBin } from "../localcloud/runtime/no-node.js";
import { startFakeCoordinator } from "../test/agent/fake-coordinator.js";
import { instancePaths, startFakeImds } from "../test/agent/fake-imds.js";
import { benchSummary, commandLine } from "./summary.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { runs: { type: "string" } } });
const runs = Math.max(1, Number(values.runs ?? 3));
const bundle = join(root, "dist", "spotkeep-agent.js");
if (!existsSync(bundle)) throw new Error(`${bundle} is missing: run npm run build`);
const agentSha = createHash("sha256").update(readFileSync(bundle)).digest("hex");

// 1. The pinned runtime, fetched once.
const cache = join(homedir(), ".cache", "spotkeep-bench", "runtime");
let runtimes = new AgentRuntimes(cache);
let fetchSeconds: number | null = null;
if (!runtimes.load().served.x64 || runtimes.current.version !== PINNED_RUNTIME.version) {
  const t = performance.now();
  await fetchRuntime({ dir: cache, arches: ["x64"] });
  fetchSeconds = (performance.now() - t) / 1000;
  runtimes = new AgentRuntimes(cache);
  runtimes.load();
}
const entry = runtimes.current.served.x64!;

// 2. The coordinator's downloads (agent and runtime), over loopback.
const http = createServer((req, res) => {
  if (req.url === "/agent/v1/agent.js") return void res.writeHead(200).end(readFileSync(bundle));
  if (req.url === "/agent/v1/runtime/node-linux-x64.gz") return void res.writeHead(200).end(readFileSync(join(cache, entry.file)));
  res.writeHead(404).end();
});
await new Promise<void>((r) => http.listen(0, "127.0.0.1", () => r()));
const base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;

// 3. A PATH without node: the host's tools, linked, but node, npm, npx and corepack.
const noNodeBin = mkdtempSync(join(tmpdir(), "spotkeep-bench-nonode-"));
await buildNoNodeBin(noNodeBin);

type Case = "image-node" | "stock-first-boot" | "stock-kept-runtime";
async function bootToHello(kind: Case, rootDir: string): Promise<number> {
  const imds = await startFakeImds(instancePaths());
  const coord = await startFakeCoordinator();
  mkdirSync(join(rootDir, "dev"), { recursive: true });
  const script = renderBootstrap({
    coordinatorUrl: coord.url,
    agentUrl: `${base}/agent/v1/agent.js`,
    reportUrl: `${base}/agent/v1/boot-report`,
    userUserData: "",
    agentSha256: agentSha,
    runtime: runtimes.forBootstrap([base])!,
  });
  const t = performance.now();
  const child = spawn("sh", ["-c", script], {
    cwd: rootDir,
    detached: true,
    stdio: "ignore",
    env: {
      PATH: kind === "image-node" ? (process.env.PATH ?? "") : noNodeBin,
      AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
      SPOTKEEP_ROOT_DIR: rootDir,
      SPOTKEEP_DEV_DIR: join(rootDir, "dev"),
    },
  });
  try {
    await coord.waitFor((m) => m.type === "hello", 120_000);
    return (performance.now() - t) / 1000;
  } finally {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      /* gone */
    }
    await coord.close();
    await imds.close();
  }
}

const seconds: Record<Case, number[]> = { "image-node": [], "stock-first-boot": [], "stock-kept-runtime": [] };
try {
  for (let i = 0; i < runs; i++) {
    for (const kind of ["image-node", "stock-first-boot"] as const) {
      const dir = mkdtempSync(join(tmpdir(), "spotkeep-bench-boot-"));
      seconds[kind].push(await bootToHello(kind, dir));
      // The same root again: its runtime is kept (a later generation on a persisted root).
      if (kind === "stock-first-boot") seconds["stock-kept-runtime"].push(await bootToHello("stock-kept-runtime", dir));
      rmSync(dir, { recursive: true, force: true });
    }
  }
} finally {
  http.close();
  rmSync(noNodeBin, { recursive: true, force: true });
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.floor(s.length / 2)]! * 1000) / 1000;
};
const m = { image: median(seconds["image-node"]), first: median(seconds["stock-first-boot"]), kept: median(seconds["stock-kept-runtime"]) };
const mib = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;
const report = {
  runs,
  runtime: { version: runtimes.current.version, source: runtimes.current.source, gzMiB: mib(entry.gzBytes), nodeMiB: mib(entry.nodeBytes) },
  registryFetchSeconds: fetchSeconds,
  helloSeconds: seconds,
  medians: m,
};
const summary = benchSummary({
  benchmark: "boot",
  measures:
    `boot to the agent's first hello through the bootstrap (median of ${runs}): image with node, ` +
    "stock image first boot (runtime downloaded over loopback), stock image with the runtime kept on its root",
  command: commandLine("bench/boot-bench.ts"),
  results: [
    { name: "runtime download", measured: report.runtime.gzMiB, unit: "MiB", target: null },
    // null when the runtime came from the cache (delete ~/.cache/spotkeep-bench/runtime to measure it).
    { name: "spotkeep runtime fetch, linux-x64 (registry, integrity, gzip)", measured: fetchSeconds, unit: "s", target: null },
    { name: "hello, image with node", measured: m.image, unit: "s", target: null },
    { name: "hello, stock image, first boot", measured: m.first, unit: "s", target: null },
    { name: "hello, stock image, runtime kept", measured: m.kept, unit: "s", target: null },
    { name: "first boot / image with node", measured: Math.round((m.first / m.image) * 100) / 100, unit: "×", target: null },
  ],
});
mkdirSync(join(root, "bench", "reports"), { recursive: true });
writeFileSync(join(root, "bench", "reports", "boot.json"), `${JSON.stringify({ summary, ...report }, null, 2)}\n`);
console.log(`runtime: Node.js ${report.runtime.version}, ${report.runtime.gzMiB} MiB download, ${report.runtime.nodeMiB} MiB unpacked`);
if (fetchSeconds !== null) console.log(`fetched from the registry in ${fetchSeconds.toFixed(1)} s`);
console.log(`hello (median of ${runs}): image with node ${m.image} s; stock, first boot ${m.first} s; stock, runtime kept ${m.kept} s`);
console.log("report: bench/reports/boot.json");
