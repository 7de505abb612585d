/**
 * spotkeep-agent: the on-instance agent. Bundled by esbuild into ONE file (dist/spotkeep-agent.js)
 * that runs with plain `node` and no node_modules.
 *
 * Modes: `run` (long-running: notices, link, quiesce), `restore` (once, at boot of a replacement,
 * before the user's user-data), `status` (prints local state). Config: flags > env (config.ts).
 */
import { VERSION } from "../shared/version.js";
import { ConfigError, FLAGS, parseAgentFlags, resolveConfig } from "./config.js";

const HELP = `spotkeep-agent ${VERSION}: watches IMDS for spot notices, quiesces and restores persisted volumes

usage: spotkeep-agent <run|restore|status> [flags]
       spotkeep-agent --version | --help

commands:
  run       watch IMDS notices, keep the link to the coordinator, quiesce/freeze on command
  restore   receive the restore plan, attach-wait, check and mount volumes, run postRestore, exit
  status    print this agent's local state (outbox, last notice) as JSON

flags (and environment):
${Object.entries(FLAGS)
  .map(([f, s]) => `  ${f.padEnd(20)} ${s.env.padEnd(34)} ${s.help}`)
  .join("\n")}

logs: JSON lines on stdout. exit codes: 0 ok, 1 failure, 2 usage.
`;

export async function agentMain(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(HELP);
    return 0;
  }
  if (cmd === "--version" || cmd === "-v") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (cmd !== "run" && cmd !== "restore" && cmd !== "status") {
    process.stderr.write(`spotkeep-agent: unknown command ${JSON.stringify(cmd)} (see spotkeep-agent --help)\n`);
    return 2;
  }
  let cfg;
  try {
    if (rest.includes("--help") || rest.includes("-h")) {
      process.stdout.write(HELP);
      return 0;
    }
    cfg = resolveConfig(parseAgentFlags(rest));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`spotkeep-agent ${cmd}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  // Modes are imported statically (one bundle), so nothing is lazily loaded while filesystems are frozen.
  switch (cmd) {
    case "status":
      return statusMode(cfg);
    case "restore":
      if (!cfg.coordinatorUrl) {
        process.stderr.write("spotkeep-agent restore: no coordinator configured (set SPOTKEEP_COORDINATOR or --coordinator)\n");
        return 2;
      }
      return restoreMode(cfg);
    case "run":
      return runMode(cfg);
  }
}

import { runMode } from "./run.js";
import { restoreMode } from "./restore/command.js";
import { statusMode } from "./status.js";

// Only run when executed (the bundle, or tsx agent/main.ts), not when imported by tests.
// In the CJS bundle `require.main === module` whatever the file is called; under tsx, the path.
const isBundleMain = typeof require !== "undefined" && typeof module !== "undefined" && require.main === module;
if (isBundleMain || /agent[\\/]main\.ts$/.test(process.argv[1] ?? "")) {
  agentMain(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
      // The link and timers are stopped by then; exit explicitly so a stray handle can't hold user-data.
      setTimeout(() => process.exit(code), 200).unref();
    },
    (err) => {
      process.stderr.write(`spotkeep-agent: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
