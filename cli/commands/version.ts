/**
 * `spotkeep version [--json]`: what is installed here: spotkeep's version, the Node.js running it,
 * the SQLite driver this Node.js gets, and the agent bundle the coordinator serves with its SHA-256
 * (the hash every replacement's bootstrap checks the downloaded agent against).
 */
import { statSync } from "node:fs";
import { agentBundleSha256 } from "../../coordinator/bootstrap.js";
import { sqliteDriver } from "../../coordinator/db/sqlite/driver.js";
import { VERSION } from "../../shared/version.js";
import { parseFlags } from "../args.js";
import { printJson } from "../client.js";
import type { Command } from "../command.js";
import { agentBundlePath } from "../package-root.js";

export interface VersionReport {
  version: string;
  node: string;
  platform: string;
  sqlite: { package: string; version: string; sqliteVersion: string } | { error: string };
  agentBundle: { path: string; bytes: number; sha256: string } | { path: string; error: string };
}

export function versionReport(): VersionReport {
  let sqlite: VersionReport["sqlite"];
  try {
    const d = sqliteDriver();
    sqlite = { package: d.package, version: d.version, sqliteVersion: d.sqliteVersion };
  } catch (err) {
    sqlite = { error: (err as Error).message };
  }
  const path = agentBundlePath();
  let agentBundle: VersionReport["agentBundle"];
  try {
    const sha256 = agentBundleSha256(path);
    agentBundle = { path, bytes: statSync(path).size, sha256 };
  } catch (err) {
    agentBundle = { path, error: (err as Error).message };
  }
  return { version: VERSION, node: process.versions.node, platform: `${process.platform}-${process.arch}`, sqlite, agentBundle };
}

export const command: Command = {
  usage: `usage: spotkeep version [--json]

Prints spotkeep's version, the Node.js running it, the SQLite driver it loads on this Node.js, and
the agent bundle the coordinator serves (path, size, SHA-256). Exits 1 when the driver does not load
or the bundle is missing (the version is still printed).`,
  async run(argv) {
    const { values } = parseFlags(argv, { json: { type: "boolean" } });
    const r = versionReport();
    if (values.json) printJson(r);
    else {
      const lines = [
        `spotkeep ${r.version}`,
        `node ${r.node} (${r.platform})`,
        "error" in r.sqlite
          ? `sqlite driver: ERROR ${r.sqlite.error}`
          : `sqlite driver: ${r.sqlite.package} ${r.sqlite.version} (SQLite ${r.sqlite.sqliteVersion})`,
        "error" in r.agentBundle
          ? `agent bundle: ERROR ${r.agentBundle.error}`
          : `agent bundle: ${r.agentBundle.path} (${r.agentBundle.bytes} bytes) sha256 ${r.agentBundle.sha256}`,
      ];
      process.stdout.write(`${lines.join("\n")}\n`);
    }
    return "error" in r.sqlite || "error" in r.agentBundle ? 1 : 0;
  },
};
