/**
 * `spotkeep <subcommand>`: the one entry point. Subcommands live one per file in commands/ and
 * are loaded lazily, so `spotkeep status` does not pay for localcloud's code.
 */
import { ValidationError } from "../shared/errors.js";
import { VERSION } from "../shared/version.js";
import { UsageError } from "./args.js";
import { CliError } from "./client.js";
import type { Command } from "./command.js";

interface Entry {
  name: string;
  summary: string;
  load: () => Promise<Command>;
}

/** Every subcommand that exists. Add a line here and a file in commands/. */
export const COMMANDS: Entry[] = [
  {
    name: "coordinator",
    summary: "run the coordinator service (--config FILE [--data-dir DIR] [--localcloud URL])",
    load: async () => (await import("./commands/coordinator.js")).command,
  },
  {
    name: "status",
    summary: "list stateful instances (table, or --json; --all adds deleted ones)",
    load: async () => (await import("./commands/status.js")).command,
  },
  {
    name: "group",
    summary: "stateful groups: create|scale|update|describe|list|delete (N members from one template, a shared IP pool)",
    load: async () => (await import("./commands/group.js")).command,
  },
  {
    name: "describe",
    summary: "show one stateful instance: resources and generations",
    load: async () => (await import("./commands/describe.js")).command,
  },
  {
    name: "events",
    summary: "show the step timeline of a stateful instance's latest workflow",
    load: async () => (await import("./commands/events.js")).command,
  },
  {
    name: "create",
    summary: "create a stateful instance from a spec file (-f SPEC [--wait])",
    load: async () => (await import("./commands/create.js")).command,
  },
  {
    name: "import",
    summary: "make an existing EC2 instance a stateful instance (INSTANCE_ID --name NAME [-f OVERRIDES] [--dry-run] [--wait])",
    load: async () => (await import("./commands/import.js")).command,
  },
  {
    name: "pause",
    summary: "quiesce, keep the ENI, volumes and root image, terminate the EC2 instance (NAME [--wait])",
    load: async () => (await import("./commands/pause.js")).command,
  },
  {
    name: "resume",
    summary: "launch a paused or failed instance again from what it kept (NAME [--wait])",
    load: async () => (await import("./commands/resume.js")).command,
  },
  {
    name: "recycle",
    summary: "planned replacement of a running (or failed) instance (NAME [--wait])",
    load: async () => (await import("./commands/recycle.js")).command,
  },
  {
    name: "snapshot",
    summary: "snapshot every data volume of a running instance now (NAME [--wait])",
    load: async () => (await import("./commands/snapshot.js")).command,
  },
  {
    name: "restore",
    summary: "bring a paused or failed instance back in another region from its copies there (NAME --region R -f OVERRIDES [--wait])",
    load: async () => (await import("./commands/restore.js")).command,
  },
  {
    name: "update",
    summary: "replace a stateful instance's spec (NAME -f SPEC [--recycle] [--wait])",
    load: async () => (await import("./commands/update.js")).command,
  },
  {
    name: "delete",
    summary: "terminate a stateful instance and delete its resources (NAME [--keep LIST] [--ttl HOURS] [--wait])",
    load: async () => (await import("./commands/delete.js")).command,
  },
  {
    name: "backup",
    summary: "copy the coordinator's store while it runs (--out FILE [--data-dir DIR])",
    load: async () => (await import("./commands/backup.js")).command,
  },
  {
    name: "restore-backup",
    summary: "put a backup in place of a stopped coordinator's store (--from FILE [--data-dir DIR])",
    load: async () => (await import("./commands/restore-backup.js")).command,
  },
  {
    name: "doctor",
    summary:
      "check a coordinator host before the first instance: config, store, permissions, certificates, agent URL, events queue (--config FILE [--json])",
    load: async () => (await import("./commands/doctor.js")).command,
  },
  {
    name: "runtime",
    summary: "fetch or show the Node.js runtime served to instances whose image has no node (fetch|status [--dir DIR])",
    load: async () => (await import("./commands/runtime.js")).command,
  },
  {
    name: "localcloud",
    summary: "run localcloud, the local EC2 + IMDS for development, tests and rehearsals",
    load: async () => (await import("./commands/localcloud.js")).command,
  },
  {
    name: "version",
    summary: "print the version, the Node.js and SQLite driver in use, and the agent bundle's SHA-256 ([--json])",
    load: async () => (await import("./commands/version.js")).command,
  },
  {
    name: "demo",
    summary: "run a stateful instance through a spot interruption on localcloud and verify it",
    load: async () => (await import("./commands/demo.js")).command,
  },
];

export function helpText(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `spotkeep ${VERSION}: keep stateful workloads on EC2 spot instances`,
    "",
    "usage: spotkeep <subcommand> [flags]",
    "",
    "subcommands:",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    "",
    "flags: --help (also after a subcommand), --version",
    "",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(helpText());
    return 0;
  }
  if (name === "--version" || name === "-v") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) {
    process.stderr.write(
      `spotkeep: ${name.startsWith("-") ? `unknown flag ${name}` : `unknown subcommand ${JSON.stringify(name)}`} (see spotkeep --help)\n`,
    );
    return 2;
  }
  const command = await entry.load();
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(command.usage.endsWith("\n") ? command.usage : `${command.usage}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`spotkeep ${name}: ${err.message} (see spotkeep ${name} --help)\n`);
      return 2;
    }
    if (err instanceof ValidationError || err instanceof CliError) {
      process.stderr.write(`spotkeep ${name}: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`spotkeep ${name}: ${(err as Error)?.message ?? String(err)}\n`);
    return 1;
  }
}
