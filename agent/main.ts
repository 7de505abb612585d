/**
 * spotkeep-agent: the on-instance agent. Bundled by esbuild into ONE file (dist/spotkeep-agent.js)
 * that runs with plain `node` and no node_modules.
 */
import { VERSION } from "../shared/version.js";

const HELP = `spotkeep-agent ${VERSION}: watches IMDS for spot notices, quiesces and restores persisted volumes

usage: spotkeep-agent <run|restore|status> [flags]
       spotkeep-agent --version | --help
`;

export async function agentMain(argv: string[]): Promise<number> {
  const [cmd] = argv;
  if (cmd === undefined || cmd === "--help" || cmd === "-h") {
    process.stdout.write(HELP);
    return 0;
  }
  if (cmd === "--version" || cmd === "-v") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  process.stderr.write(`spotkeep-agent: unknown command ${JSON.stringify(cmd)} (see spotkeep-agent --help)\n`);
  return 2;
}

agentMain(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`spotkeep-agent: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
