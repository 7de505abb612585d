/**
 * `spotkeep restore-backup --from FILE [--data-dir DIR]`: put a backup in place of the store of a
 * stopped coordinator, recorded as the current store so the next start passes the store checks.
 */
import { defaultDataDir } from "../../coordinator/api/token.js";
import { restoreBackup, STORE_FILE } from "../../coordinator/db/backup.js";
import { parseFlags, UsageError } from "../args.js";
import { printJson } from "../client.js";
import type { Command } from "../command.js";

export const command: Command = {
  usage: `usage: spotkeep restore-backup --from FILE [--data-dir DIR] [--json]

Restores a backup made by spotkeep backup. Stop the coordinator first: this takes the data
directory's lock and refuses while a coordinator holds it. FILE is checked with integrity_check,
the current ${STORE_FILE} and its WAL are kept beside it as ${STORE_FILE}.before-restore-<time>,
and the store-identity file is rewritten so that the next start accepts the restored store (and
refuses any still older copy). Workflows resume from the state the backup holds: EC2 resources
created after the backup are not in it.
  --data-dir DIR  the coordinator's data directory (default $SPOTKEEP_DATA_DIR, else ./spotkeep-data)`,
  async run(argv) {
    const { values } = parseFlags(argv, { from: { type: "string" }, "data-dir": { type: "string" }, json: { type: "boolean" } });
    if (!values.from) throw new UsageError("--from FILE is required");
    const r = restoreBackup(values["data-dir"] ?? defaultDataDir(), values.from);
    if (values.json) printJson(r);
    else
      process.stdout.write(
        `restored store ${r.storeId} (now generation ${r.generation}) into ${r.file}` +
          `${r.previous ? `; the database it replaced is kept as ${r.previous}` : ""}\n`,
      );
    return 0;
  },
};
